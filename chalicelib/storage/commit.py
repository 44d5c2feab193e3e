"""The one transaction that publishes a refresh run.

``CatalogCommit.write`` is a single ``TransactWriteItems`` of three named actions:

- ``fence``: the refresh lock's fencing check (the lease is still ours), storing the run's refresh state;
- ``manifest``: the catalog manifest flip, conditional on the revision the run started from;
- ``journal``: the run's event, conditional on its seq being new (a repair, which changes no content, has none).

Either all are written or none. A cancelled transaction is explained by the action that failed, named, not by its
position in the list. ``journaled_seq`` tells the engine where the journal of an epoch ends, so that it can start a
new epoch rather than reuse or collide with a seq (``chalicelib.core.epoch``); ``storage.catalog.new_epoch_id``
mints its id.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalicelib.core.manifest import Manifest
from chalicelib.errors import CatalogChanged, LockLost, SeqCollision
from chalicelib.storage.catalog import CatalogStore
from chalicelib.storage.dynamo import cancellation_reasons, error_code
from chalicelib.storage.journal import EventJournal
from chalicelib.storage.lock import Lease, LeaseLock

_CONDITION_FAILED = "ConditionalCheckFailed"
# Reasons (of the transaction, or of one of its actions) that mean "try again shortly".
_RETRYABLE = frozenset(
    {"TransactionConflictException", "ThrottlingException", "TransactionConflict", "ThrottlingError",
     "ProvisionedThroughputExceeded"}
)


class CatalogCommit:
    def __init__(
        self,
        dynamodb_client: Any,
        lock: LeaseLock,
        catalog: CatalogStore,
        journal: EventJournal,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 4,
    ):
        self._client = dynamodb_client
        self._lock = lock
        self._catalog = catalog
        self._journal = journal
        self._sleep = sleep
        self._attempts = attempts

    def journaled_seq(self, epoch: str) -> int | None:
        """The newest seq the journal holds for ``epoch`` (None: none)."""
        return self._journal.latest_seq(epoch)

    def actions(
        self,
        lease: Lease,
        state: bytes,
        manifest: Manifest,
        expected_revision: int,
        event: dict[str, Any] | None,
        repaired: frozenset[str] = frozenset(),
    ) -> dict[str, dict[str, Any]]:
        """The transaction's actions by name, in the order they are sent."""
        actions = {
            "fence": self._lock.fence_action(lease, state, repaired),
            "manifest": self._catalog.manifest_put_action(manifest, expected_revision),
        }
        if event is not None:
            actions["journal"] = self._journal.append_action(event)
        return actions

    def write(
        self,
        lease: Lease,
        state: bytes,
        manifest: Manifest,
        expected_revision: int,
        event: dict[str, Any] | None,
        repaired: frozenset[str] = frozenset(),
    ) -> None:
        """Write all or nothing. ``LockLost`` when the lease moved on, ``CatalogChanged`` when another run
        changed the catalog, ``SeqCollision`` when the journal already holds this seq; retries conflicts.
        ``event=None``: a repair (a manifest flip that changes no content), nothing is journaled. ``repaired``:
        providers to take off the lock's repair requests (``LeaseLock.request_repair``) with the flip."""
        actions = self.actions(lease, state, manifest, expected_revision, event, repaired)
        for attempt in range(self._attempts):
            try:
                self._client.transact_write_items(TransactItems=list(actions.values()))
                return
            except self._client.exceptions.TransactionCanceledException as error:
                reasons = dict(zip(actions, cancellation_reasons(error), strict=False))
                if reasons.get("fence") == _CONDITION_FAILED:
                    raise LockLost("the refresh lock was taken over; this run's changes were not written") from None
                if reasons.get("manifest") == _CONDITION_FAILED:
                    raise CatalogChanged("the catalog changed under this run; its changes were not written") from None
                if reasons.get("journal") == _CONDITION_FAILED and event is not None:
                    raise SeqCollision(event["epoch"], int(event["seq"])) from None
                if not _RETRYABLE & set(reasons.values()) or attempt == self._attempts - 1:
                    raise
            except self._client.exceptions.ClientError as error:
                if error_code(error) not in _RETRYABLE or attempt == self._attempts - 1:
                    raise
            self._sleep(0.05 * 2**attempt)
