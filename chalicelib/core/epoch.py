"""Event cursors: which ``(epoch, seq)`` the next event gets, decided without I/O.

Within an epoch, ``seq`` grows by exactly one per event, and the journal holds every event the manifest's ``seq``
counts: the journal's newest seq *is* the manifest's seq. When the two disagree, one of the tables was restored
from a backup (point-in-time recovery) or lost items, and continuing the epoch would be wrong either way:

- the journal is *ahead* (the catalog table was restored): the next seq is already journaled (the commit would be
  refused every time), or, if TTL removed it, it would be reused with other content than clients already saw;
- the journal is *behind* (the events table was restored): the epoch's history has a hole that replay cannot fill.

So the next event starts a **new epoch** at ``seq = 1``: every client resuming with the old epoch gets
``resync_required`` and refetches, and no ``(epoch, seq)`` ever names two different events.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cursor:
    """The position of one event: its epoch and its seq within it."""

    epoch: str
    seq: int


@dataclass(frozen=True)
class NextCursor:
    """Where the next event goes; ``rotated_because`` says why a new epoch starts (None: the epoch continues)."""

    cursor: Cursor
    rotated_because: str | None = None

    @property
    def rotated(self) -> bool:
        return self.rotated_because is not None


def next_cursor(epoch: str, manifest_seq: int, journal_seq: int | None, fresh_epoch: str) -> NextCursor:
    """The cursor of the next event, given the manifest's ``(epoch, seq)`` and the newest seq the journal holds for
    that epoch (``None``: none). ``fresh_epoch`` is the id a new epoch takes (the caller mints it)."""
    journaled = journal_seq or 0
    if journaled == manifest_seq:
        return NextCursor(Cursor(epoch, manifest_seq + 1))
    if journaled > manifest_seq:
        reason = (
            f"the journal of epoch {epoch} already holds seq {journaled}, past the catalog's seq {manifest_seq} "
            "(was the catalog table restored from a backup?)"
        )
    else:
        reason = (
            f"the journal of epoch {epoch} ends at seq {journaled}, before the catalog's seq {manifest_seq} "
            "(was the events table restored from a backup?)"
        )
    return NextCursor(Cursor(fresh_epoch, 1), reason)


def after_collision(epoch: str, seq: int, fresh_epoch: str) -> NextCursor:
    """The cursor to retry with when the commit found ``(epoch, seq)`` already journaled."""
    return NextCursor(
        Cursor(fresh_epoch, 1), f"seq {seq} of epoch {epoch} is already journaled (a table was restored?)"
    )
