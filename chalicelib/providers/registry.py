"""Kind ``registry``: ``GET {url}`` (``Authorization: Bearer <key>`` when a key is set) of a models.dev-style
``api.json``: an object keyed by provider key, each ``{"models": {<model key>: {...}}}``. One catalog
provider holds every model in the file.

Field mapping: ``"<provider key>/<model key>"`` → ``id`` (the keys of the two objects; a model key may itself
contain ``/``); ``name`` → ``display_name``; ``limit.context`` → ``context_length``; ``limit.output`` →
``max_output_tokens``; ``cost.input`` / ``cost.output`` (already USD per million tokens) → ``pricing``
(``None`` unless both are non-negative numbers; ``0`` is a real, free price); ``cost.cache_read`` /
``cost.cache_write`` → ``pricing.cache_read_per_mtok`` / ``cache_write_per_mtok``. ``status: "deprecated"`` →
``status`` ``"deprecated"`` (models.dev's ``alpha`` / ``beta`` and no status → ``"active"``; it publishes no
retirement date); ``modalities.input`` / ``output`` → ``modalities`` (its vocabulary is ours).

Capabilities: ``tool_call: true`` → ``tools``; ``reasoning: true`` → ``reasoning``;
``modalities.input`` ``image`` → ``vision``, ``pdf`` → ``files``, ``audio`` → ``audio``, ``video`` →
``video``; ``modalities.output`` ``image`` → ``image_output``, ``audio`` → ``audio``.
"""

from __future__ import annotations

from typing import Any

from chalicelib.core.domain import Model
from chalicelib.providers.base import (
    FetchContext,
    bearer,
    capabilities,
    dig,
    modalities,
    positive_int,
    pricing,
    shape_error,
    text,
    usd_amount,
)

EXPECT = "a JSON object keyed by provider (a models.dev api.json)"
_INPUT = {"image": "vision", "pdf": "files", "audio": "audio", "video": "video"}
_OUTPUT = {"image": "image_output", "audio": "audio"}


def fetch_models(ctx: FetchContext) -> list[Model]:
    body = ctx.http.get_json(ctx.provider.endpoint, expect=EXPECT, headers=bearer(ctx.api_key))
    if not isinstance(body, dict):
        raise shape_error(EXPECT, body)
    keys = [k for k, v in body.items() if isinstance(v, dict) and isinstance(v.get("models"), dict)]
    if body and not keys:
        raise shape_error(EXPECT, body)
    models: list[Model] = []
    for provider_key in keys:
        entry = body.pop(provider_key)  # drop the raw JSON as it is converted: halves the peak memory of big files
        ctx.count_models(len(entry["models"]))  # past the per-provider limit, fail before building the models
        for model_key, item in entry["models"].items():
            if isinstance(item, dict) and isinstance(model_key, str) and model_key:
                models.append(to_model(ctx.provider_id, f"{provider_key}/{model_key}", item))
    return models


def to_model(provider_id: str, model_id: str, item: dict[str, Any]) -> Model:
    found: set[str] = set()
    if item.get("tool_call") is True:
        found.add("tools")
    if item.get("reasoning") is True:
        found.add("reasoning")
    found |= _mapped(dig(item, "modalities", "input"), _INPUT)
    found |= _mapped(dig(item, "modalities", "output"), _OUTPUT)
    return Model(
        provider_id=provider_id,
        id=model_id,
        display_name=text(item.get("name")),
        context_length=positive_int(dig(item, "limit", "context")),
        max_output_tokens=positive_int(dig(item, "limit", "output")),
        capabilities=capabilities(found),
        pricing=pricing(
            usd_amount(_number(dig(item, "cost", "input"))),
            usd_amount(_number(dig(item, "cost", "output"))),
            cache_read=usd_amount(_number(dig(item, "cost", "cache_read"))),
            cache_write=usd_amount(_number(dig(item, "cost", "cache_write"))),
        ),
        status="deprecated" if item.get("status") == "deprecated" else "active",
        modalities=modalities(dig(item, "modalities", "input"), dig(item, "modalities", "output")),
    )


def _number(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _mapped(values: Any, table: dict[str, str]) -> set[str]:
    if not isinstance(values, list):
        return set()
    return {table[v] for v in values if isinstance(v, str) and v in table}
