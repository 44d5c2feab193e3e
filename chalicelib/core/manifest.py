"""The catalog manifest: which generation of chunks is current for each provider, and the event cursor.

A value object; ``chalicelib.storage.catalog`` stores it as one DynamoDB item and flips it in the commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProviderEntry:
    """One provider's current list: its generation id, chunk count, model count and content fingerprint."""

    generation: str
    chunks: int
    count: int
    fingerprint: str

    def to_json(self) -> dict[str, Any]:
        return {"g": self.generation, "c": self.chunks, "n": self.count, "f": self.fingerprint}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ProviderEntry:
        return cls(generation=raw["g"], chunks=raw["c"], count=raw["n"], fingerprint=raw["f"])


@dataclass(frozen=True)
class Manifest:
    """``revision`` counts catalog changes; ``(epoch, seq)`` is the cursor of the newest event."""

    revision: int
    epoch: str
    seq: int
    providers: Mapping[str, ProviderEntry] = field(default_factory=dict)
    updated_at: str | None = None
