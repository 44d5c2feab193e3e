"""Webhook delivery (Standard Webhooks, docs/reference.md §9) and the relay of committed events to the durable
channels (webhooks, EventBridge).

The path of one event:

1. After the commit, ``WebhookChannel.broadcast`` (one of the publisher's channels) only *kicks* the relay: an
   asynchronous invocation of the ``webhook_dispatch`` function when deployed (``LambdaKick``,
   ``InvocationType=Event``: one short call, whatever the number of endpoints), a worker thread locally
   (``ThreadKick``). The refresh's answer never waits for an endpoint.
2. ``WebhookDispatcher.relay`` puts the event on EventBridge (when a bus is configured), creates one delivery
   record per enabled endpoint that wants it (idempotent: a relay that runs twice creates nothing twice), moves
   the relay cursor, and sends those first attempts at once, with bounded concurrency and a 10 s timeout each.
3. The scheduled tick (``WebhookDispatcher.tick``) is the durable part: it relays any event the cursor has not
   passed (a lost kick, a crashed relay), then sends every delivery whose retry is due. Delivery records and
   their due times live in DynamoDB, so retries survive restarts and Lambda deaths.

A delivery is claimed before each attempt (a lease), so two senders never send one attempt together; a sender
that dies mid-attempt leaves it to the next tick once the lease ends. Slow endpoints cannot hold up the others:
each has its own request with a watchdog, and endpoints that failed last time share a smaller lane of their own.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.clock import utc_iso
from chalicelib.core.webhooks import (
    attempt_failed,
    failing_too_long,
    is_after,
    message_id,
    next_delay,
    signed_headers,
    wants,
    webhook_body,
)
from chalicelib.events._message import fit_to_wire
from chalicelib.http import PostOutcome, UrlGuard, new_session, post_bytes
from chalicelib.logs import get_logger
from chalicelib.storage.journal import EventJournal
from chalicelib.storage.webhooks import Delivery, Outcome, WebhookStore

log = get_logger("webhooks")

SEND_TIMEOUT_S = 10.0
# A sender owns an attempt this long (the request's timeout and then some); after it, the tick may try again.
CLAIM_LEASE_S = 30.0
# The tick leaves events this young to the relay their commit kicked (it is most likely still running).
RELAY_GRACE_S = 30.0
# How long one tick may spend sending due retries (the scheduled function has 300 s, and also refreshes).
TICK_BUDGET_S = 60.0
# At most this many attempt records are written at once: the sends are concurrent, but a burst of writes must not
# queue in front of a refresh's own (DynamoDB throttles a hot partition; the local stack's DynamoDB is serial).
RECORD_WRITERS = 2
# Trimming attempt logs and disabling endpoints that kept failing is done at most this often per process.
HOUSEKEEPING_EVERY_S = 60.0
RETRY_AFTER_CAP_S = 24 * 60 * 60


class Cipher(Protocol):
    def decrypt(self, blob: bytes, context: str) -> bytes: ...


class Broadcaster(Protocol):
    def broadcast(self, message: dict[str, Any]) -> Any: ...


def secret_context(endpoint_id: str) -> str:
    """The encryption context that binds a stored secret to its endpoint."""
    return f"webhook:{endpoint_id}"


@dataclass(frozen=True)
class DeliveryOptions:
    schedule: tuple[float, ...]
    disable_after_s: float
    concurrency: int = 32
    timeout_s: float = SEND_TIMEOUT_S
    lease_s: float = CLAIM_LEASE_S


@dataclass
class SendStats:
    sent: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class WebhookDispatcher:
    def __init__(
        self,
        store: WebhookStore,
        journal: EventJournal,
        cipher: Callable[[], Cipher],
        guard: UrlGuard,
        options: DeliveryOptions,
        bus: Broadcaster | None = None,
        clock: Callable[[], float] = time.time,
        session_factory: Callable[[], Any] | None = None,
    ):
        self._store = store
        self._journal = journal
        self._cipher = cipher
        self._guard = guard
        self.options = options
        self._bus = bus
        self._clock = clock
        self._session_factory = session_factory or (lambda: new_session(pool_size=options.concurrency))
        self._session: Any = None
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._writers = threading.BoundedSemaphore(RECORD_WRITERS)
        self._housekept_at = float("-inf")

    # -- entry points -----------------------------------------------------------------------------------------
    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """A kick: ``{"relay": {"epoch", "seq"}}`` relays one event; ``{"due": true}`` sends what is due."""
        relay = request.get("relay")
        if isinstance(relay, Mapping):
            message = request.get("message")
            if not isinstance(message, Mapping):
                message = self._message(str(relay["epoch"]), int(relay["seq"]))
            if message is None:
                log.warning("the event to relay is not in the journal", extra=dict(relay))
                return {"relayed": False}
            stats = self.relay(dict(message))
            return {"relayed": True, "sent": stats.sent, "delivered": stats.delivered}
        stats = self.send_due(budget_s=TICK_BUDGET_S)
        return {"sent": stats.sent, "delivered": stats.delivered}

    def relay(self, message: dict[str, Any]) -> SendStats:
        """Hand one committed event to the durable channels and send its first attempts. Each first attempt goes
        out at once and is recorded after (no endpoint waits for a write); the cursor passes the event once every
        record is written, so a relay that dies half-way is finished by the tick (at least once)."""
        epoch, seq = str(message["epoch"]), int(message["seq"])
        try:
            relayed = self._store.relayed(epoch)
            if relayed is not None and relayed >= seq:
                log.info("the event was relayed before", extra={"epoch": epoch, "seq": seq})
                return SendStats()  # a republished event (its WebSocket fan-out is being retried): nothing to do
            if self._bus is not None:
                self._bus.broadcast(message)
            wanted = self._wanted(message)
        except Exception:
            log.exception("relaying the event failed; the tick retries it", extra={"epoch": epoch, "seq": seq})
            return SendStats()
        deliveries = [(Delivery(endpoint["id"], epoch, seq, 0, ""), endpoint) for endpoint in wanted]
        stats = self._send_all(deliveries, {(epoch, seq): message}, first=True)
        if not stats.outcomes.get("error") and not self._store.advance_relay(epoch, seq - 1, seq):
            self._store.mark_relayed(epoch, seq)  # an earlier event's relay is still running: the tick moves on
        return stats

    def tick(self, epoch: str, latest_seq: int, budget_s: float = TICK_BUDGET_S) -> SendStats:
        """The scheduled part: relay what no relay did, keep the endpoints healthy, send every due retry."""
        try:
            self._catch_up(epoch, latest_seq)
        except Exception:
            log.exception("catching up the relay failed", extra={"epoch": epoch})
        try:
            self._housekeeping()
        except Exception:
            log.exception("webhook housekeeping failed")
        return self.send_due(budget_s)

    def send_due(self, budget_s: float = TICK_BUDGET_S) -> SendStats:
        """Claim and send every due delivery (bounded concurrency) until none is due or the budget is spent."""
        deadline = time.monotonic() + budget_s
        total = SendStats()
        messages: dict[tuple[str, int], dict[str, Any] | None] = {}
        while time.monotonic() < deadline:
            due = self._store.due()
            if not due:
                break
            endpoints = {endpoint["id"]: endpoint for endpoint in self._store.endpoints()}
            claimer = uuid.uuid4().hex
            batch = []
            for endpoint_id, epoch, seq in due:
                delivery = self._store.claim(endpoint_id, epoch, seq, self.options.lease_s, claimer)
                if delivery is not None:
                    batch.append((delivery, endpoints.get(endpoint_id)))
            if not batch:
                break  # everything due is being sent by someone else
            for delivery, _ in batch:
                key = (delivery.epoch, delivery.seq)
                if key not in messages:
                    messages[key] = self._message(*key)
            stats = self._send_all(batch, messages)
            total.sent += stats.sent
            total.delivered += stats.delivered
            total.failed_attempts += stats.failed_attempts
        return total

    # -- relaying ---------------------------------------------------------------------------------------------
    def _wanted(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The enabled endpoints that get this event (their filter wants it, and they existed before it)."""
        epoch, seq = str(message["epoch"]), int(message["seq"])
        return [
            endpoint
            for endpoint in self._store.endpoints()
            if endpoint.get("enabled")
            and wants(endpoint.get("provider_ids"), message)
            and is_after((str(endpoint.get("created_epoch")), int(endpoint.get("created_seq") or 0)), epoch, seq)
        ]

    def _hand_over(self, message: dict[str, Any]) -> None:
        """EventBridge, then the delivery records, due now (the tick's catch-up: ``send_due`` sends them)."""
        epoch, seq = str(message["epoch"]), int(message["seq"])
        if self._bus is not None:
            self._bus.broadcast(message)
        for endpoint in self._wanted(message):
            self._store.enqueue(endpoint["id"], epoch, seq)

    def _catch_up(self, epoch: str, latest_seq: int) -> None:
        relayed = self._store.relayed(epoch)
        if relayed is None:
            # First tick of this epoch: nothing before it was owed (endpoints start the cursor when created).
            self._store.start_relay(epoch, latest_seq)
            return
        if relayed >= latest_seq:
            return
        messages = self._journal.replay(epoch, relayed, latest_seq)
        if messages is None:
            log.warning("the journal no longer holds every event to relay; skipping ahead",
                        extra={"epoch": epoch, "from_seq": relayed, "to_seq": latest_seq})
            self._store.advance_relay(epoch, relayed, latest_seq)
            return
        now = self._clock()
        position = relayed
        done = self._store.marked_relayed(epoch, relayed, latest_seq)
        for message in messages:
            if int(message["seq"]) not in done:
                if _age_s(message, now) < RELAY_GRACE_S:
                    break  # its own relay is most likely still running; a later tick looks again
                log.info("relaying an event its commit did not", extra={"epoch": epoch, "seq": message["seq"]})
                self._hand_over(message)
            if not self._store.advance_relay(epoch, position, int(message["seq"])):
                break
            position = int(message["seq"])

    def _housekeeping(self) -> None:
        now = self._clock()
        if now - self._housekept_at < HOUSEKEEPING_EVERY_S:
            return
        self._housekept_at = now
        for endpoint in self._store.endpoints():
            self._store.trim_attempts(endpoint)
            failing_since = endpoint.get("failing_since")
            if endpoint.get("enabled") and failing_too_long(failing_since, now, self.options.disable_after_s):
                self._disable_for_failing(endpoint)

    # -- sending ----------------------------------------------------------------------------------------------
    def _send_all(
        self,
        batch: Sequence[tuple[Delivery, dict[str, Any] | None]],
        messages: Mapping[tuple[str, int], dict[str, Any] | None],
        first: bool = False,
    ) -> SendStats:
        """Attempt each delivery: claimed ones, or (``first``) the first attempts of a relay, which have no record
        yet. Senders only send; what came of each attempt is recorded by a few writers behind them, so the sends
        go at the network's pace, not the database's."""
        stats = SendStats()
        if not batch:
            return stats
        healthy = [item for item in batch if not (item[1] or {}).get("failing_since")]
        failing = [item for item in batch if (item[1] or {}).get("failing_since")]
        lock = threading.Lock()

        def count(label: str) -> None:
            with lock:
                stats.outcomes[label] = stats.outcomes.get(label, 0) + 1
                if label in ("delivered", "retry", "failed", "gone"):
                    stats.sent += 1
                stats.delivered += label == "delivered"
                stats.failed_attempts += label in ("retry", "failed", "gone")

        def keep(delivery: Delivery, endpoint: dict[str, Any], judged: tuple[Outcome, str, float]) -> None:
            try:
                count(self._keep(delivery, endpoint, *judged, first))
            except Exception:
                log.exception("recording a webhook attempt failed", extra={"webhook_id": delivery.endpoint_id})
                count("error")

        def send(delivery: Delivery, endpoint: dict[str, Any] | None) -> None:
            try:
                judged = self._attempt(delivery, endpoint, messages.get((delivery.epoch, delivery.seq)))
            except Exception:
                log.exception("a webhook attempt failed unexpectedly", extra={"webhook_id": delivery.endpoint_id})
                judged = "error"
            if isinstance(judged, str):
                count(judged)
            else:
                writers.submit(keep, delivery, endpoint, judged)

        # Endpoints that failed last time get a lane of their own, so a dead one cannot hold up healthy ones.
        workers = self.options.concurrency
        main_workers = max(1, min(workers, len(healthy)))
        slow_workers = max(1, min(max(1, workers // 4), len(failing)))
        # Leaving the block waits for the lanes first, then for the writers (exits run in reverse order).
        with (
            ThreadPoolExecutor(max_workers=RECORD_WRITERS, thread_name_prefix="webhook-record") as writers,
            ThreadPoolExecutor(max_workers=main_workers, thread_name_prefix="webhook") as main,
            ThreadPoolExecutor(max_workers=slow_workers, thread_name_prefix="webhook-failing") as slow,
        ):
            for item in healthy:
                main.submit(send, *item)
            for item in failing:
                slow.submit(send, *item)
        log.info("webhooks sent", extra={"deliveries": len(batch), **stats.outcomes})
        return stats

    def _attempt(
        self, delivery: Delivery, endpoint: dict[str, Any] | None, message: dict[str, Any] | None
    ) -> tuple[Outcome, str, float] | str:
        """Send one attempt and judge it: (outcome, label, when); or, when there was nothing to send, the label."""
        if endpoint is None:
            self._store.finish(delivery, Outcome("failed", None, "the endpoint was deleted"), attempted=False)
            return "dropped"
        if not endpoint.get("enabled"):
            reason = endpoint.get("disabled_reason") or "disabled"
            self._store.finish(delivery, Outcome("failed", None, f"not sent: the endpoint is disabled ({reason})"),
                               attempted=False)
            return "dropped"
        if message is None:
            self._store.finish(delivery, Outcome("failed", None, "the event is no longer in the journal"),
                               attempted=False)
            return "dropped"
        result = self._post(endpoint, delivery, message)
        now = self._clock()
        if not attempt_failed(result.status_code):
            return Outcome("succeeded", result.status_code, None), "delivered", now
        if result.status_code == 410:
            return Outcome("failed", 410, "HTTP 410: the endpoint is gone; it was disabled"), "gone", now
        delay = next_delay(self.options.schedule, delivery.attempts + 1, result.retry_after_s, RETRY_AFTER_CAP_S)
        if delay is None:
            error = f"{result.error}; gave up after {delivery.attempts + 1} attempts"
            return Outcome("failed", result.status_code, error), "failed", now
        return Outcome("pending", result.status_code, result.error, due_at=now + delay), "retry", now

    def _keep(
        self, delivery: Delivery, endpoint: dict[str, Any], outcome: Outcome, label: str, now: float, first: bool
    ) -> str:
        """Record an attempt's outcome (``first``: create the record), then act on the endpoint's health."""
        record = self._store.first_attempt if first else self._store.finish
        with self._writers:
            recorded = record(delivery, outcome)
        if not recorded:
            return "superseded"  # another sender recorded it (or the endpoint was deleted meanwhile)
        if label == "gone":
            self._store.disable(endpoint["id"], "the endpoint answered 410 Gone")
            log.info("webhook endpoint disabled (410 Gone)", extra={"webhook_id": endpoint["id"]})
        elif label != "delivered" and failing_too_long(
            endpoint.get("failing_since"), now, self.options.disable_after_s
        ):
            self._disable_for_failing(endpoint)
        return label

    def _post(self, endpoint: dict[str, Any], delivery: Delivery, message: dict[str, Any]) -> PostOutcome:
        body = webhook_body(fit_to_wire(message))  # `data` is exactly what WebSocket clients got
        msg_id = message_id(delivery.epoch, delivery.seq)
        headers = signed_headers(self._key(endpoint), msg_id, int(self._clock()), body)
        return post_bytes(self._http(), self._guard, str(endpoint["url"]), body, headers, self.options.timeout_s)

    def _disable_for_failing(self, endpoint: dict[str, Any]) -> None:
        since = utc_iso(float(endpoint["failing_since"]), "seconds")
        days = self.options.disable_after_s / 86400
        reason = f"every attempt failed since {since} (more than {days:g} days)"
        self._store.disable(endpoint["id"], reason)
        log.warning("webhook endpoint disabled", extra={"webhook_id": endpoint["id"], "reason": reason})

    # -- helpers ----------------------------------------------------------------------------------------------
    def _key(self, endpoint: dict[str, Any]) -> bytes:
        endpoint_id = endpoint["id"]
        with self._lock:
            key = self._keys.get(endpoint_id)
        if key is None:
            key = self._cipher().decrypt(bytes(endpoint["secret"]), secret_context(endpoint_id))
            with self._lock:
                self._keys[endpoint_id] = key
        return key

    def _http(self) -> Any:
        with self._lock:
            if self._session is None:
                self._session = self._session_factory()
            return self._session

    def _message(self, epoch: str, seq: int) -> dict[str, Any] | None:
        try:
            messages = self._journal.replay(epoch, seq - 1, seq)
        except (ClientError, BotoCoreError):
            log.exception("reading the event from the journal failed", extra={"epoch": epoch, "seq": seq})
            return None
        return messages[0] if messages else None


def _age_s(message: Mapping[str, Any], now: float) -> float:
    from datetime import datetime

    try:
        return now - datetime.fromisoformat(str(message["timestamp"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return RELAY_GRACE_S


# -- after the commit: the kick -----------------------------------------------------------------------------------
class WebhookChannel:
    """The publisher's channel for webhooks and EventBridge: it only kicks the relay (off the request's path)."""

    def __init__(self, kick: Callable[[dict[str, Any]], None]):
        self._kick = kick

    def broadcast(self, message: dict[str, Any]) -> None:
        request = {"relay": {"epoch": message["epoch"], "seq": int(message["seq"])}}
        try:
            self._kick({**request, "message": message})
        except Exception:
            # The tick relays the event once the grace period has passed; nothing is lost.
            log.exception("kicking the webhook relay failed; the tick will relay the event", extra=request["relay"])


class LambdaKick:
    """Deployed: invoke the ``webhook_dispatch`` function asynchronously (``InvocationType=Event``). Lambda queues
    the request and retries it if the function fails; the payload names the event, never carries it (the 256 KB
    async payload limit), so the function reads it from the journal."""

    def __init__(self, lambda_client: Callable[[], Any], function_name: str):
        self._client = lambda_client
        self.function_name = function_name

    def __call__(self, request: dict[str, Any]) -> None:
        payload = {key: value for key, value in request.items() if key != "message"}
        self._client().invoke(
            FunctionName=self.function_name, InvocationType="Event", Payload=json.dumps(payload).encode("utf-8")
        )


class ThreadKick:
    """Locally (a long-lived process): run the request on one of ``workers`` daemon threads, which play the
    concurrent invocations of the deployed function (a relay holds its thread until its slowest endpoint answers or
    times out, so there are enough for many events in flight). A stopping process does not wait for them: what
    they leave undone is in DynamoDB, and the next tick finishes it."""

    def __init__(self, work: Callable[[dict[str, Any]], Any], workers: int = 16):
        self._work = work
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._workers = workers
        self._started = False
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> None:
        with self._lock:
            if not self._started:
                for index in range(self._workers):
                    threading.Thread(target=self._run, name=f"webhook-relay-{index}", daemon=True).start()
                self._started = True
        self._queue.put(request)

    def _run(self) -> None:
        while True:
            request = self._queue.get()
            try:
                self._work(request)
            except Exception:
                log.exception("the webhook relay failed; the tick retries it")
