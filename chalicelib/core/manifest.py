"""The catalog manifest: which chunks hold each provider's current list, and the event cursor.

A value object; ``chalicelib.storage.catalog`` stores it as one DynamoDB item and flips it in the commit.

Two layouts of a provider's list live side by side, so catalogs stored by earlier versions keep working without a
migration step (they move to the new layout the next time their list changes):

- **chunk refs** (``parts``): the list's chunks, in id order, each with its key, first id, model count and digest
  (``chalicelib.core.chunking``); chunks of unchanged content are kept from one list to the next, so their keys
  carry the generation of the run that wrote them. ``retired`` names the chunks of the previous list this one no
  longer uses: readers that started on the previous manifest may still read them, so they are deleted only when
  the list changes again.
- **one generation** (``parts is None``, versions 1 and 2): chunks ``<generation>#00000`` … in id order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.core.chunking import ChunkRef


@dataclass(frozen=True)
class ProviderEntry:
    """One provider's current list: the generation of the run that last wrote it, its chunk count, model count and
    content fingerprint; its chunk refs and the retired keys (``parts is None``: the one-generation layout)."""

    generation: str
    chunks: int
    count: int
    fingerprint: str
    parts: tuple[ChunkRef, ...] | None = None
    retired: tuple[str, ...] = ()

    @property
    def json_bytes(self) -> int | None:
        """The size of the list as JSON (its records, before compression); unknown (None) in the one-generation
        layout."""
        return None if self.parts is None else sum(ref.size for ref in self.parts)

    def chunk_keys(self) -> list[str]:
        """The sort keys of the list's chunks, in id order."""
        if self.parts is not None:
            return [ref.key for ref in self.parts]
        return [f"{self.generation}#{index:05d}" for index in range(self.chunks)]

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"g": self.generation, "c": self.chunks, "n": self.count, "f": self.fingerprint}
        if self.parts is not None:
            body["p"] = [ref.to_json() for ref in self.parts]
        if self.retired:
            body["r"] = list(self.retired)
        return body

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ProviderEntry:
        parts = raw.get("p")
        return cls(
            generation=raw["g"],
            chunks=raw["c"],
            count=raw["n"],
            fingerprint=raw["f"],
            parts=None if parts is None else tuple(ChunkRef.from_json(ref) for ref in parts),
            retired=tuple(raw.get("r") or ()),
        )


@dataclass(frozen=True)
class Manifest:
    """``revision`` counts catalog changes; ``(epoch, seq)`` is the cursor of the newest event."""

    revision: int
    epoch: str
    seq: int
    providers: Mapping[str, ProviderEntry] = field(default_factory=dict)
    updated_at: str | None = None
