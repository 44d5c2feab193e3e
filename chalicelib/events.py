"""Change events: the journal (an outbox in DynamoDB), the fan-out to WebSocket connections, the publisher.

Every catalog change is committed together with one journal item (same TransactWriteItems, see
``journal_put_action``), so an event exists if and only if its change does. Fan-out happens after the
commit and is best effort; the journal is the source of truth: a client that missed a push resumes with
``subscribe since=<last seq>`` and gets the events replayed, and ``EventPublisher.publish_pending`` (run by
the scheduled tick) re-broadcasts events whose publisher crashed between commit and fan-out. ``Fanout`` sends
one message to every connection (bounded concurrency, 410 pruning, throttling backoff, 128 KB truncation).

Journal item (events table, key ``epoch`` (S, HASH) + ``seq`` (N, RANGE)):
``epoch``, ``seq``, ``timestamp`` (ISO-8601 UTC), ``body`` (B: codec.pack of the full client message),
``published`` (BOOL), optional ``claimed_until`` (N, epoch seconds: a publisher is broadcasting it) and
``expires_at`` (N, TTL; set by ``trim`` once the event is older than the last ``keep`` events).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from chalice import WebsocketDisconnectedError

from chalicelib import codec
from chalicelib.domain import RefreshResult
from chalicelib.dynamo import query_items
from chalicelib.logs import get_logger

if TYPE_CHECKING:
    from chalicelib.connections import ConnectionStore

log = get_logger("events")

EVENT_TYPE = "event.model_catalog.changed"
# API Gateway's WebSocket message limit is 128 KB; 128,000 bytes stays under it whichever "KB" is meant.
MAX_WIRE_BYTES = 128_000
# DynamoDB items are capped at 400 KB; keep the packed body well under it (key and attributes need room).
MAX_JOURNAL_BODY_BYTES = 350_000
# Error codes that mean "slow down", from the management API and DynamoDB alike.
THROTTLING_CODES = frozenset(
    {
        "LimitExceededException",
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "SlowDown",
    }
)
# Per broadcast, only the first few failures are logged one by one (the summary line counts them all).
_LOGGED_FAILURES = 20
# A failure reason is a sentence; past this it is cut when a message must shrink.
_SHORT_REASON = 200
DEFAULT_KEEP = 1_000
# Once outside the kept window an event may still be read for a while (a replay in flight).
TRIM_GRACE_S = 3_600
# How long a publisher owns an event before the tick may broadcast it again (it crashed, or timed out).
DEFAULT_CLAIM_LEASE_S = 120


def utc_timestamp(now: float | None = None) -> str:
    """ISO-8601 UTC with a ``Z``, millisecond precision (the event ``timestamp`` format)."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def build_event_message(seq: int, epoch: str, timestamp: str, result: RefreshResult | dict[str, Any]) -> dict[str, Any]:
    """The client message of CONTRACT §3; ``payload`` is the RefreshResult exactly as the REST API returns it."""
    payload = result.model_dump(mode="json") if isinstance(result, RefreshResult) else dict(result)
    return {"type": EVENT_TYPE, "seq": int(seq), "epoch": epoch, "timestamp": timestamp, "payload": payload}


