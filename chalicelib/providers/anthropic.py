"""Kind ``anthropic``: ``GET {base_url}/models?limit=1000`` with ``x-api-key`` and
``anthropic-version: 2023-06-01``, paginated: while ``has_more``, the next page is requested with
``after_id=<last_id>``.

Field mapping: ``id`` → ``id``; ``display_name`` → ``display_name``; ``max_input_tokens`` →
``context_length``; ``max_tokens`` → ``max_output_tokens``; no pricing. All three are optional (servers
older than 2026-03, and Anthropic-compatible ones, send only id/display_name/created_at/type).

Capabilities, from the ``capabilities`` object (each entry ``{"supported": bool}``): ``image_input`` →
``vision``; ``pdf_input`` → ``files``; ``thinking`` → ``reasoning``. The list does not report tool use,
so ``tools`` is not claimed.
"""

from __future__ import annotations

from typing import Any

from chalicelib.core.domain import Model
from chalicelib.errors import ProviderError
from chalicelib.providers.base import (
    MAX_PAGES,
    FetchContext,
    capabilities,
    dig,
    items_with_id,
    list_field,
    positive_int,
    text,
)

API_VERSION = "2023-06-01"
PAGE_SIZE = 1000
EXPECT = "a JSON object with `data`"
_FLAGS = {"image_input": "vision", "pdf_input": "files", "thinking": "reasoning"}


def fetch_models(ctx: FetchContext) -> list[Model]:
    headers = {"anthropic-version": API_VERSION}
    if ctx.api_key:
        headers["x-api-key"] = ctx.api_key
    models: list[Model] = []
    after_id: str | None = None
    seen_cursors: set[str] = set()
    for _ in range(MAX_PAGES):
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if after_id:
            params["after_id"] = after_id
        body = ctx.http.get_json(ctx.url("models"), expect=EXPECT, params=params, headers=headers)
        items = list_field(body, "data", EXPECT)
        models += [to_model(ctx.provider_id, model_id, item) for model_id, item in items_with_id(items, ctx)]
        if body.get("has_more") is not True:
            return models
        last_id = body.get("last_id")
        if not isinstance(last_id, str) or not last_id:
            last_id = items[-1].get("id") if items and isinstance(items[-1], dict) else None
        if not isinstance(last_id, str) or not last_id or last_id in seen_cursors:
            raise ProviderError("the provider's pagination did not advance (has_more without a new last_id)")
        seen_cursors.add(last_id)
        after_id = last_id
    raise ProviderError(f"the provider returned more than {MAX_PAGES} pages of models")


def to_model(provider_id: str, model_id: str, item: dict[str, Any]) -> Model:
    declared = item.get("capabilities")
    flags = {name for key, name in _FLAGS.items() if dig(declared, key, "supported") is True}
    return Model(
        provider_id=provider_id,
        id=model_id,
        display_name=text(item.get("display_name")),
        context_length=positive_int(item.get("max_input_tokens")),
        max_output_tokens=positive_int(item.get("max_tokens")),
        capabilities=capabilities(flags),
    )
