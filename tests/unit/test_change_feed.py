"""The change feed's cursor rules (``chalicelib.change_feed``, docs/reference.md §8) over an in-memory journal: the
same answers as WebSocket ``subscribe`` (§3), pages by count and by bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.change_feed import ChangeFeed
from chalicelib.core.domain import ProviderChange, RefreshResult
from chalicelib.core.events import build_event_message
from chalicelib.events import encode_for_wire, fit_to_wire, wire_size

EPOCH = "epoch-a"


def message(seq: int, added: int = 1, epoch: str = EPOCH) -> dict[str, Any]:
    ids = [f"{seq:04d}-{index:036d}" for index in range(added)]
    result = RefreshResult(revision=seq, changed=[ProviderChange(provider_id="p", provider_name="P", added=ids)])
    return build_event_message(seq, epoch, f"2026-12-01T00:00:{seq % 60:02d}.000Z", result)


class MemoryJournal:
    """``EventJournal.read`` over a dict; ``reads`` counts the messages handed out."""

    def __init__(self, messages: list[dict[str, Any]]):
        self.items = {(m["epoch"], m["seq"]): m for m in messages}
        self.reads = 0

    def read(self, epoch: str, low: int, high: int, newest_first: bool = False,
             page_size: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        seqs = sorted((s for (e, s) in self.items if e == epoch and low <= s <= high), reverse=newest_first)
        for seq in seqs:
            self.reads += 1
            yield seq, self.items[(epoch, seq)]


def feed(count: int = 5, budget: int = 4_000_000, trimmed: int = 0, epoch: str = EPOCH) -> tuple[ChangeFeed, Any]:
    journal = MemoryJournal([message(seq) for seq in range(trimmed + 1, count + 1)])
    return ChangeFeed(journal, lambda: (count, epoch, count + 100), budget_bytes=budget), journal


def seqs(page: Any) -> list[int]:
    return [event["seq"] for event in page.events]


def test_since_gives_the_later_events_in_order() -> None:
    changes, _ = feed(5)
    page = changes.changes(since=2, epoch=EPOCH)
    assert seqs(page) == [3, 4, 5] and (page.epoch, page.seq) == (EPOCH, 5)
    assert page.has_more is False and page.resync_required is False
    assert page.events == [message(seq) for seq in (3, 4, 5)]
    assert page.to_json() == {"epoch": EPOCH, "seq": 5, "events": page.events, "has_more": False,
                              "resync_required": False}


def test_since_the_latest_seq_gives_nothing() -> None:
    changes, _ = feed(5)
    assert changes.changes(since=5, epoch=EPOCH).to_json() == {
        "epoch": EPOCH, "seq": 5, "events": [], "has_more": False, "resync_required": False}


def test_limit_pages_with_has_more_until_the_end() -> None:
    changes, journal = feed(5)
    first = changes.changes(since=0, epoch=EPOCH, limit=2)
    assert seqs(first) == [1, 2] and first.has_more is True
    assert journal.reads == 2  # only what the page needs
    second = changes.changes(since=2, epoch=EPOCH, limit=2)
    third = changes.changes(since=4, epoch=EPOCH, limit=2)
    assert (seqs(second), second.has_more, seqs(third), third.has_more) == ([3, 4], True, [5], False)


def test_without_since_the_newest_events_oldest_first() -> None:
    changes, _ = feed(5)
    page = changes.changes(limit=3)
    assert seqs(page) == [3, 4, 5] and page.has_more is False and page.resync_required is False
    assert seqs(changes.changes()) == [1, 2, 3, 4, 5]
    empty, _ = feed(0)
    assert empty.changes().to_json() == {"epoch": EPOCH, "seq": 0, "events": [], "has_more": False,
                                         "resync_required": False}


@pytest.mark.parametrize(
    ("since", "epoch"),
    [
        (2, "another-epoch"),  # an epoch that is not the current one
        (None, "another-epoch"),
        (9, EPOCH),  # a seq this epoch never reached
        (0, EPOCH),  # older than the journal keeps (seq 1 and 2 were trimmed)
        (1, EPOCH),
    ],
)
def test_resync_required(since: int | None, epoch: str) -> None:
    changes, _ = feed(5, trimmed=2)
    assert changes.changes(since=since, epoch=epoch).to_json() == {
        "epoch": EPOCH, "seq": 5, "events": [], "has_more": False, "resync_required": True}


def test_a_since_the_journal_still_covers_after_a_trim() -> None:
    changes, _ = feed(5, trimmed=2)
    assert seqs(changes.changes(since=2, epoch=EPOCH)) == [3, 4, 5]
    assert seqs(changes.changes(limit=10)) == [3, 4, 5]  # the newest, as far back as kept


def test_a_hole_in_the_middle_requires_a_resync() -> None:
    changes, journal = feed(5)
    del journal.items[(EPOCH, 3)]
    assert changes.changes(since=1, epoch=EPOCH).resync_required is True
    assert seqs(changes.changes(limit=5)) == [4, 5]  # newest: a run without a gap


def test_events_are_the_websocket_messages_even_when_truncated() -> None:
    big = message(2, added=5_000)  # ~200 KB of ids: over the WebSocket limit
    journal = MemoryJournal([message(1), big])
    changes = ChangeFeed(journal, lambda: (2, EPOCH, 7))
    (event,) = changes.changes(since=1, epoch=EPOCH).events
    assert event["truncated"] is True and event == fit_to_wire(big)

    assert event == json.loads(encode_for_wire(big))  # what the fan-out sends, byte for byte decoded


def test_a_page_stops_at_the_byte_budget_with_has_more() -> None:
    one = wire_size(message(1, added=50))
    journal = MemoryJournal([message(seq, added=50) for seq in range(1, 11)])
    changes = ChangeFeed(journal, lambda: (10, EPOCH, 1), budget_bytes=int(one * 3.5))
    page = changes.changes(since=0, epoch=EPOCH, limit=10)
    assert seqs(page) == [1, 2, 3] and page.has_more is True
    assert seqs(changes.changes(since=3, epoch=EPOCH, limit=10)) == [4, 5, 6]
    assert seqs(changes.changes(limit=10)) == [8, 9, 10]  # newest: the oldest give way
    tiny = ChangeFeed(journal, lambda: (10, EPOCH, 1), budget_bytes=1)
    assert seqs(tiny.changes(since=0, epoch=EPOCH)) == [1]  # always at least one: the client moves on
    assert tiny.changes(since=0, epoch=EPOCH).has_more is True


def test_newest_for_the_atom_feed_is_newest_first() -> None:
    changes, _ = feed(60)
    newest = changes.newest(EPOCH, 60, 50)
    assert [event["seq"] for event in newest] == list(range(60, 10, -1))
