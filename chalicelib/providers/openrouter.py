"""Kind ``openrouter``: ``GET {base_url}/models`` (``Authorization: Bearer <key>`` when a key is set; the
list is public). Body ``{"data": [...]}``.

Field mapping: ``id`` → ``id``; ``name`` → ``display_name``; ``context_length`` → ``context_length``;
``top_provider.max_completion_tokens`` → ``max_output_tokens``; ``pricing.prompt`` / ``pricing.completion``
(strings, USD per token) × 1,000,000 → ``pricing.input_per_mtok`` / ``output_per_mtok``. ``"0"`` is a real
(free) price; ``"-1"`` (OpenRouter's "varies", e.g. the auto router), a missing or unparsable value →
``pricing`` is ``None``. ``pricing.input_cache_read`` / ``input_cache_write`` (USD per token) × 1,000,000 →
``pricing.cache_read_per_mtok`` / ``cache_write_per_mtok`` (``None`` when absent).

Lifecycle: a date in ``expiration_date`` → ``status`` ``"deprecated"`` and ``retires_at`` that date; ``null`` →
``"active"``. Modalities: ``architecture.input_modalities`` / ``output_modalities``, ``file`` → ``pdf`` (OpenRouter's
file inputs are PDFs); words outside the vocabulary (``embeddings``) are left to ``capabilities``.

Capabilities: ``architecture.input_modalities`` ``image`` → ``vision``, ``file`` → ``files``, ``audio`` →
``audio``, ``video`` → ``video``; ``architecture.output_modalities`` ``image`` → ``image_output``, ``audio``
→ ``audio``, ``embeddings`` → ``embedding``; ``supported_parameters`` ``tools`` → ``tools``, ``reasoning`` /
``include_reasoning`` → ``reasoning``.
"""

from __future__ import annotations

from typing import Any

from chalicelib.core.domain import Model
from chalicelib.providers.base import (
    FetchContext,
    bearer,
    capabilities,
    dig,
    iso_date,
    items_with_id,
    list_field,
    modalities,
    positive_int,
    pricing,
    text,
    usd_amount,
)

EXPECT = "a JSON object with `data`"
_INPUT = {"image": "vision", "file": "files", "audio": "audio", "video": "video"}
_OUTPUT = {"image": "image_output", "audio": "audio", "embeddings": "embedding", "embedding": "embedding"}
_PARAMETERS = {"tools": "tools", "reasoning": "reasoning", "include_reasoning": "reasoning"}
_MODALITY_WORDS = {"file": "pdf"}


def fetch_models(ctx: FetchContext) -> list[Model]:
    body = ctx.http.get_json(ctx.url("models"), expect=EXPECT, headers=bearer(ctx.api_key))
    items = list_field(body, "data", EXPECT)
    return [to_model(ctx.provider_id, model_id, item) for model_id, item in items_with_id(items, ctx)]


def to_model(provider_id: str, model_id: str, item: dict[str, Any]) -> Model:
    found = _mapped(dig(item, "architecture", "input_modalities"), _INPUT)
    found |= _mapped(dig(item, "architecture", "output_modalities"), _OUTPUT)
    found |= _mapped(item.get("supported_parameters"), _PARAMETERS)
    retires_at = iso_date(item.get("expiration_date"))
    return Model(
        provider_id=provider_id,
        id=model_id,
        display_name=text(item.get("name")),
        context_length=positive_int(item.get("context_length")),
        max_output_tokens=positive_int(dig(item, "top_provider", "max_completion_tokens")),
        capabilities=capabilities(found),
        pricing=pricing(
            usd_amount(dig(item, "pricing", "prompt")),
            usd_amount(dig(item, "pricing", "completion")),
            scale=1_000_000,
            cache_read=usd_amount(dig(item, "pricing", "input_cache_read")),
            cache_write=usd_amount(dig(item, "pricing", "input_cache_write")),
        ),
        status="deprecated" if retires_at else "active",
        retires_at=retires_at,
        modalities=modalities(
            dig(item, "architecture", "input_modalities"),
            dig(item, "architecture", "output_modalities"),
            _MODALITY_WORDS,
        ),
    )


def _mapped(values: Any, table: dict[str, str]) -> set[str]:
    if not isinstance(values, list):
        return set()
    return {table[v] for v in values if isinstance(v, str) and v in table}