def wire_text(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def wire_size(message: dict[str, Any]) -> int:
    return len(wire_text(message).encode("utf-8"))


def packed_size(message: dict[str, Any]) -> int:
    return len(codec.pack(message))


def _shrunk_payloads(payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Ever smaller stand-ins for a RefreshResult: first the model id lists go (counts stay), then reasons are
    shortened, then the provider lists themselves (with counts). Every step keeps the RefreshResult keys so a
    client can still parse it; ``truncated`` tells it to refetch."""
    changed = [
        {
            "provider_id": entry.get("provider_id"),
            "provider_name": entry.get("provider_name"),
            "added": [],
            "removed": [],
            "updated": [],
            "added_count": len(entry.get("added") or []),
            "removed_count": len(entry.get("removed") or []),
            "updated_count": len(entry.get("updated") or []),
        }
        for entry in payload.get("changed") or []
    ]
    unchanged = list(payload.get("unchanged") or [])
    failed = list(payload.get("failed") or [])
    base = {"revision": payload.get("revision"), "truncated": True}
    yield {**base, "changed": changed, "unchanged": unchanged, "failed": failed}
    short_failed = [
        {"provider_id": item.get("provider_id"), "reason": str(item.get("reason") or "")[:_SHORT_REASON]}
        for item in failed
    ]
    yield {**base, "changed": changed, "unchanged": unchanged, "failed": short_failed}
    counts = {"unchanged_count": len(unchanged)}
    yield {**base, "changed": changed, "unchanged": [], "failed": short_failed, **counts}
    counts["failed_count"] = len(failed)
    yield {**base, "changed": changed, "unchanged": [], "failed": [], **counts}
    counts["changed_count"] = len(changed)
    yield {**base, "changed": [], "unchanged": [], "failed": [], **counts}


def fit_message(
    message: dict[str, Any], max_bytes: int, size: Callable[[dict[str, Any]], int] = wire_size
) -> dict[str, Any]:
    """``message`` itself when ``size(message) <= max_bytes``, else a copy with a shrunk payload and
    ``"truncated": true`` at the top level and in the payload."""
    if size(message) <= max_bytes:
        return message
    candidate = message
    for payload in _shrunk_payloads(message.get("payload") or {}):
        candidate = {**message, "payload": payload, "truncated": True}
        if size(candidate) <= max_bytes:
            return candidate
    return candidate  # only an absurd epoch string could still be too big; nothing smaller is meaningful


def encode_for_wire(message: dict[str, Any], max_bytes: int = MAX_WIRE_BYTES) -> str:
    """The text frame for ``message``, truncated to fit API Gateway's message limit."""
    return wire_text(fit_message(message, max_bytes))


def journal_put_action(table_name: str, message: dict[str, Any]) -> dict[str, Any]:
    """A TransactWriteItems ``Put`` that journals ``message``; it fails the whole transaction if the seq exists,
    so a seq can never be written twice (two writers would both lose, never both win)."""
    stored = fit_message(message, MAX_JOURNAL_BODY_BYTES, size=packed_size)
    return {
        "Put": {
            "TableName": table_name,
            "Item": {
                "epoch": {"S": str(message["epoch"])},
                "seq": {"N": str(int(message["seq"]))},
                "timestamp": {"S": str(message["timestamp"])},
                "body": {"B": codec.pack(stored)},
                "published": {"BOOL": False},
            },
            "ConditionExpression": "attribute_not_exists(#seq)",
            "ExpressionAttributeNames": {"#seq": "seq"},
        }
    }


def _message_of(item: dict[str, Any]) -> dict[str, Any]:
    return codec.unpack(item["body"]["B"])


def _is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class EventJournal:
    """Reads and maintains the journal. Writes of new events happen in the catalog commit, not here."""

    def __init__(self, dynamodb_client: Any, table_name: str, clock: Callable[[], float] = time.time):
        self._client = dynamodb_client
        self._table = table_name
        self._clock = clock

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return query_items(self._client, {"TableName": self._table, "ConsistentRead": True, **kwargs})

    def latest_seq(self, epoch: str) -> int | None:
        """The highest seq journaled in ``epoch`` (None when the journal has nothing for it)."""
        page = self._client.query(
            TableName=self._table,
            ConsistentRead=True,
            KeyConditionExpression="#epoch = :epoch",
            ExpressionAttributeNames={"#epoch": "epoch", "#seq": "seq"},
            ExpressionAttributeValues={":epoch": {"S": epoch}},
            ProjectionExpression="#seq",
            ScanIndexForward=False,
            Limit=1,
        )
        items = page.get("Items", [])
        return int(items[0]["seq"]["N"]) if items else None

    def replay(
        self, epoch: str, since: int, until: int | None = None, max_events: int = DEFAULT_KEEP
    ) -> list[dict[str, Any]] | None:
        """The messages with ``since < seq <= until`` (``until`` defaults to the latest journaled seq), in order.

        None when the journal cannot give exactly that run: an unknown epoch, a trimmed (or TTL-holed) range,
        or more than ``max_events`` to send (refetching is cheaper then). The caller answers resync_required.
        """
        if until is None:
            until = self.latest_seq(epoch)
            if until is None:
                return None
        if since < 0:
            return None
        if until <= since:
            return []
        if until - since > max_events:
            return None
        messages: list[dict[str, Any]] = []
        expected = since + 1
        for item in self._query(
            KeyConditionExpression="#epoch = :epoch AND #seq BETWEEN :low AND :high",
            ExpressionAttributeNames={"#epoch": "epoch", "#seq": "seq"},
            ExpressionAttributeValues={
                ":epoch": {"S": epoch},
                ":low": {"N": str(since + 1)},
                ":high": {"N": str(until)},
            },
        ):
            if int(item["seq"]["N"]) != expected:
                return None  # the oldest kept seq is past since+1, or TTL removed one in the middle
            messages.append(_message_of(item))
            expected += 1
        if expected != until + 1:
            return None  # the newest ones are not there (should not happen: they are committed with the change)
        return messages

    def unpublished(self, epoch: str, limit: int = 20) -> list[dict[str, Any]]:
        """Events among the newest ``limit`` that no publisher finished broadcasting, oldest first."""
        page = self._client.query(
            TableName=self._table,
            ConsistentRead=True,
            KeyConditionExpression="#epoch = :epoch",
            ExpressionAttributeNames={"#epoch": "epoch"},
            ExpressionAttributeValues={":epoch": {"S": epoch}},
            ScanIndexForward=False,
            Limit=limit,
        )
        pending = [item for item in page.get("Items", []) if not item.get("published", {}).get("BOOL", False)]
        return [_message_of(item) for item in reversed(pending)]

    def claim(self, epoch: str, seq: int, lease_s: float = DEFAULT_CLAIM_LEASE_S, claimer: str | None = None) -> bool:
        """Take the right to broadcast an unpublished event for ``lease_s`` seconds; False if it is published
        or another publisher holds a live claim (so a tick and a committer never broadcast it together).

        The claim names its claimer (one id per publish attempt), so botocore's retry of our own claim whose
        response was lost still succeeds instead of finding "someone else's" live claim."""
        now = self._clock()
        claimer = claimer or uuid.uuid4().hex
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"epoch": {"S": epoch}, "seq": {"N": str(seq)}},
                UpdateExpression="SET #claimed = :until, #claimer = :me",
                ConditionExpression=(
                    "attribute_exists(#seq) AND #published = :false"
                    " AND (attribute_not_exists(#claimed) OR #claimed < :now OR #claimer = :me)"
                ),
                ExpressionAttributeNames={
                    "#seq": "seq", "#published": "published", "#claimed": "claimed_until", "#claimer": "claimed_by",
                },
                ExpressionAttributeValues={
                    ":until": {"N": str(int(now + lease_s))},
                    ":false": {"BOOL": False},
                    ":now": {"N": str(int(now))},
                    ":me": {"S": claimer},
                },
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def mark_published(self, epoch: str, seq: int) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"epoch": {"S": epoch}, "seq": {"N": str(seq)}},
                UpdateExpression="SET #published = :true REMOVE #claimed",
                ConditionExpression="attribute_exists(#seq)",
                ExpressionAttributeNames={"#seq": "seq", "#published": "published", "#claimed": "claimed_until"},
                ExpressionAttributeValues={":true": {"BOOL": True}},
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):  # already trimmed away: nothing left to mark
                raise

    def trim(self, epoch: str, latest_seq: int, keep: int = DEFAULT_KEEP, sweep: int = 10) -> int:
        """Best effort: give ``expires_at`` to the events just outside the newest ``keep`` so the journal keeps
        at least the last ``keep`` and TTL removes the rest. Each call looks at ``sweep`` events below the
        window, so a trim that was skipped (a crash) is caught up by the next ones. Returns how many it marked."""
        boundary = latest_seq - keep
        if boundary < 1:
            return 0
        expires_at = str(int(self._clock() + TRIM_GRACE_S))
        marked = 0
        try:
            for item in self._query(
                KeyConditionExpression="#epoch = :epoch AND #seq BETWEEN :low AND :high",
                ExpressionAttributeNames={"#epoch": "epoch", "#seq": "seq", "#expires": "expires_at"},
                ExpressionAttributeValues={
                    ":epoch": {"S": epoch},
                    ":low": {"N": str(max(1, boundary - sweep + 1))},
                    ":high": {"N": str(boundary)},
                },
                ProjectionExpression="#seq, #expires",
            ):
                if "expires_at" in item:
                    continue
                self._client.update_item(
                    TableName=self._table,
                    Key={"epoch": {"S": epoch}, "seq": item["seq"]},
                    UpdateExpression="SET #expires = :expires",
                    ConditionExpression="attribute_exists(#seq)",
                    ExpressionAttributeNames={"#seq": "seq", "#expires": "expires_at"},
                    ExpressionAttributeValues={":expires": {"N": expires_at}},
                )
                marked += 1
        except (ClientError, BotoCoreError) as exc:
            log.warning("journal trim failed", extra={"epoch": epoch, "latest_seq": latest_seq, "error": str(exc)})
        return marked


