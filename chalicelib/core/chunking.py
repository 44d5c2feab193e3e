"""How a provider's model list is cut into stored chunks, decided without I/O.

A chunk is a run of consecutive models (the list is sorted by id) stored as one compressed item. Its boundaries are
*content-defined*: a chunk ends after a model whose id hashes to a boundary (about one id in ``BOUNDARY_EVERY``),
or earlier when the next model would take it past ``max_bytes`` of JSON. They depend on the ids alone, not on
positions, so adding, removing or changing models rewrites only the chunks that hold them (and at most one neighbour
when a boundary model itself comes or goes): a refresh of a 50,000-model provider that changed 1,000 models in one
place writes a few chunks, not the whole list.

Each chunk is known by a ``digest`` of its canonical JSON. The manifest keeps, per provider, the ``ChunkRef`` of
every chunk (its item key, first model id, model count, digest): comparing digests tells which stored chunks a new
answer keeps, so a refresh reads and diffs only the chunks that differ, and a reader can find the chunk a page
starts in without reading the ones before it.

``layout`` serializes each model once and computes, in the same pass, the list's fingerprint
(``chalicelib.core.domain.models_fingerprint``: the one stored manifests already hold, so lists stored before
chunks had digests are still recognized as unchanged).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.core.domain import ModelRecord, canonical_json_bytes

# About one model id in this many ends a chunk: ~256 models of ~350 bytes ≈ 90 KB of JSON per chunk.
BOUNDARY_EVERY = 256
DEFAULT_MAX_CHUNK_BYTES = 300_000
_DIGEST_CHARS = 24  # 96 bits of SHA-256: two different chunks never share one in practice


@dataclass(frozen=True)
class ChunkRef:
    """One stored chunk of a provider's current list: its item's sort key, the id of its first model, how many
    models it holds, the digest of its content and its size (bytes of JSON, before compression)."""

    key: str
    first: str
    count: int
    digest: str
    size: int = 0

    def to_json(self) -> list[Any]:
        return [self.key, self.first, self.count, self.digest, self.size]

    @classmethod
    def from_json(cls, raw: Sequence[Any]) -> ChunkRef:
        key, first, count, digest, size = raw
        return cls(key=key, first=first, count=int(count), digest=digest, size=int(size))


@dataclass(frozen=True)
class Piece:
    """One chunk of a list not stored yet: ``records[start:end]``, its first id, digest and JSON size."""

    start: int
    end: int
    first: str
    digest: str
    size: int

    @property
    def count(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Layout:
    """A list cut into pieces, and its fingerprint."""

    pieces: tuple[Piece, ...]
    fingerprint: str

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(piece.digest for piece in self.pieces)


def is_boundary(model_id: str) -> bool:
    """Whether a chunk ends after the model with this id (when size does not end it earlier)."""
    return zlib.crc32(model_id.encode("utf-8")) % BOUNDARY_EVERY == 0


def chunk_json(records: Sequence[ModelRecord]) -> bytes:
    """The canonical JSON of a run of records: exactly ``"[" + ",".join(canonical_json(r)) + "]"``, in one call."""
    return canonical_json_bytes(list(records))


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_DIGEST_CHARS]


def layout(records: Sequence[ModelRecord], max_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> Layout:
    """Cut ``records`` (sorted by id, unique) into pieces of at most ``max_bytes`` of JSON (a single larger record
    gets a piece of its own), and compute the list's fingerprint on the way."""
    fingerprint = hashlib.sha256(b"[")
    pieces: list[Piece] = []
    start = 0
    for index, record in enumerate(records):
        if index + 1 == len(records) or is_boundary(record["id"]):
            for piece_start, piece_end, data in _fitted(records, start, index + 1, max_bytes):
                if pieces:
                    fingerprint.update(b",")
                fingerprint.update(memoryview(data)[1:-1])
                pieces.append(Piece(piece_start, piece_end, records[piece_start]["id"], digest_of(data), len(data)))
            start = index + 1
    fingerprint.update(b"]")
    return Layout(tuple(pieces), fingerprint.hexdigest())


def _fitted(records: Sequence[ModelRecord], start: int, end: int, max_bytes: int) -> list[tuple[int, int, bytes]]:
    """``records[start:end]`` as (start, end, JSON bytes) pieces of at most ``max_bytes`` each (greedy, in order)."""
    data = chunk_json(records[start:end])
    if len(data) <= max_bytes or end - start == 1:
        return [(start, end, data)]
    fitted: list[tuple[int, int, bytes]] = []
    parts: list[bytes] = []
    size = 2
    piece_start = start
    for index in range(start, end):
        text = canonical_json_bytes(records[index])
        if parts and size + len(text) + 1 > max_bytes:
            fitted.append((piece_start, index, b"[" + b",".join(parts) + b"]"))
            parts, size, piece_start = [], 2, index
        parts.append(text)
        size += len(text) + 1
    fitted.append((piece_start, end, b"[" + b",".join(parts) + b"]"))
    return fitted


# -- a new list against the stored one -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListWrite:
    """What committing one provider's new list takes: ``refs`` (the manifest's new chunk list, in id order: kept
    stored chunks and new ones) and ``writes`` (the new chunks to store first, each with the piece it holds)."""

    refs: tuple[ChunkRef, ...]
    writes: tuple[tuple[ChunkRef, Piece], ...]

    @property
    def kept(self) -> int:
        return len(self.refs) - len(self.writes)


def plan_list(stored: Sequence[ChunkRef] | None, new: Layout, generation: str) -> ListWrite:
    """The chunks of the ``new`` list: a stored chunk (``stored``: the current refs; None when nothing reusable is
    stored) with the same digest is kept as it is, every other piece is written under ``generation`` (the writing
    run's: a key is never reused, so a late delete of an old key can never hit a newer chunk)."""
    reusable: Mapping[str, ChunkRef] = {ref.digest: ref for ref in stored or ()}
    refs: list[ChunkRef] = []
    writes: list[tuple[ChunkRef, Piece]] = []
    for index, piece in enumerate(new.pieces):
        kept = reusable.get(piece.digest)
        if kept is not None:
            refs.append(kept)
            continue
        ref = ChunkRef(f"{generation}#{index:05d}", piece.first, piece.count, piece.digest, piece.size)
        refs.append(ref)
        writes.append((ref, piece))
    return ListWrite(tuple(refs), tuple(writes))


def replaced_refs(stored: Sequence[ChunkRef], new: Layout) -> list[ChunkRef]:
    """The stored chunks the ``new`` list does not keep: the only ones a diff of the two lists needs to read (every
    model of a kept chunk is the same on both sides, and each id is in exactly one chunk of each list)."""
    digests = set(new.digests)
    return [ref for ref in stored if ref.digest not in digests]


def added_pieces(stored: Sequence[ChunkRef], new: Layout) -> list[Piece]:
    """The pieces of the ``new`` list that no stored chunk holds (the other side of ``replaced_refs``)."""
    digests = {ref.digest for ref in stored}
    return [piece for piece in new.pieces if piece.digest not in digests]


def chunk_index(refs: Sequence[ChunkRef], model_id: str) -> int:
    """The index of the chunk whose id range holds ``model_id`` (0 before the first)."""
    low, high = 0, len(refs)
    while low < high:
        middle = (low + high) // 2
        if refs[middle].first <= model_id:
            low = middle + 1
        else:
            high = middle
    return max(low - 1, 0)


def chunk_json_bytes(records: Sequence[ModelRecord], piece: Piece) -> bytes:
    """The JSON of one piece, as ``layout`` digested it."""
    return chunk_json(records[piece.start : piece.end])
