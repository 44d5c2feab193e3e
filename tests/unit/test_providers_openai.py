"""Kind `openai` against the shared fixtures of OpenAI and the OpenAI-compatible servers."""

from __future__ import annotations

from datetime import date

import pytest

from chalicelib.core.domain import Model, model_record
from chalicelib.errors import ProviderError
from tests.fakes import FakeProviderServer, fetch_once, fixture_json

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz012345"




@pytest.fixture
def settings(make_settings):
    return make_settings("", OPENAI_API_KEY=KEY)


def fetch(settings, server: FakeProviderServer, fixture: str, **provider) -> list[Model]:
    server.route("GET", "/v1/models", json=fixture_json(fixture))
    config = {"id": "p", "kind": "openai", "base_url": server.url + "/v1", "api_key_env": "OPENAI_API_KEY", **provider}
    return fetch_once(settings, config)


def by_id(models: list[Model]) -> dict[str, Model]:
    return {m.id: m for m in models}


def test_openai_list_sends_the_bearer_key_and_sorts_ids(settings, server):
    models = fetch(settings, server, "openai_models.json")
    assert [m.id for m in models] == ["gpt-4-0613", "gpt-4o-mini", "text-embedding-3-small"]
    assert models[1] == Model(provider_id="p", id="gpt-4o-mini")  # the list carries no metadata
    request = server.requests("/v1/models")[0]
    assert request.headers["authorization"] == f"Bearer {KEY}"


def test_groq_context_window_and_max_completion_tokens(settings, server):
    models = by_id(fetch(settings, server, "groq_models.json"))
    assert models["openai/gpt-oss-20b"].context_length == 131072
    assert models["openai/gpt-oss-20b"].max_output_tokens == 65536
    assert models["whisper-large-v3-turbo"].context_length == 448


def test_moonshot_context_length_and_capability_flags(settings, server):
    models = by_id(fetch(settings, server, "moonshot_models.json"))
    assert models["kimi-k2.6"].context_length == 262144
    assert models["kimi-k2.6"].capabilities == ("reasoning", "video", "vision")
    assert models["kimi-k2-turbo-preview"].capabilities == ()
    assert models["moonshot-v1-32k-vision-preview"].capabilities == ("vision",)
    assert models["moonshot-v1-32k-vision-preview"].context_length == 32768


def test_mistral_max_context_length_and_capabilities(settings, server):
    models = by_id(fetch(settings, server, "mistral_models.json"))
    assert models["mistral-medium-latest"] == Model(
        provider_id="p", id="mistral-medium-latest", context_length=131072, capabilities=("tools", "vision")
    )
    assert models["devstral-small-2507"].capabilities == ("tools",)
    assert models["mistral-moderation-latest"].context_length == 8192
    assert models["mistral-moderation-latest"].capabilities == ()


def test_openai_shutdown_date_deprecates_the_model_until_that_day(settings, server):
    models = by_id(fetch(settings, server, "openai_models.json"))
    retiring = models["gpt-4-0613"]  # "shutdown_date": "2026-10-23"
    assert (retiring.status, retiring.retires_at) == ("deprecated", date(2026, 10, 23))
    assert model_record(retiring)["retires_at"] == "2026-10-23"  # as stored and served: an ISO-8601 date
    assert all(models[i].status == "active" and models[i].retires_at is None
               for i in ("gpt-4o-mini", "text-embedding-3-small"))  # no shutdown_date: active


def test_mistral_deprecation_date_time_deprecates_the_model(settings, server):
    body = fixture_json("mistral_models.json")
    assert {item["deprecation"] for item in body["data"]} == {None}  # the recorded answer: nothing deprecated
    assert {m.status for m in fetch(settings, server, "mistral_models.json")} == {"active"}
    body["data"][2]["deprecation"] = "2026-03-31T12:00:00Z"  # a date-time, as Mistral's schema allows
    body["data"][1]["deprecation"] = "soon"  # not a date: nothing is claimed
    server.route("GET", "/v1/models", json=body)
    models = by_id(fetch_once(settings, {"id": "p", "kind": "openai", "base_url": server.url + "/v1"}))
    moderation = models["mistral-moderation-latest"]
    assert (moderation.status, moderation.retires_at) == ("deprecated", date(2026, 3, 31))
    assert (models["devstral-small-2507"].status, models["devstral-small-2507"].retires_at) == ("active", None)
    assert models["mistral-medium-latest"].status == "active"


