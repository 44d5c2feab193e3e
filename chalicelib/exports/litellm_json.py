"""LiteLLM's ``model_prices_and_context_window.json`` schema (``litellm.register_model(<this document>)``).

Keys are ``<provider id>/<model id>``. Prices are USD per token (the catalog's per-million prices divided by
1,000,000); ``litellm_provider`` names the LiteLLM provider that speaks the provider's API (``openai`` for every
OpenAI-compatible kind; the provider id where the catalog does not know it, as for registries). What the catalog
does not know is left out (LiteLLM reads a missing price as none known, not as free).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.exports.snapshot import CatalogSnapshot, capabilities, modalities, pricing, retires_on

if TYPE_CHECKING:
    from chalicelib.catalog_config import ProviderConfig
    from chalicelib.core.domain import ModelRecord

PER_MILLION = 1_000_000
_LITELLM_PROVIDERS = {
    "openai": "openai",
    "managed_oauth": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "openrouter": "openrouter",
    "ollama": "ollama",
}
_COSTS = (("input_cost_per_token", "input_per_mtok"), ("output_cost_per_token", "output_per_mtok"),
          ("cache_read_input_token_cost", "cache_read_per_mtok"),
          ("cache_creation_input_token_cost", "cache_write_per_mtok"))


def litellm_provider(provider_id: str, config: ProviderConfig | None) -> str:
    return _LITELLM_PROVIDERS.get(config.kind, provider_id) if config is not None else provider_id


def render_litellm(snapshot: CatalogSnapshot) -> dict[str, Any]:
    providers = {pid: litellm_provider(pid, snapshot.config(pid)) for pid in snapshot.models}
    return {f"{pid}/{record['id']}": _entry(record, providers[pid]) for pid, record in snapshot.all_models()}


def _entry(record: ModelRecord, provider: str) -> dict[str, Any]:
    caps = capabilities(record)
    inputs = modalities(record)["input"]
    entry: dict[str, Any] = {
        "max_input_tokens": record.get("context_length"),
        "max_output_tokens": record.get("max_output_tokens"),
        "max_tokens": record.get("max_output_tokens"),  # LiteLLM's older name of the output limit
    }
    prices = pricing(record)
    for name, field in _COSTS:
        if prices.get(field) is not None:
            entry[name] = prices[field] / PER_MILLION
    entry.update(
        litellm_provider=provider,
        mode="embedding" if "embedding" in caps else "chat",
        supports_function_calling="tools" in caps,
        supports_vision="vision" in caps or "image" in inputs,
        supports_reasoning="reasoning" in caps,
        supports_pdf_input="files" in caps or "pdf" in inputs,
        deprecation_date=retires_on(record),
    )
    return {name: value for name, value in entry.items() if value is not None}
