"""How model lists are cut into stored chunks (chalicelib.core.chunking): pure, no moto."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest

from chalicelib.core.chunking import (
    BOUNDARY_EVERY,
    ChunkRef,
    added_pieces,
    chunk_index,
    chunk_json_bytes,
    is_boundary,
    layout,
    plan_list,
    replaced_refs,
)
from chalicelib.core.domain import canonical_json, models_fingerprint


def record(model_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": model_id, "display_name": f"Model {model_id}", "context_length": 8192, "max_output_tokens": None,
            "capabilities": ["tools"], "pricing": {"input_per_mtok": 1.25, "output_per_mtok": 5.0}, **fields}


def catalog(count: int, prefix: str = "m", **fields: Any) -> list[dict[str, Any]]:
    return [record(f"{prefix}{n:06d}", **fields) for n in range(count)]


@pytest.mark.parametrize("models", [
    [],
    [record("solo")],
    catalog(2_000),
    [record("naïve-ü"), record("x\u2028y", display_name="tab\there \"quoted\" \x01"), record("z", pricing=None)],
])
def test_the_layout_fingerprint_is_the_lists_fingerprint(models: list[dict[str, Any]]) -> None:
    """So lists stored before chunks had digests are still recognized as unchanged."""
    cut = layout(models)
    assert cut.fingerprint == models_fingerprint(models)
    joined = b",".join(chunk_json_bytes(models, piece)[1:-1] for piece in cut.pieces)
    assert b"[" + joined + b"]" == canonical_json(models).encode()
    assert [m for piece in cut.pieces for m in models[piece.start : piece.end]] == models


def test_pieces_fit_the_size_limit_and_end_on_boundary_ids() -> None:
    models = catalog(5_000)
    cut = layout(models, max_bytes=20_000)
    for piece in cut.pieces:
        data = chunk_json_bytes(models, piece)
        assert piece.size == len(data) <= 20_000
        assert piece.digest == hashlib.sha256(data).hexdigest()[:24] and piece.first == models[piece.start]["id"]
    natural = [piece for piece in layout(models).pieces if piece.end < len(models)]
    assert natural and all(is_boundary(models[piece.end - 1]["id"]) for piece in natural)
    assert len(models) / len(layout(models).pieces) > BOUNDARY_EVERY / 3  # chunks of hundreds of models, not a few


def test_a_model_larger_than_the_limit_gets_a_piece_of_its_own() -> None:
    models = [record("a"), record("b", display_name="x" * 5_000), record("c")]
    cut = layout(models, max_bytes=1_000)
    assert [(piece.start, piece.end) for piece in cut.pieces] == [(0, 1), (1, 2), (2, 3)]


def changed_digests(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> int:
    return len(set(layout(new).digests) - set(layout(old).digests))


def test_an_insertion_a_removal_or_an_update_changes_at_most_two_chunks() -> None:
    models = catalog(4_000)
    rng = random.Random(7)
    for _ in range(6):
        at = rng.randrange(len(models))
        inserted = sorted([*models, record(models[at]["id"] + "-new")], key=lambda m: m["id"])
        assert changed_digests(models, inserted) <= 2
        assert changed_digests(models, models[:at] + models[at + 1 :]) <= 2
        updated = [*models[:at], {**models[at], "context_length": 1}, *models[at + 1 :]]
        assert changed_digests(models, updated) == 1


def test_negative_control_fixed_size_chunks_shift_every_chunk_after_an_insertion() -> None:
    """What content-defined boundaries avoid: chunks of a fixed number of models all change after an insertion."""
    models = catalog(5_000)
    inserted = sorted([*models, record("m000010-new")], key=lambda m: m["id"])

    def fixed(models: list[dict[str, Any]]) -> set[str]:
        return {hashlib.sha256(canonical_json(models[i : i + 256]).encode()).hexdigest() for i in range(0, len(models), 256)}

    assert len(fixed(inserted) - fixed(models)) == len(fixed(models))  # every one
    assert changed_digests(models, inserted) == 1


def stored(models: list[dict[str, Any]], generation: str = "r00000001-t1") -> tuple[ChunkRef, ...]:
    return plan_list(None, layout(models), generation).refs


def test_a_new_list_keeps_the_stored_chunks_of_the_same_content_and_writes_the_others_under_its_generation() -> None:
    old = catalog(3_000)
    refs = stored(old)
    new = sorted([*old[50:], *catalog(10, prefix="z")], key=lambda m: m["id"])
    cut = layout(new)
    write = plan_list(refs, cut, "r00000002-t9")
    assert [ref.digest for ref in write.refs] == list(cut.digests)
    assert {ref.key for ref, _ in write.writes} == {ref.key for ref in write.refs if ref.key.startswith("r00000002-t9#")}
    assert write.kept == len([ref for ref in write.refs if ref in refs]) >= len(refs) - 3
    replaced = replaced_refs(refs, cut)
    assert {ref.digest for ref in replaced} == {ref.digest for ref in refs} - set(cut.digests)
    assert [p.digest for p in added_pieces(refs, cut)] == [ref.digest for ref, _ in write.writes]
    assert plan_list(None, cut, "r00000002-t9").kept == 0


def test_a_chunk_ref_round_trips_through_json_and_finds_the_chunk_of_an_id() -> None:
    refs = [ChunkRef(f"g#{i:05d}", first, 10, "d") for i, first in enumerate(["a", "f", "m"])]
    assert [ChunkRef.from_json(json.loads(json.dumps(ref.to_json()))) for ref in refs] == refs
    assert [chunk_index(refs, model_id) for model_id in ("0", "a", "b", "f", "l", "m", "zz")] == [0, 0, 0, 1, 1, 2, 2]
