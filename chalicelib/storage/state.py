"""The typed refresh state (``chalicelib.core.state.RefreshState``), kept on the refresh lock's item.

Keeping it there is what lets a run store its provider statuses in the same transaction as the catalog change it
describes (the fence action writes it). The stored form is compressed JSON; the last run's result is shrunk
(``chalicelib.core.results``) so the item stays far below DynamoDB's 400 KB whatever the run's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from chalicelib.core.results import fit_result
from chalicelib.core.state import RefreshState
from chalicelib.storage import codec
from chalicelib.storage.lock import LeaseLock, LockInfo

# The last run's result as stored (compressed): a huge run keeps its counts, not every id.
LAST_RUN_MAX_PACKED_BYTES = 100_000


def decode_state(blob: bytes | None) -> RefreshState:
    return RefreshState.from_json(codec.unpack(blob) if blob else None)


def encode_state(state: RefreshState) -> bytes:
    if state.last_run is not None:
        fitted = fit_result(state.last_run, _fits_packed)
        if fitted is not state.last_run:
            state = replace(state, last_run=fitted)
    return codec.pack(state.to_json())


def _fits_packed(result: Mapping[str, Any]) -> bool:
    return len(codec.pack(result)) <= LAST_RUN_MAX_PACKED_BYTES


class RefreshStateStore:
    """Reads and writes the refresh state through the lock (``LeaseLock``) that guards it."""

    def __init__(self, lock: LeaseLock):
        self._lock = lock

    def read(self) -> RefreshState:
        return decode_state(self._lock.read().state)

    def read_with_lock(self) -> tuple[RefreshState, LockInfo]:
        """The state and the lock as seen together (for ``save_idle``)."""
        info = self._lock.read()
        return decode_state(info.state), info

    def request_repair(self, provider_ids: frozenset[str]) -> None:
        """Ask the next refresh to write these providers' stored lists again (a reader found them broken)."""
        self._lock.request_repair(provider_ids)

    def save_idle(self, state: RefreshState, seen: LockInfo) -> bool:
        """Store ``state`` without holding the lock, unless a run took it since ``seen`` (see ``LeaseLock``)."""
        return self._lock.write_state(encode_state(state), seen)
