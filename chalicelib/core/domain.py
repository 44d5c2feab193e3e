"""The domain types of the REST API (docs/reference.md#2-rest-api) as pydantic models, and the model *record*.

A record is a ``Model`` without ``provider_id``, as a plain JSON-ready dict with every field present: the shape the
store keeps, the diff compares and the API returns (with ``provider_id`` added back). Records stored before a field
existed are read through ``current_record``, which gives them that field's default. Pure: no I/O here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field

# The one capability vocabulary every adapter maps into (sorted in each Model).
CAPABILITIES = ("audio", "embedding", "files", "image_output", "reasoning", "tools", "video", "vision")
# The one modality vocabulary (models.dev's), in its order: each Modalities list keeps this order.
Modality = Literal["text", "audio", "image", "video", "pdf"]
MODALITIES: tuple[str, ...] = get_args(Modality)
Status = Literal["active", "deprecated"]
# The fields a field-level change can name (and an override can set): every Model field but provider_id and id.
ChangeField = Literal[
    "display_name",
    "context_length",
    "max_output_tokens",
    "capabilities",
    "pricing",
    "status",
    "retires_at",
    "modalities",
]


class Pricing(BaseModel):
    """USD per million tokens. The cache prices are ``None`` where the provider publishes none."""

    model_config = ConfigDict(frozen=True)
    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None


class Modalities(BaseModel):
    """What a model takes in and gives out, from ``MODALITIES`` (docs/reference.md §10)."""

    model_config = ConfigDict(frozen=True)
    input: tuple[Modality, ...] = ()
    output: tuple[Modality, ...] = ()


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
    status: Status = "active"
    retires_at: date | None = None  # the day the provider stops serving it, where announced
    modalities: Modalities | None = None


class Provider(BaseModel):
    id: str
    name: str
    kind: str
    refreshable: bool
    model_count: int
    last_refreshed_at: str | None = None
    last_error: str | None = None


class FieldChange(BaseModel):
    """One changed field of an updated model: ``field`` is a ``Model`` field name; ``before``/``after`` are its
    values as the API shows them (``pricing``, ``capabilities`` and ``modalities`` whole)."""

    model_config = ConfigDict(frozen=True)
    model_id: str
    field: ChangeField
    before: Any
    after: Any


class ProviderChange(BaseModel):
    provider_id: str
    provider_name: str
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    changes: list[FieldChange] = Field(default_factory=list)  # one per changed field of every updated model


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
CHANGE_FIELDS: tuple[str, ...] = get_args(ChangeField)
MODEL_FIELDS = ("id", *CHANGE_FIELDS)  # a record's keys, in Model order
PRICING_FIELDS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
# What a record written before a field existed means by its absence (docs/reference.md §10).
RECORD_DEFAULTS: Mapping[str, Any] = {"status": "active", "retires_at": None, "modalities": None}
_RECORD_KEYS = frozenset(MODEL_FIELDS)
_PRICING_KEYS = frozenset(PRICING_FIELDS)


def model_record(model: Model) -> ModelRecord:
    """A normalized ``Model`` as its stored/diffed record (no ``provider_id``; every field present)."""
    data = model.model_dump(mode="json")
    record = {name: data.get(name) for name in MODEL_FIELDS}
    record["capabilities"] = sorted(record["capabilities"] or [])
    return record


def current_record(record: Mapping[str, Any]) -> ModelRecord:
    """``record`` in today's shape: a field it lacks (it was stored before the field existed) takes its default
    (``RECORD_DEFAULTS``; prices ``None``), so an old catalog reads and diffs like a new one."""
    pricing = record.get("pricing")
    if record.keys() >= _RECORD_KEYS and (pricing is None or pricing.keys() >= _PRICING_KEYS):
        return record  # type: ignore[return-value]  # a stored record is a dict
    current = {name: record.get(name, RECORD_DEFAULTS.get(name)) for name in MODEL_FIELDS}
    if pricing is not None:
        current["pricing"] = {name: pricing.get(name) for name in PRICING_FIELDS}
    return current


def api_model(provider_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record as the REST API's ``Model`` (every field present, also for records stored before it)."""
    current = current_record(record)
    return {"provider_id": provider_id, **{name: current[name] for name in MODEL_FIELDS}}


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 text unescaped (stable for hashing, diffs and storage)."""
    return canonical_json_bytes(value).decode("utf-8")


def canonical_json_bytes(value: Any) -> bytes:
    """``canonical_json`` encoded as UTF-8, byte for byte what ``json.dumps(value, sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)`` gives (stored digests and fingerprints depend on it), written by
    orjson, ~6 × faster: encoding records is most of a large refresh's CPU. orjson writes floats below 1e-4 in
    another form (``0.00001``, ``1e-7`` where ``json`` writes ``1e-05``, ``1e-07``) and refuses integers beyond 64 bits
    and non-string keys: those values are written by ``json`` instead. Non-finite floats are not JSON; records never
    hold one (``usd_float``, ``positive_int``)."""
    try:
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        data = None
    if data is None or _formatted_differently(data):
        # Rare (a small float, or a string that looks like one): the reference encoder.
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return data


_EXPONENT_BELOW_ONE = re.compile(rb"e-\d")  # starts with a literal: found by a fast scan, not tried at every byte
_DIGITS = b"0123456789"


def _formatted_differently(data: bytes) -> bool:
    """Whether orjson's ``data`` may hold a number ``json`` writes otherwise: one in exponent form with a negative
    exponent (``1e-7``), or one written as ``0.0000…``. Text inside strings that merely looks so only costs the
    slower path."""
    for match in _EXPONENT_BELOW_ONE.finditer(data):
        if match.start() and data[match.start() - 1] in _DIGITS:
            return True
    index = data.find(b"0.0000")
    while index != -1:
        if index == 0 or data[index - 1] in b":,[-":
            return True
        index = data.find(b"0.0000", index + 1)
    return False


def models_fingerprint(records: Sequence[ModelRecord]) -> str:
    """The identity of a provider's model list: equal lists, equal fingerprints. The SHA-256 of the list's canonical
    JSON, hashed record by record (the JSON of a list is its items' JSON joined by commas), so the whole list's text
    is never held at once."""
    digest = hashlib.sha256(b"[")
    for index, record in enumerate(records):
        if index:
            digest.update(b",")
        digest.update(canonical_json_bytes(record))
    digest.update(b"]")
    return digest.hexdigest()