@dataclass
class FanoutStats:
    sent: int = 0
    gone: int = 0
    failed: int = 0
    truncated: bool = False
    duration_ms: int = 0
    # Reading the connections failed part-way: some connections were never tried.
    incomplete: bool = False

    @property
    def connections(self) -> int:
        return self.sent + self.gone + self.failed


def _error_code(exc: Exception) -> str | None:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def _is_throttled(exc: Exception) -> bool:
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return _error_code(exc) in THROTTLING_CODES or status == 429


class Fanout:
    """Sends one message to every stored connection with bounded concurrency.

    ``send(connection_id, text)`` is ``app.websocket_api.send``: it raises ``WebsocketDisconnectedError`` for
    410 Gone (the row is deleted), a throttling ``ClientError`` is retried with exponential backoff, and any
    other failure is counted and logged. ``broadcast`` never raises for a failed send.
    """

    def __init__(
        self,
        connections: ConnectionStore,
        send: Callable[[str, str], None],
        max_workers: int = 16,
        max_attempts: int = 5,
        base_delay_s: float = 0.05,
        max_delay_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = 1_000,
        max_message_bytes: int = MAX_WIRE_BYTES,
    ):
        self._connections = connections
        self._send = send
        self._max_workers = max_workers
        self._max_attempts = max_attempts
        self._base_delay = base_delay_s
        self._max_delay = max_delay_s
        self._sleep = sleep
        self._page_size = page_size
        self._max_bytes = max_message_bytes

    def broadcast(self, message: dict[str, Any]) -> FanoutStats:
        started = time.monotonic()
        fitted = fit_message(message, self._max_bytes)
        text = wire_text(fitted)
        stats = FanoutStats(truncated=fitted is not message)
        lock = threading.Lock()
        failure_codes: dict[str, int] = {}
        # At most this many sends queued or running: memory stays flat however large the table is.
        slots = threading.BoundedSemaphore(self._max_workers * 4)

        def record(future: Future[str]) -> None:
            try:
                outcome = "failed" if future.exception() else future.result()
                with lock:
                    setattr(stats, outcome, getattr(stats, outcome) + 1)
            finally:
                slots.release()

        def deliver(connection_id: str) -> str:
            outcome, code = self._deliver(connection_id, text)
            if outcome == "failed":
                with lock:
                    failure_codes[code] = failure_codes.get(code, 0) + 1
                    first_ones = sum(failure_codes.values()) <= _LOGGED_FAILURES
                if first_ones:
                    log.warning("send failed", extra={"connection_id": connection_id, "error_code": code})
            return outcome

        page_error: str | None = None
        warmed_up = False
        with ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="fanout") as pool:
            try:
                for page in self._connections.pages(self._page_size):
                    for connection_id in page:
                        if not warmed_up:
                            # The first send runs alone: app.websocket_api creates its boto3 client lazily, and
                            # boto3 sessions are not thread-safe, so 16 threads must not race to create it.
                            warmed_up = True
                            outcome = deliver(connection_id)
                            setattr(stats, outcome, getattr(stats, outcome) + 1)
                            continue
                        slots.acquire()
                        pool.submit(deliver, connection_id).add_done_callback(record)
            except (ClientError, BotoCoreError) as exc:
                # Reading the connections failed part-way: the ones already queued still get the message.
                page_error = str(exc)
                stats.incomplete = True
        stats.duration_ms = int((time.monotonic() - started) * 1000)
        log.info(
            "broadcast",
            extra={
                "seq": message.get("seq"),
                "epoch": message.get("epoch"),
                "connections": stats.connections,
                "sent": stats.sent,
                "gone": stats.gone,
                "failed": stats.failed,
                "failure_codes": failure_codes,
                "truncated": stats.truncated,
                "bytes": len(text.encode("utf-8")),
                "duration_ms": stats.duration_ms,
                "page_error": page_error,
            },
        )
        return stats

    def _deliver(self, connection_id: str, text: str) -> tuple[str, str]:
        """("sent" | "gone" | "failed", error code)."""
        for attempt in range(self._max_attempts):
            try:
                self._send(connection_id, text)
                return "sent", ""
            except WebsocketDisconnectedError:
                self._forget(connection_id)
                return "gone", "GoneException"
            except Exception as exc:  # one failure must not stop the other sends
                code = _error_code(exc) or type(exc).__name__
                if code == "GoneException":  # a raw management-API client instead of app.websocket_api
                    self._forget(connection_id)
                    return "gone", code
                if not _is_throttled(exc) or attempt + 1 == self._max_attempts:
                    return "failed", code
                self._sleep(self._backoff(attempt))
        return "failed", "unreachable"

    def _backoff(self, attempt: int) -> float:
        # "Equal jitter": at least half the exponential step, so retries spread out but still back off.
        ceiling = min(self._max_delay, self._base_delay * (2**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _forget(self, connection_id: str) -> None:
        try:
            self._connections.remove(connection_id)
        except (ClientError, BotoCoreError) as exc:
            # The row's TTL removes it anyway; the next broadcast gets 410 and tries again.
            log.warning("deleting a gone connection failed", extra={"connection_id": connection_id, "error": str(exc)})


class Broadcaster(Protocol):
    def broadcast(self, message: dict[str, Any]) -> Any: ...


class EventPublisher:
    """After a commit: broadcast the event, then mark it published, then trim the journal. Never raises: a
    failed fan-out must never fail the refresh (the journal still has the event; the tick retries it)."""

    def __init__(
        self,
        journal: EventJournal,
        fanout: Broadcaster,
        keep: int = DEFAULT_KEEP,
        claim_lease_s: float = DEFAULT_CLAIM_LEASE_S,
    ):
        self._journal = journal
        self._fanout = fanout
        self._keep = keep
        self._lease = claim_lease_s

    def publish(self, message: dict[str, Any]) -> Any:
        """Broadcast one just-committed event. Returns the fan-out stats (None if it was not broadcast here)."""
        epoch, seq = message["epoch"], int(message["seq"])
        try:
            claimed = self._journal.claim(epoch, seq, self._lease)
        except (ClientError, BotoCoreError) as exc:
            # Cannot tell whether someone else is on it; a duplicate send is harmless (clients dedupe by seq).
            log.warning("event claim failed; broadcasting anyway", extra={"seq": seq, "error": str(exc)})
            claimed = True
        if not claimed:
            log.info("event already published or being published", extra={"seq": seq, "epoch": epoch})
            return None
        return self._broadcast_and_mark(message)

    def publish_pending(self, epoch: str, limit: int = 20) -> int:
        """Re-broadcast recent events still unpublished (their publisher crashed or timed out). Returns how
        many were broadcast."""
        try:
            pending = self._journal.unpublished(epoch, limit=limit)
        except (ClientError, BotoCoreError) as exc:
            log.warning("reading unpublished events failed", extra={"epoch": epoch, "error": str(exc)})
            return 0
        count = 0
        for message in pending:
            try:
                if not self._journal.claim(epoch, int(message["seq"]), self._lease):
                    continue
            except (ClientError, BotoCoreError) as exc:
                log.warning("event claim failed", extra={"seq": message["seq"], "error": str(exc)})
                continue
            log.info("publishing a pending event", extra={"seq": message["seq"], "epoch": epoch})
            self._broadcast_and_mark(message)
            count += 1
        return count

    def _broadcast_and_mark(self, message: dict[str, Any]) -> Any:
        epoch, seq = message["epoch"], int(message["seq"])
        try:
            stats = self._fanout.broadcast(message)
        except Exception:  # Fanout already swallows send errors; this guards the page reads
            log.exception("broadcast failed; the tick will retry", extra={"seq": seq, "epoch": epoch})
            return None
        nobody_reached = getattr(stats, "sent", 1) == 0 and getattr(stats, "failed", 0) > 0
        if nobody_reached or getattr(stats, "incomplete", False):
            # The management API is down or misconfigured, or the connections could not all be read: leave it
            # unpublished so the tick retries once the claim expires. Isolated send failures are not retried
            # (everyone would get it twice); those clients heal by resuming with `since`.
            log.warning("the event did not reach everyone; it stays pending", extra={"seq": seq, "epoch": epoch})
            return stats
        try:
            self._journal.mark_published(epoch, seq)
        except (ClientError, BotoCoreError) as exc:
            log.warning("marking the event published failed", extra={"seq": seq, "error": str(exc)})
        self._journal.trim(epoch, seq, keep=self._keep)
        return stats
