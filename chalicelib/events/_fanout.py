"""The WebSocket fan-out: one message to every open connection, with bounded concurrency.

410 Gone prunes the connection, throttling is retried with backoff, and a message over API Gateway's limit is sent
truncated (``"truncated": true``: clients refetch). ``broadcast`` never raises for a failed send.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import ConnectionGone
from chalicelib.events._message import MAX_WIRE_BYTES, fit_to_wire, wire_text
from chalicelib.logs import get_logger
from chalicelib.storage.connections import ConnectionStore
from chalicelib.storage.dynamo import error_code

log = get_logger("events")

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


def _is_throttled(exc: Exception) -> bool:
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(exc) in THROTTLING_CODES or status == 429


class Fanout:
    """Sends one message to every stored connection with bounded concurrency.

    ``send(connection_id, text)`` is ``WebsocketSender.send``: it raises ``ConnectionGone`` for 410 Gone (the row
    is deleted), a throttling ``ClientError`` is retried with exponential backoff, and any
    other failure is counted and logged. ``broadcast`` never raises for a failed send.
    """

    def __init__(
        self,
        connections: ConnectionStore,
        send: Callable[[str, str], None],
        max_workers: int = 32,
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
        fitted = fit_to_wire(message, self._max_bytes)
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
        with ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="fanout") as pool:
            try:
                for page in self._connections.pages(self._page_size):
                    for connection_id in page:
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
            except ConnectionGone:
                self._forget(connection_id)
                return "gone", "GoneException"
            except Exception as exc:  # one failure must not stop the other sends
                code = error_code(exc) or type(exc).__name__
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
