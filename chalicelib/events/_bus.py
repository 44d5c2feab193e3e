"""EventBridge: every catalog event also goes on a bus when deployed (docs/reference.md §9), so AWS users can
route it with rules. ``source`` ``model-catalog``, ``detail-type`` ``model_catalog.changed``, the event message
(the WebSocket one) as ``detail``; a message over EventBridge's 256 KB entry limit is sent truncated
(``"truncated": true``), as the WebSocket does. EventBridge may deliver an entry twice: consumers dedupe by
``(epoch, seq)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.core.events import fit_message
from chalicelib.core.webhooks import WEBHOOK_EVENT_TYPE

EVENT_SOURCE = "model-catalog"
# EventBridge counts an entry's Source, DetailType, Detail and Resources against 256 KB; the detail gets the rest.
MAX_DETAIL_BYTES = 256 * 1024 - 1024


def detail_text(message: Mapping[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def fit_detail(message: Mapping[str, Any], max_bytes: int = MAX_DETAIL_BYTES) -> Mapping[str, Any]:
    return fit_message(message, max_bytes, size=lambda m: len(detail_text(m).encode("utf-8")))


class EventBusError(Exception):
    """EventBridge did not take the entry (the relay leaves the event for the tick to retry)."""


class EventBusChannel:
    """Puts each event on one bus. ``broadcast`` raises ``EventBusError`` when the entry was not accepted."""

    def __init__(self, events_client: Callable[[], Any], bus_name: str, max_detail_bytes: int = MAX_DETAIL_BYTES):
        self._client = events_client
        self.bus_name = bus_name
        self._max = max_detail_bytes

    def entry(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "Source": EVENT_SOURCE,
            "DetailType": WEBHOOK_EVENT_TYPE,
            "Detail": detail_text(fit_detail(message, self._max)),
            "EventBusName": self.bus_name,
        }

    def broadcast(self, message: Mapping[str, Any]) -> None:
        response = self._client().put_events(Entries=[self.entry(message)])
        if response.get("FailedEntryCount"):
            failed = (response.get("Entries") or [{}])[0]
            code, text = failed.get("ErrorCode"), failed.get("ErrorMessage")
            raise EventBusError(f"EventBridge refused the event: {code} {text}")
