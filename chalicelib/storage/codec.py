"""Compact storage encoding for large attributes: zlib-compressed canonical JSON in a Binary attribute."""

from __future__ import annotations

import json
import zlib
from typing import Any

from chalicelib.core.domain import canonical_json_bytes


def pack(value: Any) -> bytes:
    return compress_bytes(canonical_json_bytes(value))


def compress_json(text: str) -> bytes:
    """The stored form of a canonical JSON text (``pack`` of already-serialized JSON)."""
    return compress_bytes(text.encode("utf-8"))


def compress_bytes(data: bytes) -> bytes:
    """The stored form of canonical JSON already encoded as UTF-8."""
    return zlib.compress(data, 6)


def unpack(blob: Any) -> Any:
    raw = blob.value if hasattr(blob, "value") else blob  # boto3 Binary or bytes
    return json.loads(zlib.decompress(raw).decode("utf-8"))
