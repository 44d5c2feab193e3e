"""The change feed: the event journal read without a socket (docs/reference.md §8, ``GET /api/v1/changes`` and
``GET /api/v1/changes.atom``).

Every event is exactly the WebSocket message of that change (docs/reference.md §3): the journal's stored message
fitted to the WebSocket limit as the fan-out and ``subscribe``'s replay fit it (``"truncated": true`` when its id lists
had to go), so a client can switch between push and pull without a gap or a difference. The cursor rules are
``subscribe``'s: events with ``seq > since`` of the current epoch, or ``resync_required`` when the epoch is not the
current one or the journal no longer holds every event after ``since``.

One answer stays under ``budget_bytes`` of event JSON (a Lambda answer is capped at 6 MB, and an event may be up to
128 KB): a page cut short says ``has_more``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.events import fit_to_wire, wire_size

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
ATOM_ENTRIES = 50
BUDGET_BYTES = 4_000_000


class JournalReader(Protocol):
    def read(
        self, epoch: str, low: int, high: int, newest_first: bool = False, page_size: int | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]: ...


@dataclass(frozen=True)
class FeedPage:
    """One answer of ``GET /api/v1/changes``; ``seq`` is the latest seq of ``epoch`` (the current one)."""

    epoch: str
    seq: int
    events: list[dict[str, Any]] = field(default_factory=list)
    has_more: bool = False
    resync_required: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "seq": self.seq,
            "events": list(self.events),
            "has_more": self.has_more,
            "resync_required": self.resync_required,
        }


class ChangeFeed:
    """``position() -> (latest seq, epoch, revision)`` is the manifest's cursor (``CatalogService.position``);
    ``code_version`` names the code that renders the feed (the deployment id), for ETags."""

    def __init__(
        self,
        journal: JournalReader,
        position: Callable[[], tuple[int, str, int]],
        budget_bytes: int = BUDGET_BYTES,
        code_version: str = "",
    ):
        self._journal = journal
        self._position = position
        self._budget = budget_bytes
        self.code_version = code_version

    def position(self) -> tuple[int, str]:
        """(latest seq, current epoch)."""
        seq, epoch, _revision = self._position()
        return seq, epoch

    def changes(self, since: int | None = None, epoch: str | None = None, limit: int = DEFAULT_LIMIT) -> FeedPage:
        """The events after ``since`` of ``epoch`` (at most ``limit``), or without ``since`` the newest ``limit``."""
        latest, current = self.position()
        if epoch is not None and epoch != current:
            return FeedPage(current, latest, resync_required=True)
        if since is None:
            return FeedPage(current, latest, self.newest(current, latest, limit)[::-1])
        if since > latest:  # a seq this epoch never reached: the client's position is not ours
            return FeedPage(current, latest, resync_required=True)
        high = min(latest, since + limit)
        events: list[dict[str, Any]] = []
        used = 0
        expected = since + 1
        for seq, stored in self._journal.read(current, since + 1, high):
            if seq != expected:
                return FeedPage(current, latest, resync_required=True)  # trimmed: the oldest kept is past since+1
            event = fit_to_wire(stored)
            used += wire_size(event)
            if events and used > self._budget:
                return FeedPage(current, latest, events, has_more=True)
            events.append(dict(event))
            expected += 1
        if expected != high + 1:
            return FeedPage(current, latest, resync_required=True)
        return FeedPage(current, latest, events, has_more=high < latest)

    def newest(self, epoch: str, latest: int, count: int) -> list[dict[str, Any]]:
        """Up to ``count`` events of ``epoch`` ending at seq ``latest``, newest first, without a gap, within the
        byte budget (the oldest ones give way)."""
        events: list[dict[str, Any]] = []
        used = 0
        expected = latest
        for seq, stored in self._journal.read(epoch, max(1, latest - count + 1), latest, newest_first=True):
            if seq != expected:
                break  # trimmed below here
            event = fit_to_wire(stored)
            used += wire_size(event)
            if events and used > self._budget:
                break
            events.append(dict(event))
            expected -= 1
        return events
