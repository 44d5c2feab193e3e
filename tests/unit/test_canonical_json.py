"""``canonical_json_bytes`` (orjson with a fallback) writes exactly the bytes of the reference encoder, ``json.dumps(
sort_keys=True, separators=(",", ":"), ensure_ascii=False)``: stored chunk digests and list fingerprints were computed
with it, so any difference would make every stored list look changed once. Pure, no moto."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import orjson
import pytest

from chalicelib.core.domain import canonical_json, canonical_json_bytes
from tests.fakes.provider_server import FIXTURES_DIR

PROVIDER_FIXTURES = sorted(path.name for path in FIXTURES_DIR.glob("*.json"))


def reference(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def random_float(rng: random.Random) -> float:
    while True:
        if rng.random() < 0.5:  # any bit pattern: every exponent
            value = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        else:  # prices and limits: magnitudes around the ones providers publish
            value = rng.choice([1, -1]) * 10 ** rng.uniform(-12, 20)
            value = round(value, rng.randint(0, 17)) if rng.random() < 0.3 else value
        if math.isfinite(value):
            return value


def random_text(rng: random.Random) -> str:
    alphabet = "ab-/.:,[e0123456789\"\\\n\t\x00\x1f\x7fé€\u2028😀"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return random_float(rng)
    if kind == 1:
        return rng.choice([0, -1, 2**63 - 1, -(2**63), 2**64, 10**30, rng.randint(-(10**9), 10**9)])
    if kind == 2:
        return random_text(rng)
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return float(rng.randint(0, 10**6)) / rng.choice([1, 10, 1_000_000, 10**9])
    if kind == 5:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_text(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_random_values_are_written_byte_for_byte_as_the_reference_encoder_writes_them() -> None:
    rng = random.Random(20261130)
    values = [random_value(rng) for _ in range(30_000)]
    differing = [value for value in values if canonical_json_bytes(value) != reference(value)]
    assert differing == []
    # Anti-vacuity: orjson alone does differ on these values (so the fallback is what makes them equal) …
    assert sum(1 for value in values if _orjson_or_none(value) not in (None, reference(value))) > 100
    # … and most values take the fast path.
    assert sum(1 for value in values if _orjson_or_none(value) == reference(value)) > len(values) / 2


def _orjson_or_none(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return None


@pytest.mark.parametrize("value", [
    1e-05, 1.5e-05, 9.99e-05, 0.0001, 1e-07, -3e-07, 5e-324, 1e16, 1e22, -0.0, 0.0, 2**64, {1: "int key"},
    {"b": 1, "a": {"é": 1, "z": 2, "😀": 3, "\uffff": 4}}, "line\u2028break \x00 \"quoted\" \\", [],
    {"text": "looks like a number: 0.00001 or 1e-7"},
])
def test_the_edge_values_match_the_reference(value: Any) -> None:
    assert canonical_json_bytes(value) == reference(value)
    assert canonical_json(value) == reference(value).decode("utf-8")


def test_the_provider_fixtures_are_found() -> None:
    assert len(PROVIDER_FIXTURES) >= 10


@pytest.mark.parametrize("fixture", PROVIDER_FIXTURES)
def test_every_provider_fixture_matches_the_reference(fixture: str) -> None:
    value = json.loads((FIXTURES_DIR / fixture).read_text(encoding="utf-8"))
    assert canonical_json_bytes(value) == reference(value)
