"""A DynamoDB lease lock with a fencing token, serializing refresh runs.

Acquire is one conditional write: the lock is free, or its lease has expired (checked by DynamoDB
against the caller's clock in the same atomic condition). Every acquire increments ``token``; every
catalog write carries a condition that the token is still ours (``fence_action``), so a holder paused
past its lease can never write after someone else took over. The lock item also carries the refresh
state (provider statuses, last run, schedule bookkeeping): it is written by the holder only.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import codec
from chalicelib.errors import RefreshInProgress
from chalicelib.logs import get_logger

log = get_logger("lock")

REFRESH_LOCK = "refresh#catalog"
_TRANSACTION_CONFLICT = "TransactionConflictException"


@dataclass(frozen=True)
class Lease:
    name: str
    owner: str
    token: int
    expires_at_ms: int
    state: dict[str, Any]


@dataclass(frozen=True)
class LockInfo:
    owner: str | None
    token: int
    expires_at_ms: int
    state: dict[str, Any]


def new_owner_id() -> str:
    return uuid.uuid4().hex


def _is_conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


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

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def read(self) -> LockInfo:
        item = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": self._name}}, ConsistentRead=True
        ).get("Item")
        return _lock_info(item)

    def try_acquire(self, owner: str, lease_ms: int) -> Lease | None:
        now = self._now_ms()
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": self._name}},
            "UpdateExpression": "SET #owner = :owner, lease_until = :until, acquired_at = :now ADD #token :one",
            "ExpressionAttributeNames": {"#owner": "owner", "#token": "token"},
            "ExpressionAttributeValues": {
                ":owner": {"S": owner},
                ":until": {"N": str(now + lease_ms)},
                ":now": {"N": str(now)},
                ":one": {"N": "1"},
            },
            "ReturnValues": "ALL_NEW",
        }
        if self._conditional:
            # "#owner = :owner": a retry of our own acquire whose response was lost (a 500 or a dropped
            # connection after DynamoDB applied it) gets the lock instead of waiting out its own lease.
            request["ConditionExpression"] = "attribute_not_exists(#owner) OR lease_until < :now OR #owner = :owner"
        try:
            item = self._client.update_item(**request)["Attributes"]
        except ClientError as error:
            # TransactionConflictException: the holder is committing (its transaction fences this item): busy.
            if _is_conditional_failure(error) or error.response.get("Error", {}).get("Code") == _TRANSACTION_CONFLICT:
                return None
            raise
        info = _lock_info(item)
        return Lease(self._name, owner, info.token, now + lease_ms, info.state)

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

    def fence_action(self, lease: Lease, state: dict[str, Any]) -> dict[str, Any]:
        """A TransactWriteItems action that fails the transaction unless ``lease`` is still current.

        It also stores the run's refresh state, so statuses commit atomically with the catalog change.
        """
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": self._name}},
                "UpdateExpression": "SET #state = :state",
                "ConditionExpression": "#owner = :owner AND #token = :token",
                "ExpressionAttributeNames": {"#state": "state", "#owner": "owner", "#token": "token"},
                "ExpressionAttributeValues": {
                    ":state": {"B": codec.pack(state)},
                    ":owner": {"S": lease.owner},
                    ":token": {"N": str(lease.token)},
                },
            }
        }

    def release(self, lease: Lease, state: dict[str, Any] | None = None) -> bool:
        """Free the lock (and store ``state``) if we still hold it. False when the lease was lost."""
        names = {"#owner": "owner", "#token": "token"}
        values: dict[str, Any] = {":owner": {"S": lease.owner}, ":token": {"N": str(lease.token)}, ":zero": {"N": "0"}}
        update = "REMOVE #owner SET lease_until = :zero"
        if state is not None:
            update += ", #state = :state"
            names["#state"] = "state"
            values[":state"] = {"B": codec.pack(state)}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": self._name}},
                UpdateExpression=update,
                ConditionExpression="#owner = :owner AND #token = :token",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            return True
        except ClientError as error:
            if _is_conditional_failure(error):
                log.warning("lease lost before release", extra={"lock": self._name, "token": lease.token})
                return False
            raise

    def write_state(self, state: dict[str, Any], seen: LockInfo) -> bool:
        """Store state without taking the lock (schedule bookkeeping on an idle tick).

        Only when the lock was free when ``seen`` was read and nobody acquired it since: every acquire
        bumps the token, so an unchanged token means no holder wrote state in between.
        """
        if seen.owner is not None:
            return False
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": self._name}},
                UpdateExpression="SET #state = :state",
                ConditionExpression="attribute_not_exists(#owner) AND "
                + ("#token = :token" if seen.token else "attribute_not_exists(#token)"),
                ExpressionAttributeNames={"#state": "state", "#owner": "owner", "#token": "token"},
                ExpressionAttributeValues={":state": {"B": codec.pack(state)}}
                | ({":token": {"N": str(seen.token)}} if seen.token else {}),
            )
            return True
        except ClientError as error:
            if _is_conditional_failure(error):
                return False
            raise


def _lock_info(item: dict[str, Any] | None) -> LockInfo:
    if not item:
        return LockInfo(owner=None, token=0, expires_at_ms=0, state={})
    state = codec.unpack(item["state"]["B"]) if "state" in item else {}
    return LockInfo(
        owner=item.get("owner", {}).get("S"),
        token=int(item.get("token", {}).get("N", "0")),
        expires_at_ms=int(item.get("lease_until", {}).get("N", "0")),
        state=state,
    )
