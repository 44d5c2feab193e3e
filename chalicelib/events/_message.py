"""The event on the wire: compact JSON text, fitted to API Gateway's WebSocket message limit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chalicelib.core.events import fit_message

# API Gateway's WebSocket message limit is 128 KB; 128,000 bytes stays under it whichever "KB" is meant.
MAX_WIRE_BYTES = 128_000


def wire_text(message: Mapping[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def wire_size(message: Mapping[str, Any]) -> int:
    return len(wire_text(message).encode("utf-8"))


def fit_to_wire(message: Mapping[str, Any], max_bytes: int = MAX_WIRE_BYTES) -> Mapping[str, Any]:
    """``message``, or a truncated copy of it that fits ``max_bytes`` as wire text."""
    return fit_message(message, max_bytes, size=wire_size)


def encode_for_wire(message: Mapping[str, Any], max_bytes: int = MAX_WIRE_BYTES) -> str:
    """The text frame for ``message``, truncated to fit API Gateway's message limit."""
    return wire_text(fit_to_wire(message, max_bytes))
