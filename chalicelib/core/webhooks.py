"""Webhook rules with no I/O (docs/reference.md §9): the Standard Webhooks message, its signature, who gets an
event, and when a failed attempt is tried again.

A webhook message is one journal event: its id is ``msg_<epoch>_<seq>`` (the same on every retry and replay), its
body ``{"type": "model_catalog.changed", "timestamp": <the event's>, "data": <the WebSocket event message>}``, and
its signature the Standard Webhooks ``v1`` HMAC-SHA256 of ``"<id>.<unix seconds>.<body>"`` keyed with the
base64-decoded secret after ``whsec_``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

WEBHOOK_EVENT_TYPE = "model_catalog.changed"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def message_id(epoch: str, seq: int) -> str:
    return f"msg_{epoch}_{int(seq)}"


def webhook_body(message: Mapping[str, Any]) -> bytes:
    """The POST body for one event message (compact JSON, UTF-8). The same bytes on every attempt."""
    envelope = {"type": WEBHOOK_EVENT_TYPE, "timestamp": message["timestamp"], "data": message}
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def format_secret(key: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret. ``ValueError`` for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``."""
    signed = msg_id.encode("utf-8") + b"." + str(int(timestamp)).encode("ascii") + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def signed_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (``timestamp``: unix seconds of this attempt)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature(key, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def changed_provider_ids(message: Mapping[str, Any]) -> set[str] | None:
    """The providers an event changed; ``None`` when the event no longer says (its payload was cut to fit)."""
    payload = message.get("payload") or {}
    changed = payload.get("changed") or []
    if payload.get("truncated") and not changed:
        return None
    return {str(entry.get("provider_id")) for entry in changed}


def wants(provider_ids: Sequence[str] | None, message: Mapping[str, Any]) -> bool:
    """Whether an endpoint with this ``provider_ids`` filter gets the event (no filter: every event). A truncated
    event that no longer names its providers goes to everyone: at least once beats never."""
    if not provider_ids:
        return True
    changed = changed_provider_ids(message)
    return changed is None or bool(changed & set(provider_ids))


def is_after(position: tuple[str, int], epoch: str, seq: int) -> bool:
    """Whether event ``(epoch, seq)`` came after ``position`` (an endpoint's creation). Epochs only ever start anew,
    so an event of another epoch than the endpoint's is newer than it."""
    created_epoch, created_seq = position
    return epoch != created_epoch or seq > created_seq


def next_delay(
    schedule: Sequence[float], attempts_made: int, retry_after_s: float | None, cap_s: float
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` failed ones, or ``None`` when the schedule is used up.
    A ``Retry-After`` may lengthen a delay (never shorten it), up to ``cap_s``."""
    index = attempts_made - 1
    if index < 0 or index >= len(schedule):
        return None
    delay = float(schedule[index])
    if retry_after_s is not None and retry_after_s > delay:
        delay = min(float(retry_after_s), max(cap_s, delay))
    return delay


def failing_too_long(failing_since: float | None, now: float, disable_after_s: float) -> bool:
    return failing_since is not None and now - failing_since >= disable_after_s


def attempt_failed(status_code: int | None) -> bool:
    """A 2xx answer is a delivery; anything else (or no answer) is a failed attempt."""
    return status_code is None or not 200 <= status_code < 300
