"""Kinds `openrouter`, `ollama` and `registry` (models.dev api.json) against the shared fixtures."""

from __future__ import annotations

from datetime import date

import pytest

from chalicelib.core.domain import Modalities, Model, Pricing
from chalicelib.errors import ProviderError
from tests.fakes import fetch_once, fixture_json


@pytest.fixture
def settings(make_settings):
    return make_settings("", OPENROUTER_API_KEY="sk-or-v1-0123456789abcdef", REGISTRY_TOKEN="reg-token-abcdef")


def test_openrouter_prices_per_token_become_per_million(settings, server):
    server.route("GET", "/api/v1/models", json=fixture_json("openrouter_models.json"))
    config = {"id": "or", "kind": "openrouter", "base_url": server.url + "/api/v1"}
    models = {m.id: m for m in fetch_once(settings, config)}
    assert models["anthropic/claude-sonnet-4.5"] == Model(
        provider_id="or",
        id="anthropic/claude-sonnet-4.5",
        display_name="Anthropic: Claude Sonnet 4.5",
        context_length=1000000,
        max_output_tokens=64000,
        capabilities=("files", "reasoning", "tools", "vision"),
        # input_cache_read "0.0000003" / input_cache_write "0.00000375" per token
        pricing=Pricing(input_per_mtok=3.0, output_per_mtok=15.0, cache_read_per_mtok=0.3, cache_write_per_mtok=3.75),
        status="active",  # expiration_date: null
        retires_at=None,
        modalities=Modalities(input=("text", "image", "pdf"), output=("text",)),  # OpenRouter's "file" is a PDF
    )
    assert models["openai/gpt-4o-mini"].pricing == Pricing(
        input_per_mtok=0.15, output_per_mtok=0.6, cache_read_per_mtok=0.075  # no input_cache_write: None
    )
    assert models["openai/gpt-4o-mini"].capabilities == ("files", "tools", "vision")
    free = models["meta-llama/llama-3.3-70b-instruct:free"]
    assert free.pricing == Pricing(input_per_mtok=0.0, output_per_mtok=0.0)  # "0" is a real price
    assert free.max_output_tokens is None
    assert free.capabilities == ("tools",)
    assert free.modalities == Modalities(input=("text",), output=("text",))
    assert {m.status for m in models.values()} == {"active"}
    assert "authorization" not in server.requests()[0].headers  # no api_key_env: the list is public


@pytest.mark.parametrize(
    ("prices", "expected"),
    [
        ({"prompt": "-1", "completion": "-1"}, None),
        ({"prompt": "0.000001"}, None),
        ({"prompt": "abc", "completion": "0.000002"}, None),
        ({"prompt": "0.00000125", "completion": "0.00001"}, Pricing(input_per_mtok=1.25, output_per_mtok=10.0)),
    ],
)
def test_openrouter_unknown_prices_are_none(settings, server, prices, expected):
    server.route("GET", "/api/v1/models", json={"data": [{"id": "x/y", "pricing": prices}]})
    config = {"id": "or", "kind": "openrouter", "base_url": server.url + "/api/v1", "api_key_env": "OPENROUTER_API_KEY"}
    [model] = fetch_once(settings, config)
    assert model.pricing == expected
    assert server.requests()[0].headers["authorization"] == "Bearer sk-or-v1-0123456789abcdef"


def test_openrouter_expiration_date_deprecates_the_model(settings, server):
    body = fixture_json("openrouter_models.json")
    assert {item["expiration_date"] for item in body["data"]} == {None}  # the recorded answer: nothing expires
    body["data"][1]["expiration_date"] = "2026-04-30"
    body["data"][2]["expiration_date"] = "not a date"
    server.route("GET", "/api/v1/models", json=body)
    models = {m.id: m for m in fetch_once(settings, {"id": "or", "kind": "openrouter", "base_url": server.url + "/api/v1"})}
    expiring = models["openai/gpt-4o-mini"]
    assert (expiring.status, expiring.retires_at) == ("deprecated", date(2026, 4, 30))
    assert (models["meta-llama/llama-3.3-70b-instruct:free"].status, models["anthropic/claude-sonnet-4.5"].status) == (
        "active",
        "active",
    )


