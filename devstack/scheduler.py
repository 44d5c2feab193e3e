"""The local EventBridge: fires the app's scheduled function with a "Scheduled Event", like the deployed rule.

It fires once at start (that is how ``refresh_on_start`` happens locally: the tick decides whether this
deployment still has to run its start-up refresh) and then every ``interval_s``. One thread runs the ticks,
so they never overlap; a slot missed because a tick ran long is skipped, not replayed in a burst. A tick that
raises is logged and the next one runs on time.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from chalicelib.clock import utc_iso
from chalicelib.logs import get_logger
from devstack import LambdaContext

log = get_logger("local.scheduler")

ScheduledHandler = Callable[[dict[str, Any], Any], Any]


def scheduled_event(region: str, rule_name: str, now: float | None = None) -> dict[str, Any]:
    """An EventBridge "Scheduled Event" as Lambda receives it."""
    now = time.time() if now is None else now
    account = "123456789012"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": utc_iso(now, "seconds"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{rule_name}"],
        "detail": {},
    }


class LocalScheduler:
    def __init__(
        self,
        handler: ScheduledHandler,
        interval_s: float,
        region: str = "us-east-1",
        rule_name: str = "model-catalog-local-scheduled_tick",
        timeout_s: float = 300.0,
    ):
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._handler = handler
        self.interval_s = interval_s
        self._region = region
        self._rule_name = rule_name
        self._timeout_s = timeout_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self.ticks_started = 0
        self.ticks_failed = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop firing; wait (bounded) for a running tick. Returns False if a tick was still running."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            log.warning("a scheduled tick is still running at shutdown", extra={"waited_s": timeout_s})
            return False
        return True

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stopping.is_set():
            started = time.monotonic()
            self.fire()
            # The next slot on the fixed grid that is still ahead of us.
            elapsed_slots = int((time.monotonic() - next_at) // self.interval_s) + 1
            next_at += elapsed_slots * self.interval_s
            skipped = elapsed_slots - 1
            if skipped > 0:
                log.warning(
                    "scheduled tick ran longer than the interval; skipping slots",
                    extra={"skipped": skipped, "duration_s": round(time.monotonic() - started, 3)},
                )
            self._stopping.wait(max(0.0, next_at - time.monotonic()))

    def fire(self) -> Any:
        """Run one tick now, on the calling thread; never raises."""
        self.ticks_started += 1
        started = time.monotonic()
        event = scheduled_event(self._region, self._rule_name)
        try:
            result = self._handler(event, LambdaContext(self._rule_name, self._timeout_s))
        except Exception:
            self.ticks_failed += 1
            log.exception("scheduled tick failed", extra={"event_id": event["id"]})
            return None
        log.info(
            "scheduled tick done",
            extra={
                "event_id": event["id"],
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
                **_summary(result),
            },
        )
        return result


def _summary(result: Any) -> dict[str, Any]:
    """A few fields of the tick's result for the log line (never the whole payload)."""
    if not isinstance(result, dict):
        return {}
    summary: dict[str, Any] = {
        key: result[key] for key in ("ran", "reason") if isinstance(result.get(key), (str, bool))
    }
    refresh = result.get("result") if isinstance(result.get("result"), dict) else result
    if isinstance(refresh.get("revision"), int):
        summary["revision"] = refresh["revision"]
    for key in ("changed", "unchanged", "failed"):
        if isinstance(refresh.get(key), list):
            summary[key] = len(refresh[key])
    return summary
