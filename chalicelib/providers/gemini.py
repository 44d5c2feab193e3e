"""Kind ``gemini``: ``GET {base_url}/models?pageSize=1000`` with ``x-goog-api-key`` (never ``?key=``, so the
key is in no URL), paginated: while the body has a non-empty ``nextPageToken``, the next page is requested
with ``pageToken=<it>``.

Field mapping: ``name`` without its ``models/`` prefix → ``id``; ``displayName`` → ``display_name``;
``inputTokenLimit`` → ``context_length``; ``outputTokenLimit`` → ``max_output_tokens``; no pricing.

Capabilities: ``supportedGenerationMethods`` containing ``embedContent`` / ``batchEmbedContents`` /
``embedText`` → ``embedding``; ``thinking: true`` → ``reasoning``. The list does not report input
modalities or tool use, so those are not claimed.
"""

from __future__ import annotations

from typing import Any

from chalicelib.core.domain import Model
from chalicelib.errors import ProviderError
from chalicelib.providers.base import (
    MAX_PAGES,
    FetchContext,
    capabilities,
    items_with_id,
    list_field,
    positive_int,
    text,
)

PAGE_SIZE = 1000
EXPECT = "a JSON object with `models`"
_EMBEDDING_METHODS = frozenset({"embedContent", "batchEmbedContents", "embedText", "asyncBatchEmbedContent"})


def fetch_models(ctx: FetchContext) -> list[Model]:
    headers = {"x-goog-api-key": ctx.api_key} if ctx.api_key else {}
    models: list[Model] = []
    page_token: str | None = None
    seen_tokens: set[str] = set()
    for _ in range(MAX_PAGES):
        params: dict[str, Any] = {"pageSize": PAGE_SIZE}
        if page_token:
            params["pageToken"] = page_token
        body = ctx.http.get_json(ctx.url("models"), expect=EXPECT, params=params, headers=headers)
        if isinstance(body, dict) and "models" not in body and set(body) <= {"nextPageToken"}:
            items: list[Any] = []  # Gemini omits `models` entirely when there are none
        else:
            items = list_field(body, "models", EXPECT)
        for name, item in items_with_id(items, ctx, id_key="name"):
            model_id = name.removeprefix("models/")
            if model_id:
                models.append(to_model(ctx.provider_id, model_id, item))
        next_token = body.get("nextPageToken")
        if not isinstance(next_token, str) or not next_token:
            return models
        if next_token in seen_tokens:
            raise ProviderError("the provider's pagination did not advance (the same nextPageToken twice)")
        seen_tokens.add(next_token)
        page_token = next_token
    raise ProviderError(f"the provider returned more than {MAX_PAGES} pages of models")


def to_model(provider_id: str, model_id: str, item: dict[str, Any]) -> Model:
    methods = item.get("supportedGenerationMethods")
    methods = set(m for m in methods if isinstance(m, str)) if isinstance(methods, list) else set()
    found: set[str] = set()
    if methods & _EMBEDDING_METHODS:
        found.add("embedding")
    if item.get("thinking") is True:
        found.add("reasoning")
    return Model(
        provider_id=provider_id,
        id=model_id,
        display_name=text(item.get("displayName")),
        context_length=positive_int(item.get("inputTokenLimit")),
        max_output_tokens=positive_int(item.get("outputTokenLimit")),
        capabilities=capabilities(found),
    )
