"""Kind ``ollama``: ``GET {base_url}/api/tags`` (no auth locally; ``Authorization: Bearer <key>`` when a key
is set, e.g. behind a proxy). Body ``{"models": [...]}``.

Field mapping: ``name`` → ``id``; no display name; ``details.context_length`` (newer servers) →
``context_length``; no max output, no pricing.

Capabilities, from the ``capabilities`` list newer servers send: ``tools`` → ``tools``; ``vision`` →
``vision``; ``embedding`` → ``embedding``; ``thinking`` → ``reasoning``; ``audio`` → ``audio``; ``image``
(image generation) → ``image_output``. ``completion`` and ``insert`` map to nothing.
"""

from __future__ import annotations

from typing import Any

from chalicelib.core.domain import Model
from chalicelib.providers.base import (
    FetchContext,
    bearer,
    capabilities,
    dig,
    items_with_id,
    list_field,
    positive_int,
)

EXPECT = "a JSON object with `models`"
_CAPABILITIES = {
    "tools": "tools",
    "vision": "vision",
    "embedding": "embedding",
    "thinking": "reasoning",
    "audio": "audio",
    "image": "image_output",
}


def fetch_models(ctx: FetchContext) -> list[Model]:
    body = ctx.http.get_json(ctx.url("api/tags"), expect=EXPECT, headers=bearer(ctx.api_key))
    items = list_field(body, "models", EXPECT)
    return [to_model(ctx.provider_id, model_id, item) for model_id, item in items_with_id(items, ctx, id_key="name")]


def to_model(provider_id: str, model_id: str, item: dict[str, Any]) -> Model:
    listed = item.get("capabilities")
    listed = listed if isinstance(listed, list) else []
    found = {_CAPABILITIES[c] for c in listed if isinstance(c, str) and c in _CAPABILITIES}
    return Model(
        provider_id=provider_id,
        id=model_id,
        context_length=positive_int(dig(item, "details", "context_length")) or positive_int(item.get("context_length")),
        capabilities=capabilities(found),
    )
