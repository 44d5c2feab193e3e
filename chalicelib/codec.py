"""Compact storage encoding for large attributes: zlib-compressed canonical JSON in a Binary attribute."""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any


def dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces (stable for hashing and diffs)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def pack(value: Any) -> bytes:
    return compress_json(dumps(value))


def compress_json(text: str) -> bytes:
    """The stored form of a canonical JSON text (``pack`` of already-serialized JSON)."""
    return zlib.compress(text.encode("utf-8"), 6)


def unpack(blob: Any) -> Any:
    raw = blob.value if hasattr(blob, "value") else blob  # boto3 Binary or bytes
    return json.loads(zlib.decompress(raw).decode("utf-8"))


def fingerprint(value: Any) -> str:
    return hashlib.sha256(dumps(value).encode("utf-8")).hexdigest()
