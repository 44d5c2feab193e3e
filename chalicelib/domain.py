"""The domain types of CONTRACT §2, as pydantic models. Pure: no I/O here."""

from __future__ import annotations

from typing import Literal

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
    """The server → client event of CONTRACT §3."""

    type: Literal["event.model_catalog.changed"] = "event.model_catalog.changed"
    seq: int
    epoch: str
    timestamp: str
    payload: dict
    truncated: bool | None = None


Scope = Literal["all", "provider", "oauth"]
Trigger = Literal["manual", "scheduled", "cli"]
