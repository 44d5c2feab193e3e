"""Before the local stack serves: a state that may be older than what was served starts a new event epoch.

A client that saw event ``(epoch, seq)`` resumes with ``since = seq``. If the stack came back with an older
state under the same epoch, it would tell that client nothing is missing and then publish the next change
under the same ``(epoch, seq)`` with other content. So the stack starts a new epoch (resuming clients get
``resync_required``, docs/reference.md §3.5) whenever it cannot prove its state is what it served:

- the embedded DynamoDB reports ``restored.clean = false``: no clean-shutdown marker naming the snapshot on
  disk (``kill -9``, power loss, a snapshot copied in from elsewhere) or a damaged write-ahead log;
- the journal and the manifest disagree: the newest journaled seq of the manifest's epoch is not the
  manifest's seq (they are committed together, so only a restore of one table without the other does that).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.core.manifest import Manifest
from chalicelib.logs import get_logger
from chalicelib.settings import TableNames
from chalicelib.storage.catalog import CatalogStore
from chalicelib.storage.journal import EventJournal

log = get_logger("local.recovery")


def stale_state_reason(
    restored: Mapping[str, Any] | None, manifest: Manifest, journal_latest: int | None
) -> str | None:
    """Why the state may be older than what was served, or None when it is proven current."""
    if restored is not None and not restored.get("clean", True):
        return str(restored.get("reason") or "the embedded DynamoDB did not stop cleanly")
    latest = journal_latest or 0
    if latest != manifest.seq:
        return (
            f"the event journal ends at seq {latest} of epoch {manifest.epoch} but the manifest is at seq "
            f"{manifest.seq}: one of them was restored without the other"
        )
    return None


def ensure_unused_cursor(
    client: Any, tables: TableNames, restored: Mapping[str, Any] | None, rotate: bool = True
) -> str | None:
    """Start a new epoch if the state may be older than what was served; returns the reason, or None.

    ``rotate=False`` is a negative control for tests only: the reason is logged and nothing is changed.
    """
    catalog = CatalogStore(client, tables.catalog)
    manifest = catalog.read_manifest()
    reason = stale_state_reason(restored, manifest, EventJournal(client, tables.events).latest_seq(manifest.epoch))
    if reason is None:
        return None
    if not rotate:
        log.warning("the state may be older than what was served, but the epoch is kept (test-only control)",
                    extra={"reason": reason, "epoch": manifest.epoch})
        return reason
    catalog.start_new_epoch(reason)
    return reason
