"""The export formats (docs/reference.md §11), pure: records and provider configs in, documents out.

Records carry the fields of section 10 (``status``, ``retires_at``, ``modalities``, cache prices) where a test needs
them; records without them export as active models with modalities derived from their capabilities.
"""

from __future__ import annotations

import pytest

from chalicelib.catalog_config import ProviderConfig
from chalicelib.exports import ALIASES, EXPORTS, CatalogSnapshot
from chalicelib.exports.snapshot import api_key_env


def record(model_id: str, **fields):
    base = {"id": model_id, "display_name": None, "context_length": None, "max_output_tokens": None,
            "capabilities": [], "pricing": None}
    return {**base, **fields}


FULL = record(
    "big-1",
    display_name="Big One",
    context_length=200_000,
    max_output_tokens=32_000,
    capabilities=["files", "reasoning", "tools", "vision"],
    pricing={"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cache_read_per_mtok": 0.3,
             "cache_write_per_mtok": 3.75},
    status="deprecated",
    retires_at="2026-12-31",
    modalities={"input": ["text", "image", "pdf"], "output": ["text"]},
)
BARE = record("org/bare")
EMBED = record("embed-1", context_length=8192, capabilities=["embedding"],
               pricing={"input_per_mtok": 0.02, "output_per_mtok": 0.0})

PROVIDERS = (
    ProviderConfig(id="oa", name="Open A", kind="openai", base_url="https://api.example.com/v1",
                   api_key_env="OA_KEY"),
    ProviderConfig(id="my-llm.v2", kind="managed_oauth", base_url="https://llm.example.com/v1/",
                   token_url="https://llm.example.com/token", client_id="c", refresh_token_env="LLM_REFRESH"),
    ProviderConfig(id="reg", kind="registry", url="https://registry.example.com/api.json"),
    ProviderConfig(id="local", kind="ollama", base_url="http://127.0.0.1:11434"),
    ProviderConfig(id="claude", kind="anthropic", base_url="https://api.anthropic.com/v1",
                   api_key_env="ANTHROPIC_API_KEY"),
    ProviderConfig(id="empty", kind="openai", base_url="https://empty.example.com/v1"),
)
SNAPSHOT = CatalogSnapshot(
    revision=7,
    models={"oa": [FULL, EMBED], "my-llm.v2": [BARE], "reg": [record("a/b", context_length=10)],
            "local": [record("llama3")], "claude": [record("claude-x", capabilities=["vision"])],
            "gone": [record("old")]},
    configured=PROVIDERS,
)


def render(name):
    return EXPORTS[name].render(SNAPSHOT)


def test_the_registry_names_the_contract_exports() -> None:
    assert set(EXPORTS) == {"models.dev/api.json", "litellm.json", "openai/models"}
    assert ALIASES == {"models.dev": "models.dev/api.json"}


# -- models.dev ------------------------------------------------------------------------------------------------
def test_models_dev_providers() -> None:
    doc = render("models.dev/api.json")
    assert list(doc) == ["oa", "my-llm.v2", "reg", "local", "claude", "empty", "gone"]
    assert {k: v for k, v in doc["oa"].items() if k != "models"} == {
        "id": "oa", "name": "Open A", "env": ["OA_KEY"], "npm": "@ai-sdk/openai-compatible",
        "api": "https://api.example.com/v1"}
    assert doc["my-llm.v2"]["env"] == ["MY_LLM_V2_API_KEY"]
    assert doc["my-llm.v2"]["api"] == "https://llm.example.com/v1"
    assert doc["my-llm.v2"]["npm"] == "@ai-sdk/openai-compatible"
    assert "npm" not in doc["reg"] and "api" not in doc["reg"] and doc["reg"]["env"] == ["REG_API_KEY"]
    assert doc["local"]["api"] == "http://127.0.0.1:11434/v1"
    assert doc["claude"]["npm"] == "@ai-sdk/anthropic" and doc["claude"]["env"] == ["ANTHROPIC_API_KEY"]
    assert doc["empty"]["models"] == {}
    assert doc["gone"] == {"id": "gone", "name": "gone", "env": ["GONE_API_KEY"], "models": {"old": {
        "id": "old", "name": "old", "attachment": False, "reasoning": False, "tool_call": False,
        "modalities": {"input": ["text"], "output": ["text"]}, "limit": {"context": 0, "output": 0}}}}


