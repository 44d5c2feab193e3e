"""After a commit: deliver the event, mark it published, trim the journal; and repair missed deliveries.

``EventPublisher.publish`` never raises: a failed delivery must never fail the refresh (the journal still has the
event and the scheduled tick re-delivers it with ``publish_pending``). A claim in the journal makes sure a
committer and a tick never deliver one event together. A request that commits a change fans out only as far as its
time budget allows (``max_connections``); past that the event is the scheduled tick's to deliver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
        count_connections: Callable[[int], int] | None = None,
        channels: Sequence[Broadcaster] = (),
    ):
        self._journal = journal
        self._fanout = fanout
        self._keep = keep
        self._lease = claim_lease_s
        self._count_connections = count_connections  # ConnectionStore.count_up_to
        # Further channels (webhooks, EventBridge): told by ``publish``, never kept pending here (they keep their own
        # durable progress, events/_webhooks.py).
        self._channels = tuple(channels)

    def publish(self, message: dict[str, Any], max_connections: int | None = None) -> Any:
        """Broadcast one just-committed event. Returns the fan-out stats (None if it was not broadcast here).

        ``max_connections`` (a request's budget): with more connections open than that, the event is left pending
        and unclaimed, and the next scheduled tick delivers it (``publish_pending``), off the request path.

        The further channels are told first, whatever happens to the fan-out: they only hand the event on (their
        work runs beside it) and keep their own durable progress (the tick repairs what they miss)."""
        epoch, seq = message["epoch"], int(message["seq"])
        for channel in self._channels:
            try:
                channel.broadcast(message)
            except Exception:
                log.exception("a delivery channel failed", extra={"seq": seq, "channel": type(channel).__name__})
        if max_connections is not None and self._count_connections is not None:
            try:
                open_connections = self._count_connections(max_connections)
            except (ClientError, BotoCoreError) as exc:
                log.warning("counting connections failed; broadcasting here", extra={"seq": seq, "error": str(exc)})
                open_connections = 0
            if open_connections > max_connections:
                log.info(
                    "fan-out handed to the scheduled tick",
                    extra={"seq": seq, "epoch": epoch, "connections_over": max_connections},
                )
                return None
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
