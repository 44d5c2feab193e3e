"""Which models ``GET /api/v1/models`` answers with (docs/reference.md §8): the filters, keyset pages and cursors.

Pure: ``select_models`` walks the providers in id order and asks for a provider's records only when the page still
needs them, so a page near the start of a large catalog never loads the rest. Records are sorted by id within a
provider (the store keeps them so); pages are cut on ``(provider_id, model id)``, so a cursor stays valid whatever
changes between two pages, and a walk from the first page to ``next_cursor = None`` returns exactly the unpaged list.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from chalicelib.core.domain import ModelRecord, api_model, canonical_json
from chalicelib.errors import InvalidParameter

MODEL_STATUSES = ("active", "deprecated")
# A record stored before models had a status (or from a source that never says) is active.
DEFAULT_STATUS = "active"
MAX_PAGE_SIZE = 5_000


@dataclass(frozen=True)
class ModelQuery:
    """One request's filters and page. ``text`` is ``q`` casefolded; ``after`` is the decoded cursor."""

    provider_id: str | None = None
    capabilities: frozenset[str] = field(default_factory=frozenset)
    min_context: int | None = None
    text: str | None = None
    status: str | None = None
    limit: int | None = None
    after: tuple[str, str] | None = None

    def matches(self, provider_id: str, record: Mapping[str, Any]) -> bool:
        """Whether one model passes every filter (paging aside)."""
        if self.provider_id is not None and provider_id != self.provider_id:
            return False
        if self.capabilities and not self.capabilities.issubset(record.get("capabilities") or ()):
            return False
        if self.min_context is not None:
            context = record.get("context_length")
            if context is None or context < self.min_context:  # an unknown context length is not "at least"
                return False
        if self.status is not None and (record.get("status") or DEFAULT_STATUS) != self.status:
            return False
        if self.text is not None:
            name = record.get("display_name") or ""
            if self.text not in str(record.get("id", "")).casefold() and self.text not in name.casefold():
                return False
        return True

    @property
    def filtered(self) -> bool:
        """Whether a filter other than ``provider_id`` may leave models out."""
        return bool(self.capabilities) or self.min_context is not None or self.text is not None or bool(self.status)

    def key(self) -> str:
        """The query in one canonical string: two requests with equal keys ask for the same answer."""
        return canonical_json(
            {
                "provider_id": self.provider_id,
                "capabilities": sorted(self.capabilities),
                "min_context": self.min_context,
                "q": self.text,
                "status": self.status,
                "limit": self.limit,
                "after": list(self.after) if self.after else None,
            }
        )


@dataclass(frozen=True)
class ModelPage:
    models: list[dict[str, Any]]
    next_cursor: str | None


ProviderRecords = tuple[str, Callable[[], Sequence[ModelRecord]]]


def select_models(providers: Iterable[ProviderRecords], query: ModelQuery) -> ModelPage:
    """The page of API models ``query`` asks for, from ``(provider id, load its sorted records)`` pairs in provider
    id order. ``next_cursor`` is set only when a further model matches (so it is ``None`` on the last page)."""
    models: list[dict[str, Any]] = []
    after = query.after
    for provider_id, load in providers:
        if query.provider_id is not None and provider_id != query.provider_id:
            continue
        if after is not None and provider_id < after[0]:
            continue
        records = load()
        start = 0
        if after is not None and provider_id == after[0]:
            start = bisect.bisect_right(records, after[1], key=_record_id)
        for record in islice(records, start, None):
            if not query.matches(provider_id, record):
                continue
            if query.limit is not None and len(models) == query.limit:
                last = models[-1]
                return ModelPage(models, encode_cursor(last["provider_id"], last["id"]))
            models.append(api_model(provider_id, record))
    return ModelPage(models, None)


def _record_id(record: Mapping[str, Any]) -> str:
    return record["id"]


def encode_cursor(provider_id: str, model_id: str) -> str:
    """The opaque cursor of the page that follows model ``(provider_id, model_id)``."""
    raw = json.dumps([provider_id, model_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
            return value[0], value[1]
    except (ValueError, binascii.Error):
        pass
    raise InvalidParameter("cursor", "not a cursor this API returned (pass the previous answer's next_cursor)")