def test_openrouter_without_architecture_or_cache_prices(settings, server):
    item = {"id": "x/y", "pricing": {"prompt": "0.000001", "completion": "0.000002", "input_cache_read": "-1"}}
    server.route("GET", "/api/v1/models", json={"data": [item, {"id": "x/embed", "architecture": {
        "input_modalities": ["text"], "output_modalities": ["embeddings"]}}]})
    models = {m.id: m for m in fetch_once(settings, {"id": "or", "kind": "openrouter", "base_url": server.url + "/api/v1"})}
    assert models["x/y"].modalities is None  # nothing said: unknown, not "none"
    assert models["x/y"].pricing == Pricing(input_per_mtok=1.0, output_per_mtok=2.0)  # "-1" is no cache price
    # "embeddings" is no modality of the vocabulary: it stays a capability.
    assert models["x/embed"].modalities == Modalities(input=("text",), output=())
    assert models["x/embed"].capabilities == ("embedding",)


def test_ollama_tags(settings, server):
    server.route("GET", "/api/tags", json=fixture_json("ollama_tags.json"))
    models = fetch_once(settings, {"id": "local", "kind": "ollama", "base_url": server.url})
    assert models == [
        Model(provider_id="local", id="deepseek-r1:latest"),
        Model(provider_id="local", id="llama3.2:latest"),
    ]


def test_ollama_newer_servers_report_capabilities_and_context(settings, server):
    server.route(
        "GET",
        "/api/tags",
        json={
            "models": [
                {
                    "name": "qwen3:8b",
                    "details": {"context_length": 40960},
                    "capabilities": ["completion", "tools", "thinking"],
                }
            ]
        },
    )
    [model] = fetch_once(settings, {"id": "local", "kind": "ollama", "base_url": server.url})
    assert model == Model(provider_id="local", id="qwen3:8b", context_length=40960, capabilities=("reasoning", "tools"))


def test_registry_ids_limits_costs_and_capabilities(settings, server):
    server.route("GET", "/api.json", json=fixture_json("models_dev_api.json"))
    config = {"id": "models-dev", "kind": "registry", "url": server.url + "/api.json", "api_key_env": "REGISTRY_TOKEN"}
    models = {m.id: m for m in fetch_once(settings, config)}
    assert sorted(models) == [
        "anthropic/claude-haiku-4-5-20251001",
        "anthropic/claude-opus-4-6",
        "anthropic/claude-sonnet-4-5-20250929",
        "deepseek/deepseek-chat",
        "deepseek/deepseek-reasoner",
        "lmstudio/qwen/qwen3-30b-a3b-2507",
        "openai/gpt-4o-mini",
        "openai/gpt-5",
    ]
    assert models["anthropic/claude-opus-4-6"] == Model(
        provider_id="models-dev",
        id="anthropic/claude-opus-4-6",
        display_name="Claude Opus 4.6",
        context_length=1000000,
        max_output_tokens=128000,
        capabilities=("files", "reasoning", "tools", "vision"),
        # cost.cache_read / cost.cache_write (the experimental "fast" mode's prices are not the model's)
        pricing=Pricing(input_per_mtok=5.0, output_per_mtok=25.0, cache_read_per_mtok=0.5, cache_write_per_mtok=6.25),
        status="active",  # no status in the file
        modalities=Modalities(input=("text", "image", "pdf"), output=("text",)),
    )
    assert models["openai/gpt-5"].pricing == Pricing(input_per_mtok=1.25, output_per_mtok=10.0, cache_read_per_mtok=0.125)
    assert models["openai/gpt-5"].modalities == Modalities(input=("text", "image"), output=("text",))
    assert models["deepseek/deepseek-chat"].pricing.cache_read_per_mtok == 0.0028
    assert models["openai/gpt-5"].capabilities == ("reasoning", "tools", "vision")
    assert models["deepseek/deepseek-chat"].capabilities == ("tools",)
    assert models["lmstudio/qwen/qwen3-30b-a3b-2507"].pricing == Pricing(input_per_mtok=0.0, output_per_mtok=0.0)
    assert models["lmstudio/qwen/qwen3-30b-a3b-2507"].context_length == 262144
    assert server.requests("/api.json")[0].headers["authorization"] == "Bearer reg-token-abcdef"


