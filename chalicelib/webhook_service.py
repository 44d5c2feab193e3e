"""Managing webhook endpoints (docs/reference.md §9): what the ``/api/v1/webhooks`` routes and the CLI ask for.

Each method returns JSON-ready dicts in the API's shapes; bad input raises ``InvalidRequest`` /
``InvalidWebhookUrl``, an unknown id ``WebhookNotFound``. The secret is made here, shown once by ``create`` and
stored only encrypted (the OAuth tokens' cipher: KMS deployed, a local AES key file locally).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from chalicelib.catalog_config import PROVIDER_ID_PATTERN
from chalicelib.clock import utc_iso
from chalicelib.core.webhooks import SECRET_BYTES, format_secret, message_id, wants
from chalicelib.errors import InvalidRequest, InvalidWebhookUrl, WebhookDisabled, WebhookNotFound
from chalicelib.events import secret_context
from chalicelib.http import UrlGuard, url_problem
from chalicelib.storage.journal import DEFAULT_KEEP, EventJournal
from chalicelib.storage.webhooks import WebhookStore

MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 1000
MAX_PROVIDER_IDS = 100
ATTEMPTS_SHOWN = 100
_CREATE_KEYS = ("url", "description", "provider_ids")


class Cipher(Protocol):
    name: str

    def encrypt(self, plaintext: bytes, context: str) -> bytes: ...


class WebhookService:
    def __init__(
        self,
        *,
        store: WebhookStore,
        journal: EventJournal,
        position: Callable[[], tuple[int, str, int]],
        cipher: Callable[[], Cipher],
        guard: UrlGuard,
        kick: Callable[[dict[str, Any]], None],
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._journal = journal
        self._position = position
        self._cipher = cipher
        self._guard = guard
        self._kick = kick
        self._clock = clock

    def create(self, body: Any) -> dict[str, Any]:
        fields = _object(body, _CREATE_KEYS)
        url = _url(fields.get("url"))
        problem = url_problem(self._guard, url)
        if problem is not None:
            raise InvalidWebhookUrl(f"the webhook URL cannot be used: {problem}")
        description = fields.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH):
            raise InvalidRequest(f"`description` must be a string of at most {MAX_DESCRIPTION_LENGTH} characters")
        provider_ids = _provider_ids(fields.get("provider_ids"))
        seq, epoch, _ = self._position()
        webhook_id = "wh_" + uuid.uuid4().hex[:20]
        key = os.urandom(SECRET_BYTES)
        cipher = self._cipher()
        self._store.start_relay(epoch, seq)  # events from here on are relayed, whatever happened before
        self._store.create_endpoint(
            {
                "id": webhook_id,
                "url": url,
                "description": description,
                "provider_ids": provider_ids,
                "enabled": True,
                "created_at": utc_iso(self._clock()),
                "created_epoch": epoch,
                "created_seq": seq,
                "secret": cipher.encrypt(key, secret_context(webhook_id)),
                "cipher": cipher.name,
            }
        )
        return {**self.get(webhook_id), "secret": format_secret(key)}

    def list(self) -> dict[str, Any]:
        endpoints = sorted(self._store.endpoints(), key=lambda e: (str(e.get("created_at")), str(e["id"])))
        return {"webhooks": [_public(endpoint) for endpoint in endpoints]}

    def get(self, webhook_id: str) -> dict[str, Any]:
        return _public(self._endpoint(webhook_id))

    def delete(self, webhook_id: str) -> None:
        if not self._store.delete_endpoint(webhook_id):
            raise WebhookNotFound(webhook_id)

    def attempts(self, webhook_id: str) -> dict[str, Any]:
        self._endpoint(webhook_id)
        return {
            "attempts": [
                {
                    "message_id": message_id(str(item["epoch"]), int(item["seq"])),
                    "seq": int(item["seq"]),
                    "attempt": int(item["attempt"]),
                    "status_code": item.get("status_code"),
                    "error": item.get("error"),
                    "at": utc_iso(int(item["at_ms"]) / 1000),
                }
                for item in self._store.attempts(webhook_id, ATTEMPTS_SHOWN)
            ]
        }

    def replay(self, webhook_id: str, body: Any) -> dict[str, Any]:
        """Deliver again every journal event of the current epoch with ``seq > since`` that the endpoint wants."""
        since = _object(body, ("since",), required=("since",))["since"]
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            raise InvalidRequest("`since` must be a whole number ≥ 0 (a seq of the current epoch)")
        endpoint = self._endpoint(webhook_id)
        if not endpoint.get("enabled"):
            reason = endpoint.get("disabled_reason") or "disabled"
            raise WebhookDisabled(f"the webhook {webhook_id!r} is disabled ({reason}); create a new one")
        latest, epoch, _ = self._position()
        if since >= latest:
            return {"replayed": 0, "message_ids": []}
        messages = self._journal.replay(epoch, since, latest, max_events=DEFAULT_KEEP)
        if messages is None:
            raise InvalidRequest(
                f"the journal no longer holds every event after seq {since} (it keeps about the newest "
                f"{DEFAULT_KEEP}); replay from a later seq"
            )
        ids = []
        for message in messages:
            if wants(endpoint.get("provider_ids"), message):
                self._store.requeue(webhook_id, epoch, int(message["seq"]))
                ids.append(message_id(epoch, int(message["seq"])))
        if ids:
            self._kick({"due": True})
        return {"replayed": len(ids), "message_ids": ids}

    def _endpoint(self, webhook_id: str) -> dict[str, Any]:
        endpoint = self._store.endpoint(webhook_id) if webhook_id else None
        if endpoint is None:
            raise WebhookNotFound(webhook_id)
        return endpoint


def _public(endpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The API's ``Webhook`` (never the secret)."""
    failing_since = endpoint.get("failing_since")
    return {
        "id": endpoint["id"],
        "url": endpoint["url"],
        "description": endpoint.get("description"),
        "provider_ids": list(endpoint["provider_ids"]) if endpoint.get("provider_ids") else None,
        "enabled": bool(endpoint.get("enabled")),
        "created_at": endpoint["created_at"],
        "deliveries": {
            "succeeded": max(0, int(endpoint.get("succeeded") or 0)),
            "failed": max(0, int(endpoint.get("failed") or 0)),
            "pending": max(0, int(endpoint.get("pending") or 0)),
        },
        "last_error": endpoint.get("last_error") or None,
        "failing_since": utc_iso(float(failing_since), "seconds") if failing_since is not None else None,
        "disabled_reason": endpoint.get("disabled_reason") or None,
    }


def _object(body: Any, allowed: tuple[str, ...], required: tuple[str, ...] = ("url",)) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(allowed)}")
    missing = [name for name in required if name not in body]
    if missing:
        raise InvalidRequest(f"missing field(s) {', '.join(map(repr, missing))}")
    return body


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("`url` must be a non-empty string")
    if len(value) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(f"the webhook URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise InvalidWebhookUrl("the webhook URL contains whitespace or control characters")
    return value


def _provider_ids(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_PROVIDER_IDS:
        raise InvalidRequest(f"`provider_ids` must be a list of 1 to {MAX_PROVIDER_IDS} provider ids, or null")
    if not all(isinstance(item, str) and re.fullmatch(PROVIDER_ID_PATTERN, item) for item in value):
        raise InvalidRequest("`provider_ids` holds something that is not a provider id ([A-Za-z0-9._-]+)")
    return sorted(set(value))
