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

The file is read one provider section at a time (``JsonMembers``): a 20 MB ``api.json`` is never held whole as
Python objects, and equal small values of its records are shared (``base.Shared``). A provider key listed twice
contributes both sections; for a model id listed twice the first one counts.

Capabilities: ``tool_call: true`` → ``tools``; ``reasoning: true`` → ``reasoning``;
``modalities.input`` ``image`` → ``vision``, ``pdf`` → ``files``, ``audio`` → ``audio``, ``video`` →
``video``; ``modalities.output`` ``image`` → ``image_output``, ``audio`` → ``audio``.
"""

from __future__ import annotations

from typing import Any

from chalicelib.core.domain import ModelRecord
from chalicelib.http import JsonMembers
from chalicelib.providers.base import (
    FetchContext,
    Shared,
    bearer,
    capability_list,
    frozen,
    modality_fields,
    model_fields,
    positive_int,
    pricing_fields,
    shape_error,
    text,
    usd_float,
)

EXPECT = "a JSON object keyed by provider (a models.dev api.json)"
_INPUT = {"image": "vision", "pdf": "files", "audio": "audio", "video": "video"}
_OUTPUT = {"image": "image_output", "audio": "audio"}


def fetch_models(ctx: FetchContext) -> list[ModelRecord]:
    body = ctx.http.get_json(ctx.provider.endpoint, expect=EXPECT, headers=bearer(ctx.api_key), members=True)
    if not isinstance(body, JsonMembers):
        raise shape_error(EXPECT, body)
    shared = Shared()
    models: list[ModelRecord] = []
    found = False
    # One provider section parsed at a time, converted and dropped: the file is never held whole as Python objects.
    for provider_key, entry in body.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("models"), dict)):
            continue
        found = True
        ctx.count_models(len(entry["models"]))  # past the per-provider limit, fail before building the models
        for model_key, item in entry.pop("models").items():
            if isinstance(item, dict) and isinstance(model_key, str) and model_key:
                models.append(to_record(f"{provider_key}/{model_key}", item, shared))
    if body.keys and not found:
        raise shape_error(EXPECT, dict.fromkeys(body.keys))
    return models


def to_record(model_id: str, item: dict[str, Any], shared: Shared | None = None) -> ModelRecord:
    """One entry as its record (no pydantic ``Model`` per entry: a registry lists tens of thousands). ``shared``
    computes (and stores) once the small values many records have in common: capability and modality lists, token
    counts."""
    shared = shared or Shared()
    modalities = item.get("modalities")
    modalities = modalities if isinstance(modalities, dict) else {}
    inputs, outputs = modalities.get("input"), modalities.get("output")
    tools, reasoning = item.get("tool_call") is True, item.get("reasoning") is True
    io = (frozen(inputs), frozen(outputs))
    limit, cost = item.get("limit"), item.get("cost")
    limit = limit if isinstance(limit, dict) else {}
    cost = cost if isinstance(cost, dict) else {}
    context, output = positive_int(limit.get("context")), positive_int(limit.get("output"))
    return model_fields(
        model_id,
        display_name=text(item.get("name")),
        context_length=None if context is None else shared.value(("int", context), lambda: context),
        max_output_tokens=None if output is None else shared.value(("int", output), lambda: output),
        capabilities=shared.value(("capabilities", tools, reasoning, *io), lambda: _capabilities(tools, reasoning,
                                                                                                  inputs, outputs)),
        pricing=pricing_fields(
            usd_float(cost.get("input")),
            usd_float(cost.get("output")),
            usd_float(cost.get("cache_read")),
            usd_float(cost.get("cache_write")),
        ),
        status="deprecated" if item.get("status") == "deprecated" else "active",
        modalities=shared.value(("modalities", *io), lambda: modality_fields(inputs, outputs)),
    )


def _capabilities(tools: bool, reasoning: bool, inputs: Any, outputs: Any) -> list[str]:
    found: set[str] = set()
    if tools:
        found.add("tools")
    if reasoning:
        found.add("reasoning")
    return capability_list(found | _mapped(inputs, _INPUT) | _mapped(outputs, _OUTPUT))


def _mapped(values: Any, table: dict[str, str]) -> set[str]:
    if not isinstance(values, list):
        return set()
    return {table[v] for v in values if isinstance(v, str) and v in table}