def test_registry_status_deprecated(settings, server):
    body = fixture_json("models_dev_api.json")
    models = body["openai"]["models"]
    assert not any("status" in m for p in body.values() for m in p["models"].values())  # recorded: all current
    models["gpt-4o-mini"]["status"] = "deprecated"
    models["gpt-5"]["status"] = "beta"  # models.dev's other statuses are still served: active
    server.route("GET", "/api.json", json=body)
    found = {m.id: m for m in fetch_once(settings, {"id": "md", "kind": "registry", "url": server.url + "/api.json"})}
    assert (found["openai/gpt-4o-mini"].status, found["openai/gpt-4o-mini"].retires_at) == ("deprecated", None)
    assert found["openai/gpt-5"].status == "active"
    assert found["anthropic/claude-opus-4-6"].status == "active"


def test_registry_of_the_wrong_shape(settings, server):
    server.route("GET", "/api.json", json={"error": "maintenance"})
    with pytest.raises(ProviderError) as caught:
        fetch_once(settings, {"id": "r", "kind": "registry", "url": server.url + "/api.json"})
    assert caught.value.reason == (
        "expected a JSON object keyed by provider (a models.dev api.json), got a JSON object with keys error"
    )


# Entries at the edges of every field's rules: blank names, numeric strings, negative and non-finite prices, a
# boolean price, unknown modalities and a non-list, a limit that is not an object.
ODD_REGISTRY_ENTRIES = {
    "blank": {"name": "  ", "limit": {"context": "123", "output": 1.0}, "cost": {"input": -1, "output": True}},
    "padded": {"name": " x ", "limit": {"context": 1e400},
               "cost": {"input": 0, "output": 0.0, "cache_read": "0.1", "cache_write": 2**70}},
    "modal": {"modalities": {"input": ["IMAGE", " pdf", "smell", 3], "output": "text"}, "tool_call": 1,
              "reasoning": True},
    "output-only": {"modalities": {"output": ["audio", "image"]}, "status": "deprecated",
                    "cost": {"input": float("nan"), "output": 1}},
    "odd-shapes": {"limit": [], "cost": None, "modalities": None, "status": "beta"},
    "float-prices": {"cost": {"input": 1.1, "output": 3.3000000000000003}, "limit": {"context": -5, "output": 0}},
}


def test_a_registry_entry_becomes_exactly_the_record_of_its_validated_model() -> None:
    """The registry builds records without a pydantic Model per entry (tens of thousands per answer): each must be
    what validating and dumping a Model of the same values gives, for the recorded fixture and the odd entries."""
    from chalicelib.core.domain import model_record
    from chalicelib.providers.registry import to_record

    entries = [(f"{key}/{model_key}", item) for key, provider in fixture_json("models_dev_api.json").items()
               for model_key, item in provider["models"].items()]
    entries += [(f"odd/{key}", item) for key, item in ODD_REGISTRY_ENTRIES.items()]
    for model_id, item in entries:
        record = to_record(model_id, item)
        assert model_record(Model(provider_id="p", **record)) == record
        assert list(record) == list(model_record(Model(provider_id="p", id=model_id)))  # same keys, same order
    odd = {model_id: to_record(model_id, item) for model_id, item in entries if model_id.startswith("odd/")}
    assert odd["odd/blank"]["display_name"] is None and odd["odd/blank"]["context_length"] == 123
    assert odd["odd/blank"]["pricing"] is None  # -1 and true are no prices
    assert odd["odd/padded"]["pricing"] == {"input_per_mtok": 0.0, "output_per_mtok": 0.0, "cache_read_per_mtok": None,
                                            "cache_write_per_mtok": float(2**70)}
    assert odd["odd/modal"]["capabilities"] == ["reasoning"]  # capabilities read the exact words; tool_call 1 is no true
    assert odd["odd/modal"]["modalities"] == {"input": ["image", "pdf"], "output": []}
    assert odd["odd/output-only"]["pricing"] is None and odd["odd/output-only"]["status"] == "deprecated"
    assert odd["odd/float-prices"]["pricing"]["output_per_mtok"] == 3.3000000000000003
