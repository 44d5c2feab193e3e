"""The domain event: ``event.model_catalog.changed`` (docs/reference.md#3-websocket-protocol).

One event per catalog change, numbered by ``seq`` within an ``epoch``; its payload is the RefreshResult exactly as
the REST API returns it. Every delivery channel (WebSocket push, the journal's replay) sends this same message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.core.domain import RefreshResult
from chalicelib.core.results import fit_result

EVENT_TYPE = "event.model_catalog.changed"


def build_event_message(seq: int, epoch: str, timestamp: str, result: RefreshResult | dict[str, Any]) -> dict[str, Any]:
    payload = result.model_dump(mode="json") if isinstance(result, RefreshResult) else dict(result)
    return {"type": EVENT_TYPE, "seq": int(seq), "epoch": epoch, "timestamp": timestamp, "payload": payload}


def fit_message(
    message: Mapping[str, Any], max_bytes: int, size: Callable[[Mapping[str, Any]], int]
) -> Mapping[str, Any]:
    """``message`` itself when ``size(message) <= max_bytes``, else a copy whose payload is shrunk
    (``chalicelib.core.results``) and that says ``"truncated": true`` at the top level and in the payload."""
    if size(message) <= max_bytes:
        return message
    payload = fit_result(
        message.get("payload") or {}, lambda p: size({**message, "payload": p, "truncated": True}) <= max_bytes
    )
    return {**message, "payload": payload, "truncated": True}
