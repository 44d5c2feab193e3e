"""The models.dev ``api.json`` schema (what opencode reads from ``$OPENCODE_MODELS_URL/api.json``).

One entry per provider, keyed by provider id: ``id``, ``name``, ``env`` (the env var of its key), ``npm`` (the AI SDK
package that speaks its API) and ``api`` (its base URL) where known, and ``models`` keyed by model id. Prices are
USD per million tokens (the catalog's own unit). A limit the catalog does not know is ``0``: clients of the format
(opencode among them) require numbers there. ``status`` is written only for deprecated models (the format's values
are ``alpha``/``beta``/``deprecated``; absent means active).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.exports.snapshot import (
    CatalogSnapshot,
    api_key_env,
    capabilities,
    is_deprecated,
    modalities,
    pricing,
)

if TYPE_CHECKING:
    from chalicelib.catalog_config import ProviderConfig
    from chalicelib.core.domain import ModelRecord

# The AI SDK package for each kind, and how its base URL follows from the provider's `base_url`.
_SDK_PACKAGES = {
    "openai": "@ai-sdk/openai-compatible",
    "managed_oauth": "@ai-sdk/openai-compatible",
    "ollama": "@ai-sdk/openai-compatible",
    "anthropic": "@ai-sdk/anthropic",
    "gemini": "@ai-sdk/google",
    "openrouter": "@openrouter/ai-sdk-provider",
}
_COST_FIELDS = (("input", "input_per_mtok"), ("output", "output_per_mtok"),
                ("cache_read", "cache_read_per_mtok"), ("cache_write", "cache_write_per_mtok"))


def render_models_dev(snapshot: CatalogSnapshot) -> dict[str, Any]:
    return {pid: _provider(pid, snapshot.config(pid), snapshot.models.get(pid, ())) for pid in snapshot.provider_ids}


def _provider(provider_id: str, config: ProviderConfig | None, models: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": provider_id,
        "name": config.display_name if config else provider_id,
        "env": [api_key_env(provider_id, config)],
    }
    if config is not None and config.kind in _SDK_PACKAGES:
        entry["npm"] = _SDK_PACKAGES[config.kind]
        api = _api_url(config)
        if api:
            entry["api"] = api
    entry["models"] = {record["id"]: _model(record) for record in models}
    return entry


def _api_url(config: ProviderConfig) -> str | None:
    base = (config.base_url or "").rstrip("/")
    if not base:
        return None
    # Ollama's OpenAI-compatible API lives under /v1 of the server the catalog reads /api/tags from.
    return f"{base}/v1" if config.kind == "ollama" else base


def _model(record: ModelRecord) -> dict[str, Any]:
    caps = capabilities(record)
    model: dict[str, Any] = {
        "id": record["id"],
        "name": record.get("display_name") or record["id"],
        "attachment": bool(caps & {"vision", "files"}),
        "reasoning": "reasoning" in caps,
        "tool_call": "tools" in caps,
        "modalities": modalities(record),
        "limit": {"context": record.get("context_length") or 0, "output": record.get("max_output_tokens") or 0},
    }
    prices = pricing(record)
    if prices:
        model["cost"] = {name: prices[field] for name, field in _COST_FIELDS if prices.get(field) is not None}
    if is_deprecated(record):
        model["status"] = "deprecated"
    return model