def test_together_bare_array_with_display_names(settings, server):
    models = by_id(fetch(settings, server, "together_models.json"))
    assert sorted(models) == [
        "BAAI/bge-large-en-v1.5",
        "deepseek-ai/DeepSeek-V3",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    ]
    llama = models["meta-llama/Llama-3.3-70B-Instruct-Turbo"]
    assert llama.display_name == "Meta Llama 3.3 70B Instruct Turbo"
    assert llama.context_length == 131072
    assert llama.pricing is None  # docs/reference.md §4: no price field for kind openai
    assert models["BAAI/bge-large-en-v1.5"].capabilities == ("embedding",)
    assert models["BAAI/bge-large-en-v1.5"].context_length == 512


def test_vllm_max_model_len_and_lora_without_it(settings, server):
    models = by_id(fetch(settings, server, "vllm_models.json"))
    assert models["Qwen/Qwen2.5-7B-Instruct"].context_length == 32768
    assert models["sql-lora"].context_length is None


@pytest.mark.parametrize(
    ("fixture", "ids"),
    [
        ("deepseek_models.json", ["deepseek-chat", "deepseek-reasoner"]),
        ("xai_models.json", ["grok-2-vision-1212", "grok-3", "grok-3-mini"]),
        ("lmstudio_openai_models.json", ["meta-llama-3.1-8b-instruct", "text-embedding-nomic-embed-text-v1.5"]),
        ("ollama_openai_models.json", ["deepseek-r1:latest", "llama3.2:latest"]),
    ],
)
def test_minimal_lists(settings, server, fixture: str, ids: list[str]):
    models = fetch(settings, server, fixture)
    assert [m.id for m in models] == ids
    assert all(m.context_length is None and m.capabilities == () and m.pricing is None for m in models)


def test_lmstudio_native_v0_list_types(settings, server):
    models = by_id(fetch(settings, server, "lmstudio_api_v0_models.json"))
    assert models["qwen2-vl-7b-instruct"].capabilities == ("vision",)
    assert models["qwen2-vl-7b-instruct"].context_length == 32768
    assert models["text-embedding-nomic-embed-text-v1.5"].capabilities == ("embedding",)


def test_model_filter_and_extra_headers(settings, server):
    models = fetch(
        settings, server, "groq_models.json", model_filter="^(openai/|llama)", headers={"X-Team": "research"}
    )
    assert [m.id for m in models] == ["llama-3.1-8b-instant", "openai/gpt-oss-20b"]
    assert server.requests("/v1/models")[0].headers["x-team"] == "research"


def test_duplicate_ids_keep_the_first_and_items_without_id_are_skipped(settings, server):
    server.route(
        "GET",
        "/v1/models",
        json={"data": [{"id": "b", "context_window": 1}, {"id": "a"}, {"id": "b", "context_window": 2}, {"x": 1}, 7]},
    )
    models = fetch_once(settings, {"id": "p", "kind": "openai", "base_url": server.url + "/v1"})
    assert [(m.id, m.context_length) for m in models] == [("a", None), ("b", 1)]


def test_missing_key_fails_without_any_request(make_settings, server):
    server.route("GET", "/v1/models", json=fixture_json("openai_models.json"))
    settings = make_settings("")  # OPENAI_API_KEY not set
    config = {"id": "p", "kind": "openai", "base_url": server.url + "/v1", "api_key_env": "OPENAI_API_KEY"}
    with pytest.raises(ProviderError) as caught:
        fetch_once(settings, config)
    assert caught.value.reason == "OPENAI_API_KEY is not set"
    assert server.requests() == []


def test_wrong_shape_is_a_clear_reason(settings, server):
    server.route("GET", "/v1/models", json={"models": []})
    with pytest.raises(ProviderError) as caught:
        fetch_once(settings, {"id": "p", "kind": "openai", "base_url": server.url + "/v1"})
    assert caught.value.reason == "expected a JSON object with `data`, got a JSON object with keys models"
