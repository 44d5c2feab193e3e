"""After a commit: deliver the event, mark it published, trim the journal; and repair missed deliveries.

``EventPublisher.publish`` never raises: a failed delivery must never fail the refresh (the journal still has the
event and the scheduled tick re-delivers it with ``publish_pending``). A claim in the journal makes sure a
committer and a tick never deliver one event together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.logs import get_logger
from chalicelib.storage.journal import DEFAULT_CLAIM_LEASE_S, DEFAULT_KEEP, EventJournal

log = get_logger("events")


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
        channels: Sequence[Broadcaster] = (),
    ):
        self._journal = journal
        self._fanout = fanout
        self._keep = keep
        self._lease = claim_lease_s
        # Further channels (webhooks, EventBridge) are told before the WebSocket fan-out. They keep their own
        # durable progress (events/_webhooks.py), so their failures never keep the event pending here.
        self._channels = tuple(channels)

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
        for channel in self._channels:  # first: they only hand the event on, and then run beside the fan-out
            try:
                channel.broadcast(message)
            except Exception:
                log.exception("a delivery channel failed", extra={"seq": seq, "channel": type(channel).__name__})
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
