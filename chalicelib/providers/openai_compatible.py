"""Kind ``openai``: ``GET {base_url}/models`` with ``Authorization: Bearer <key>`` (when a key is set).

Covers OpenAI and the OpenAI-compatible servers (Moonshot, Groq, DeepSeek, Mistral, xAI, Together, vLLM,
LM Studio, Ollama's /v1…). The body is ``{"data": [...]}`` or, from Together, a bare array.

Field mapping (first present wins):

- ``id`` → ``id``; ``display_name`` → ``display_name`` (Together, Kimi); otherwise none (Mistral's ``name`` is
  a version slug, not a display name).
- ``context_length`` (Together, Moonshot) / ``context_window`` (Groq) / ``max_model_len`` (vLLM) /
  ``max_context_length`` (Mistral, LM Studio) → ``context_length``.
- ``max_completion_tokens`` (Groq) / ``max_output_tokens`` → ``max_output_tokens``.
- ``pricing``: none — docs/reference.md §4 defines no price field for this kind (Together's ``pricing`` is ignored).
- Lifecycle: a date in ``shutdown_date`` (OpenAI) or ``deprecation`` (Mistral; a date or date-time) → ``status``
  ``"deprecated"`` and ``retires_at`` that day; absent or ``null`` → ``"active"``. (Groq's ``active`` flag says
  whether a model is served now, not that it is going away, so it is not read.)

Capabilities, only from what the server states (nothing is guessed from model ids):

- Mistral ``capabilities`` object: ``function_calling`` → ``tools``; ``vision`` → ``vision``; ``reasoning`` →
  ``reasoning``; ``audio`` / ``audio_transcription*`` / ``audio_speech`` → ``audio``.
- Moonshot: ``supports_image_in`` → ``vision``; ``supports_video_in`` → ``video``; ``supports_reasoning`` →
  ``reasoning``.
- Together ``type``: ``embedding`` → ``embedding``; ``audio`` / ``transcribe`` → ``audio``; ``image`` →
  ``image_output``. LM Studio ``type``: ``embeddings`` → ``embedding``; ``vlm`` → ``vision``.
- A ``capabilities`` list of strings (Ollama-style servers): ``tools``, ``vision``, ``embedding``, ``audio``,
  ``thinking`` → ``reasoning``.
"""

from __future__ import annotations

from typing import Any

from chalicelib.core.domain import Model
from chalicelib.providers.base import (
    FetchContext,
    bearer,
    capabilities,
    first_int,
    iso_date,
    items_with_id,
    shape_error,
    text,
)

EXPECT = "a JSON object with `data`"

_MISTRAL_FLAGS = {
    "function_calling": "tools",
    "vision": "vision",
    "reasoning": "reasoning",
    "audio": "audio",
    "audio_transcription": "audio",
    "audio_transcription_realtime": "audio",
    "audio_speech": "audio",
}
_MOONSHOT_FLAGS = {"supports_image_in": "vision", "supports_video_in": "video", "supports_reasoning": "reasoning"}
_TYPES = {
    "embedding": "embedding",
    "embeddings": "embedding",
    "audio": "audio",
    "transcribe": "audio",
    "image": "image_output",
    "vlm": "vision",
}
_LISTED = {"tools": "tools", "vision": "vision", "embedding": "embedding", "audio": "audio", "thinking": "reasoning"}


def fetch_models(ctx: FetchContext) -> list[Model]:
    body = ctx.http.get_json(ctx.url("models"), expect=EXPECT, headers=bearer(ctx.api_key))
    return parse_models(ctx, body)


def parse_models(ctx: FetchContext, body: Any) -> list[Model]:
    """The models of an OpenAI-style list body (``{"data": [...]}`` or a bare array)."""
    if isinstance(body, list):
        items = body
    elif isinstance(body, dict) and isinstance(body.get("data"), list):
        items = body["data"]
    elif isinstance(body, dict) and "data" in body and body["data"] is None:
        items = []
    else:
        raise shape_error(EXPECT, body)
    return [to_model(ctx.provider_id, model_id, item) for model_id, item in items_with_id(items, ctx)]


def to_model(provider_id: str, model_id: str, item: dict[str, Any]) -> Model:
    retires_at = iso_date(item.get("shutdown_date")) or iso_date(item.get("deprecation"))
    return Model(
        provider_id=provider_id,
        id=model_id,
        display_name=text(item.get("display_name")),
        context_length=first_int(item, "context_length", "context_window", "max_model_len", "max_context_length"),
        max_output_tokens=first_int(item, "max_completion_tokens", "max_output_tokens"),
        capabilities=capabilities(_capabilities(item)),
        status="deprecated" if retires_at else "active",
        retires_at=retires_at,
    )


def _capabilities(item: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    declared = item.get("capabilities")
    if isinstance(declared, dict):
        found |= {name for key, name in _MISTRAL_FLAGS.items() if declared.get(key) is True}
    elif isinstance(declared, list):
        found |= {_LISTED[c] for c in declared if isinstance(c, str) and c in _LISTED}
    found |= {name for key, name in _MOONSHOT_FLAGS.items() if item.get(key) is True}
    kind = item.get("type")
    if isinstance(kind, str) and kind.lower() in _TYPES:
        found.add(_TYPES[kind.lower()])
    return found
