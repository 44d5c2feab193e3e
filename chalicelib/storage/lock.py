"""A DynamoDB lease lock with a fencing token, serializing refresh runs.

Acquire is one conditional write: the lock is free, or its lease has expired (checked by DynamoDB against the
caller's clock in the same atomic condition). Every acquire increments ``token``; every catalog write carries a
condition that the token is still ours (``fence_action``), so a holder paused past its lease can never write after
someone else took over. The lock item also carries an opaque ``state`` blob, written by the holder only (the typed
refresh state of ``chalicelib.storage.state``): that is what makes the state commit atomically with the catalog.

It also carries ``repairs``, a string set of provider ids whose stored lists a reader found broken: readers add to it
(``request_repair``, no lock needed), the next run gets it with its lease and removes what it repaired or found
intact in its commit or release.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import RefreshInProgress
from chalicelib.logs import get_logger
from chalicelib.storage.dynamo import from_item, values

log = get_logger("lock")

REFRESH_LOCK = "refresh#catalog"
_NAMES = {"#owner": "owner", "#token": "token", "#state": "state"}
_REPAIRS = "repairs"


@dataclass(frozen=True)
class LockInfo:
    """The lock as read: its holder (None when free), its fencing token, lease end and the state blob."""

    owner: str | None
    token: int
    expires_at_ms: int
    state: bytes | None
    repairs: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Lease:
    """A held lock: ``token`` fences every write made under it; ``repairs``: the providers readers asked to repair."""

    name: str
    owner: str
    token: int
    expires_at_ms: int
    state: bytes | None
    repairs: frozenset[str] = frozenset()


def new_owner_id() -> str:
    return uuid.uuid4().hex


class LeaseLock:
    """``conditional=False`` removes the acquire condition: only for the negative-control test."""

    def __init__(
        self,
        dynamodb_client: Any,
        table_name: str,
        name: str = REFRESH_LOCK,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        conditional: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._client = dynamodb_client
        self._table = table_name
        self._name = name
        self._clock = clock
        self._sleep = sleep
        self._conditional = conditional
        self._monotonic = monotonic  # bounds the wait; ``clock`` stamps leases (wall time, shared)

    @property
    def table(self) -> str:
        return self._table

    def _key(self) -> dict[str, Any]:
        return {"pk": {"S": self._name}}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def read(self) -> LockInfo:
        item = self._client.get_item(TableName=self._table, Key=self._key(), ConsistentRead=True).get("Item")
        return _lock_info(item)

    def try_acquire(self, owner: str, lease_ms: int) -> Lease | None:
        now = self._now_ms()
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._key(),
            "UpdateExpression": "SET #owner = :owner, lease_until = :until, acquired_at = :now ADD #token :one",
            "ExpressionAttributeNames": {"#owner": "owner", "#token": "token"},
            "ExpressionAttributeValues": values(owner=owner, until=now + lease_ms, now=now, one=1),
            "ReturnValues": "ALL_NEW",
        }
        if self._conditional:
            # "#owner = :owner": a retry of our own acquire whose response was lost (a 500 or a dropped
            # connection after DynamoDB applied it) gets the lock instead of waiting out its own lease.
            request["ConditionExpression"] = "attribute_not_exists(#owner) OR lease_until < :now OR #owner = :owner"
        exceptions = self._client.exceptions
        try:
            item = self._client.update_item(**request)["Attributes"]
        except (exceptions.ConditionalCheckFailedException, exceptions.TransactionConflictException):
            # TransactionConflict: the holder is committing (its transaction fences this item): busy.
            return None
        info = _lock_info(item)
        return Lease(self._name, owner, info.token, now + lease_ms, info.state, info.repairs)

    def acquire(self, owner: str, lease_ms: int, wait_ms: int) -> Lease:
        """Acquire, waiting up to ``wait_ms`` for a running holder; else ``RefreshInProgress``."""
        give_up_at = self._monotonic() + wait_ms / 1000
        delay = 0.05
        while True:
            lease = self.try_acquire(owner, lease_ms)
            if lease is not None:
                return lease
            remaining = give_up_at - self._monotonic()
            if remaining <= 0:
                holder = self.read()
                retry_after = max(1, int((holder.expires_at_ms - self._now_ms()) / 1000) + 1) if holder.owner else 1
                raise RefreshInProgress(min(retry_after, 60))
            self._sleep(min(remaining, delay * (0.5 + random.random())))
            delay = min(delay * 2, 1.0)

    def fence_action(self, lease: Lease, state: bytes, repaired: frozenset[str] = frozenset()) -> dict[str, Any]:
        """A TransactWriteItems action that fails the transaction unless ``lease`` is still current; it stores
        ``state`` too, so the refresh state commits atomically with the catalog change, and takes the ``repaired``
        providers off the repair requests."""
        update, names, named = "SET #state = :state", dict(_NAMES), {"state": state}
        if repaired:
            update += " DELETE #repairs :repaired"
            names["#repairs"] = _REPAIRS
            named["repaired"] = set(repaired)
        return {
            "Update": {
                "TableName": self._table,
                "Key": self._key(),
                "UpdateExpression": update,
                "ConditionExpression": "#owner = :owner AND #token = :token",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values(**named, owner=lease.owner, token=lease.token),
            }
        }

    def fence_check_action(self, lease: Lease) -> dict[str, Any]:
        """A TransactWriteItems ``ConditionCheck`` that fails the transaction unless ``lease`` is still current,
        writing nothing to the lock (fences the deletes of garbage collection)."""
        return {
            "ConditionCheck": {
                "TableName": self._table,
                "Key": self._key(),
                "ConditionExpression": "#owner = :owner AND #token = :token",
                "ExpressionAttributeNames": {"#owner": "owner", "#token": "token"},
                "ExpressionAttributeValues": values(owner=lease.owner, token=lease.token),
            }
        }

    def release(self, lease: Lease, state: bytes | None = None, repaired: frozenset[str] = frozenset()) -> bool:
        """Free the lock (and store ``state``, and take the ``repaired`` providers off the repair requests) if we
        still hold it. False when the lease was lost."""
        update = "REMOVE #owner SET lease_until = :zero"
        names = {"#owner": "owner", "#token": "token"}
        named: dict[str, Any] = {"owner": lease.owner, "token": lease.token, "zero": 0}
        if state is not None:
            update += ", #state = :state"
            names["#state"] = "state"
            named["state"] = state
        if repaired:
            update += " DELETE #repairs :repaired"
            names["#repairs"] = _REPAIRS
            named["repaired"] = set(repaired)
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(),
                UpdateExpression=update,
                ConditionExpression="#owner = :owner AND #token = :token",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values(**named),
            )
            return True
        except self._client.exceptions.ConditionalCheckFailedException:
            log.warning("lease lost before release", extra={"lock": self._name, "token": lease.token})
            return False

    def request_repair(self, provider_ids: frozenset[str]) -> None:
        """Ask the next run to repair these providers' stored lists (no lock needed: a set only grows here)."""
        if provider_ids:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(),
                UpdateExpression="ADD #repairs :ids",
                ExpressionAttributeNames={"#repairs": _REPAIRS},
                ExpressionAttributeValues=values(ids=set(provider_ids)),
            )

    def write_state(self, state: bytes, seen: LockInfo) -> bool:
        """Store ``state`` without taking the lock (schedule bookkeeping on an idle tick).

        Only when the lock was free when ``seen`` was read and nobody acquired it since: every acquire bumps the
        token, so an unchanged token means no holder wrote state in between.
        """
        if seen.owner is not None:
            return False
        named: dict[str, Any] = {"state": state}
        if seen.token:
            named["token"] = seen.token
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(),
                UpdateExpression="SET #state = :state",
                ConditionExpression="attribute_not_exists(#owner) AND "
                + ("#token = :token" if seen.token else "attribute_not_exists(#token)"),
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues=values(**named),
            )
            return True
        except self._client.exceptions.ConditionalCheckFailedException:
            return False


def _lock_info(item: dict[str, Any] | None) -> LockInfo:
    fields = from_item(item)
    return LockInfo(
        owner=fields.get("owner"),
        token=int(fields.get("token", 0)),
        expires_at_ms=int(fields.get("lease_until", 0)),
        state=fields.get("state"),
        repairs=frozenset(fields.get(_REPAIRS) or ()),
    )
