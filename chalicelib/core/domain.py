"""The domain types of the REST API (docs/reference.md#2-rest-api) as pydantic models, and the model *record*.

A record is a ``Model`` without ``provider_id``, as a plain JSON-ready dict with every field present: the shape the
store keeps, the diff compares and the API returns (with ``provider_id`` added back). Pure: no I/O here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The one capability vocabulary every adapter maps into (sorted in each Model).
CAPABILITIES = ("audio", "embedding", "files", "image_output", "reasoning", "tools", "video", "vision")


class Pricing(BaseModel):
    model_config = ConfigDict(frozen=True)
    input_per_mtok: float
    output_per_mtok: float


class Model(BaseModel):
    """One normalized model. Equality of two Models = no metadata change."""

    model_config = ConfigDict(frozen=True)
    provider_id: str
    id: str
    display_name: str | None = None
    context_length: int | None = None
    max_output_tokens: int | None = None
    capabilities: tuple[str, ...] = ()
    pricing: Pricing | None = None


class Provider(BaseModel):
    id: str
    name: str
    kind: str
    refreshable: bool
    model_count: int
    last_refreshed_at: str | None = None
    last_error: str | None = None


class ProviderChange(BaseModel):
    provider_id: str
    provider_name: str
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)


class ProviderFailure(BaseModel):
    provider_id: str
    reason: str


class RefreshResult(BaseModel):
    revision: int
    changed: list[ProviderChange] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    failed: list[ProviderFailure] = Field(default_factory=list)


class RefreshStatus(BaseModel):
    refresh_interval_ms: int
    refresh_on_start: bool
    last_run: RefreshResult | None = None
    next_due_at: str | None = None


class CatalogEvent(BaseModel):
    """The server → client event (docs/reference.md §3)."""

    type: Literal["event.model_catalog.changed"] = "event.model_catalog.changed"
    seq: int
    epoch: str
    timestamp: str
    payload: dict
    truncated: bool | None = None


Scope = Literal["all", "provider", "oauth"]
Trigger = Literal["manual", "scheduled", "cli"]


ModelRecord = dict[str, Any]
MODEL_FIELDS = ("id", "display_name", "context_length", "max_output_tokens", "capabilities", "pricing")


def model_record(model: Model) -> ModelRecord:
    """A normalized ``Model`` as its stored/diffed record (no ``provider_id``; every field present)."""
    data = model.model_dump(mode="json")
    record = {name: data.get(name) for name in MODEL_FIELDS}
    record["capabilities"] = sorted(record["capabilities"] or [])
    return record


def api_model(provider_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record as the REST API's ``Model``."""
    return {"provider_id": provider_id, **{name: record.get(name) for name in MODEL_FIELDS}}


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces (stable for hashing, diffs and storage)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def models_fingerprint(records: Sequence[ModelRecord]) -> str:
    """The identity of a provider's model list: equal lists, equal fingerprints. The SHA-256 of the list's canonical
    JSON, hashed record by record (the JSON of a list is its items' JSON joined by commas), so the whole list's text
    is never held at once."""
    digest = hashlib.sha256(b"[")
    for index, record in enumerate(records):
        if index:
            digest.update(b",")
        digest.update(canonical_json(record).encode("utf-8"))
    digest.update(b"]")
    return digest.hexdigest()