def test_models_dev_model_maps_every_field_in_its_units() -> None:
    model = render("models.dev/api.json")["oa"]["models"]["big-1"]
    assert model == {
        "id": "big-1",
        "name": "Big One",
        "attachment": True,
        "reasoning": True,
        "tool_call": True,
        "modalities": {"input": ["text", "image", "pdf"], "output": ["text"]},
        "limit": {"context": 200_000, "output": 32_000},
        "cost": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75},
        "status": "deprecated",
    }


def test_models_dev_derives_modalities_and_leaves_out_what_is_unknown() -> None:
    doc = render("models.dev/api.json")
    bare = doc["my-llm.v2"]["models"]["org/bare"]
    assert "cost" not in bare and "status" not in bare
    assert bare["limit"] == {"context": 0, "output": 0}
    vision = doc["claude"]["models"]["claude-x"]
    assert vision["modalities"] == {"input": ["text", "image"], "output": ["text"]} and vision["attachment"]
    assert doc["oa"]["models"]["embed-1"]["cost"] == {"input": 0.02, "output": 0.0}


# -- LiteLLM ---------------------------------------------------------------------------------------------------
def test_litellm_keys_are_provider_slash_model() -> None:
    assert sorted(render("litellm.json")) == sorted(
        ["oa/big-1", "oa/embed-1", "my-llm.v2/org/bare", "reg/a/b", "local/llama3", "claude/claude-x", "gone/old"])


def test_litellm_entry_maps_every_field_per_token() -> None:
    entry = render("litellm.json")["oa/big-1"]
    assert entry == {
        "max_input_tokens": 200_000,
        "max_output_tokens": 32_000,
        "max_tokens": 32_000,
        "input_cost_per_token": pytest.approx(3e-6),
        "output_cost_per_token": pytest.approx(15e-6),
        "cache_read_input_token_cost": pytest.approx(3e-7),
        "cache_creation_input_token_cost": pytest.approx(3.75e-6),
        "litellm_provider": "openai",
        "mode": "chat",
        "supports_function_calling": True,
        "supports_vision": True,
        "supports_reasoning": True,
        "supports_pdf_input": True,
        "deprecation_date": "2026-12-31",
    }


def test_litellm_leaves_out_unknown_values_and_names_the_provider() -> None:
    doc = render("litellm.json")
    assert doc["my-llm.v2/org/bare"] == {
        "litellm_provider": "openai", "mode": "chat", "supports_function_calling": False,
        "supports_vision": False, "supports_reasoning": False, "supports_pdf_input": False}
    assert doc["oa/embed-1"]["mode"] == "embedding"
    assert doc["reg/a/b"]["litellm_provider"] == "reg"
    assert doc["local/llama3"]["litellm_provider"] == "ollama"
    assert doc["claude/claude-x"]["litellm_provider"] == "anthropic"
    assert doc["gone/old"]["litellm_provider"] == "gone"


def test_litellm_deprecation_date_is_a_date() -> None:
    snapshot = CatalogSnapshot(revision=1, models={"oa": [record("m", retires_at="2027-01-15T00:00:00Z")]},
                               configured=PROVIDERS)
    assert EXPORTS["litellm.json"].render(snapshot)["oa/m"]["deprecation_date"] == "2027-01-15"


# -- OpenAI ----------------------------------------------------------------------------------------------------
def test_openai_models_lists_every_model_in_catalog_order() -> None:
    doc = render("openai/models")
    assert doc["object"] == "list"
    assert [item["id"] for item in doc["data"]] == [
        "claude/claude-x", "gone/old", "local/llama3", "my-llm.v2/org/bare", "oa/big-1", "oa/embed-1", "reg/a/b"]
    assert doc["data"][0] == {"id": "claude/claude-x", "object": "model", "created": 0, "owned_by": "claude"}


@pytest.mark.parametrize(
    ("provider_id", "expected"),
    [("openai", "OPENAI_API_KEY"), ("my-llm.v2", "MY_LLM_V2_API_KEY"), ("9lives", "P_9LIVES_API_KEY"),
     ("a__b", "A_B_API_KEY"), ("...", "PROVIDER_API_KEY")],
)
def test_a_stable_env_name_without_api_key_env(provider_id, expected) -> None:
    assert api_key_env(provider_id, None) == expected
