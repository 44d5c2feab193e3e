"""A fix to moto's DynamoDB for the embedded server: one backup per table per transaction.

moto's ``transact_write_items`` deep-copies a table (its backup, restored if an action fails) once for *every action*
naming it, before running any: a fenced garbage collection of 99 chunk deletes copied the whole catalog table 100
times (≈ 1 s at 50,000 models). Every copy is of the same, unchanged table, so one per table is the same backup.
Applied by ``devstack.dynamodb`` to the process that serves it; it changes nothing moto answers.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

_applied = False
_lock = threading.Lock()


class _OneCopyPerTransaction:
    """Stands in for the ``copy`` module inside moto's DynamoDB models: during a transaction, ``deepcopy`` of a table
    already copied returns that copy (tables live in the backend throughout; nothing else is memoized)."""

    def __init__(self, table_type: type) -> None:
        self._local = threading.local()
        self._table_type = table_type

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        copies: dict[int, Any] | None = getattr(self._local, "copies", None)
        if copies is None or not isinstance(value, self._table_type):
            return copy.deepcopy(value, memo)
        if id(value) not in copies:
            copies[id(value)] = copy.deepcopy(value, memo)
        return copies[id(value)]

    def transaction(self, run: Any) -> Any:
        self._local.copies = {}
        try:
            return run()
        finally:
            self._local.copies = None


def one_backup_per_table() -> None:
    """Patch moto's ``DynamoDBBackend.transact_write_items`` (once per process)."""
    global _applied
    with _lock:
        if _applied:
            return
        import moto.dynamodb.models as models

        copies = _OneCopyPerTransaction(models.Table)
        original = models.DynamoDBBackend.transact_write_items

        def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
            return copies.transaction(lambda: original(self, transact_items))

        models.copy = copies  # type: ignore[attr-defined]
        models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        _applied = True
