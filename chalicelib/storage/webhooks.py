"""Webhook endpoints, their deliveries and attempts, in the webhooks table (docs/reference.md §9).

Items (key ``pk`` (S) + ``sk`` (S)):

- ``endpoint`` / ``<id>``: the endpoint (``url``, ``description``, ``provider_ids``, ``enabled``, ``created_at``,
  the position it was created at: ``created_epoch``/``created_seq``), its secret encrypted (``secret``, B, with the
  ``cipher`` that sealed it), its health (``failing_since``, ``last_error``, ``disabled_reason``) and its delivery
  counters (``succeeded``, ``failed``, ``pending``; ``attempts_since_trim`` for the attempt log's trim);
- ``delivery#<id>`` / ``<epoch>#<seq, 12 digits>``: one delivery record per (endpoint, event): ``state``
  (pending | succeeded | failed), ``attempts`` of this round, and while pending ``due_shard``/``due_at`` (ms; the sparse
  ``due`` index the tick reads; a sender's claim moves it to the end of the claim's lease) and ``claimed_by``;
  finished records expire by TTL (``expires_at``);
- ``attempts#<id>`` / ``<at ms, 13 digits>#<seq>#<attempt>``: the attempt log, newest last, trimmed by count;
- ``relay`` / ``<epoch>``: ``seq``, the highest event every delivery record (and EventBridge entry) was made for;
  ``relay#<epoch>`` / ``<seq>``: an event relayed ahead of the cursor (expires by TTL).

A delivery's record is written first and fences the rest (a conditional write on the sender's claim); then the
endpoint's counters and health, then the attempt log. Creating a pending record and counting it (``enqueue``,
``requeue``: the rare paths) is one transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from chalicelib.storage.dynamo import cancellation_reasons, from_item, query_items, to_item, values

ENDPOINT = "endpoint"
RELAY = "relay"
DUE_SHARD = "due"
DUE_INDEX = "due"
# Finished delivery records are kept this long (they make a re-published event a no-op), then TTL removes them.
DONE_TTL_S = 14 * 24 * 60 * 60
ATTEMPTS_KEPT = 200  # the API shows the newest 100; the log keeps between 200 and 200 + TRIM_EVERY
TRIM_EVERY = 100


def _delivery_pk(endpoint_id: str) -> str:
    return f"delivery#{endpoint_id}"


def _attempts_pk(endpoint_id: str) -> str:
    return f"attempts#{endpoint_id}"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def delivery_sk(epoch: str, seq: int) -> str:
    return f"{epoch}#{int(seq):012d}"


@dataclass(frozen=True)
class Delivery:
    """One delivery record, as claimed by a sender."""

    endpoint_id: str
    epoch: str
    seq: int
    attempts: int
    claimed_by: str

    @property
    def key(self) -> dict[str, Any]:
        return to_item({"pk": _delivery_pk(self.endpoint_id), "sk": delivery_sk(self.epoch, self.seq)})


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: ``state`` is the delivery's next state (``pending`` with ``due_at`` to retry)."""

    state: str
    status_code: int | None
    error: str | None
    due_at: float | None = None


class WebhookStore:
    def __init__(self, dynamodb_client: Any, table_name: str, clock: Callable[[], float] = time.time):
        self._client = dynamodb_client
        self._table = table_name
        self._clock = clock

    @property
    def table(self) -> str:
        return self._table

    # -- endpoints --------------------------------------------------------------------------------------------
    def create_endpoint(self, endpoint: dict[str, Any]) -> None:
        item = {"pk": ENDPOINT, "sk": endpoint["id"], "succeeded": 0, "failed": 0, "pending": 0,
                "attempts_since_trim": 0, **endpoint}
        self._client.put_item(
            TableName=self._table, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)"
        )

    def endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        item = self._client.get_item(
            TableName=self._table, Key=to_item({"pk": ENDPOINT, "sk": endpoint_id}), ConsistentRead=True
        ).get("Item")
        return from_item(item) if item else None

    def endpoints(self) -> list[dict[str, Any]]:
        """Every endpoint, oldest id first."""
        return [
            from_item(item)
            for item in self._query(
                KeyConditionExpression="pk = :pk", ExpressionAttributeValues=values(pk=ENDPOINT), ConsistentRead=True
            )
        ]

    def delete_endpoint(self, endpoint_id: str) -> bool:
        """Delete the endpoint, then (best effort: orphans are dropped when a sender meets them) its deliveries
        and attempt log. False when there was no such endpoint."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=to_item({"pk": ENDPOINT, "sk": endpoint_id}),
                ConditionExpression="attribute_exists(pk)",
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        for pk in (_delivery_pk(endpoint_id), _attempts_pk(endpoint_id)):
            self._delete_partition(pk)
        return True

    def disable(self, endpoint_id: str, reason: str) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_item({"pk": ENDPOINT, "sk": endpoint_id}),
                UpdateExpression="SET enabled = :false, disabled_reason = :reason",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=values(false=False, reason=reason),
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            pass  # deleted meanwhile

    # -- deliveries -------------------------------------------------------------------------------------------
    def enqueue(self, endpoint_id: str, epoch: str, seq: int) -> bool:
        """Create the delivery record of (endpoint, event), due now, counting it pending. False if it exists (the
        event was handed over before) or the endpoint is gone."""
        record: dict[str, Any] = {
            "pk": _delivery_pk(endpoint_id), "sk": delivery_sk(epoch, seq), "endpoint_id": endpoint_id,
            "epoch": epoch, "seq": int(seq), "state": "pending", "attempts": 0,
            "due_shard": DUE_SHARD, "due_at": _ms(self._clock()),
        }
        actions = [
            {"Put": {"TableName": self._table, "Item": to_item(record),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            self._count_action(endpoint_id, pending=1),
        ]
        try:
            self._client.transact_write_items(TransactItems=actions)
        except self._client.exceptions.TransactionCanceledException as error:
            if "ConditionalCheckFailed" in cancellation_reasons(error):
                return False
            raise
        return True

    def requeue(self, endpoint_id: str, epoch: str, seq: int) -> None:
        """Deliver (endpoint, event) again from the first attempt, due now (a replay)."""
        now = _ms(self._clock())
        key = to_item({"pk": _delivery_pk(endpoint_id), "sk": delivery_sk(epoch, seq)})
        reset = (
            "SET endpoint_id = :id, epoch = :epoch, seq = :seq, #state = :pending, attempts = :zero, "
            "due_shard = :shard, due_at = :now REMOVE expires_at, claimed_by"
        )
        names = {"#state": "state"}
        reset_values = values(id=endpoint_id, epoch=epoch, seq=int(seq), pending="pending", zero=0,
                              shard=DUE_SHARD, now=now)
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {"Update": {"TableName": self._table, "Key": key, "UpdateExpression": reset,
                                "ConditionExpression": "attribute_not_exists(pk) OR #state <> :pending",
                                "ExpressionAttributeNames": names, "ExpressionAttributeValues": reset_values}},
                    self._count_action(endpoint_id, pending=1),
                ]
            )
        except self._client.exceptions.TransactionCanceledException as error:
            reasons = cancellation_reasons(error)
            if reasons and reasons[0] == "ConditionalCheckFailed":
                # Already pending: start its round again, due now (the counters already count it).
                self._client.update_item(TableName=self._table, Key=key, UpdateExpression=reset,
                                         ExpressionAttributeNames=names, ExpressionAttributeValues=reset_values)
                return
            raise

    def due(self, limit: int = 500) -> list[tuple[str, str, int]]:
        """(endpoint id, epoch, seq) of pending deliveries due now, soonest first (eventually consistent: the
        claim re-checks)."""
        page = self._client.query(
            TableName=self._table,
            IndexName=DUE_INDEX,
            KeyConditionExpression="due_shard = :shard AND due_at <= :now",
            ExpressionAttributeValues=values(shard=DUE_SHARD, now=_ms(self._clock())),
            Limit=limit,
        )
        keys = []
        for item in page.get("Items", []):
            plain = from_item(item)
            endpoint_id = str(plain["pk"]).removeprefix("delivery#")
            epoch, _, seq = str(plain["sk"]).rpartition("#")
            keys.append((endpoint_id, epoch, int(seq)))
        return keys

    def claim(self, endpoint_id: str, epoch: str, seq: int, lease_s: float, claimer: str) -> Delivery | None:
        """Take a due, pending delivery for ``lease_s`` (None if it is not due, finished, or someone holds it).

        The claim moves ``due_at`` to the end of its lease: nobody else finds it due meanwhile, and if its sender
        dies, it is due again once the lease is over."""
        now = self._clock()
        try:
            item = self._client.update_item(
                TableName=self._table,
                Key=to_item({"pk": _delivery_pk(endpoint_id), "sk": delivery_sk(epoch, seq)}),
                UpdateExpression="SET due_at = :until, claimed_by = :me",
                ConditionExpression="#state = :pending AND due_at <= :now",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values(until=_ms(now + lease_s), me=claimer, pending="pending",
                                                 now=_ms(now)),
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except self._client.exceptions.ConditionalCheckFailedException:
            return None
        record = from_item(item)
        return Delivery(endpoint_id, epoch, int(seq), int(record.get("attempts", 0)), claimer)

    def finish(self, delivery: Delivery, outcome: Outcome, attempted: bool = True) -> bool:
        """Record one attempt's ``outcome`` on a claimed delivery (``attempted=False``: it was dropped without one):
        the record, the endpoint's counters and health, and the attempt log, all or nothing. False when the claim
        was lost (another sender took over) or the endpoint is gone (then the record is deleted)."""
        now = self._clock()
        attempt = delivery.attempts + (1 if attempted else 0)
        names = {"#state": "state"}
        if outcome.state == "pending":
            record_update = ("SET attempts = :attempt, last_status = :status, last_error = :error, due_at = :due "
                             "REMOVE claimed_by")
            record_values = values(attempt=attempt, due=_ms(outcome.due_at or now), me=delivery.claimed_by)
        else:
            record_update = ("SET #state = :state, attempts = :attempt, last_status = :status, last_error = :error, "
                             "expires_at = :expires REMOVE due_shard, due_at, claimed_by")
            record_values = values(state=outcome.state, attempt=attempt, expires=int(now + DONE_TTL_S),
                                   me=delivery.claimed_by)
        record_values.update(values(status=outcome.status_code, error=outcome.error))
        record = {"Update": {"TableName": self._table, "Key": delivery.key, "UpdateExpression": record_update,
                             "ConditionExpression": "claimed_by = :me", "ExpressionAttributeValues": record_values,
                             **({"ExpressionAttributeNames": names} if "#state" in record_update else {})}}
        return self._record(delivery, outcome, record, now, attempt if attempted else None, was_pending=True)

    def first_attempt(self, delivery: Delivery, outcome: Outcome) -> bool:
        """Create the delivery record of (endpoint, event) with the outcome of its first attempt, already sent (the
        relay sends first and writes after, so the first attempt waits for no write; a relay that dies in between
        leaves no record, and the tick's catch-up makes one, due now: at least once). False if the record existed
        (another relay of the same event) or the endpoint is gone."""
        now = self._clock()
        item: dict[str, Any] = {
            "pk": _delivery_pk(delivery.endpoint_id), "sk": delivery_sk(delivery.epoch, delivery.seq),
            "endpoint_id": delivery.endpoint_id, "epoch": delivery.epoch, "seq": delivery.seq,
            "state": outcome.state, "attempts": 1, "last_status": outcome.status_code, "last_error": outcome.error,
        }
        if outcome.state == "pending":
            item.update(due_shard=DUE_SHARD, due_at=_ms(outcome.due_at or now))
        else:
            item["expires_at"] = int(now + DONE_TTL_S)
        record = {"Put": {"TableName": self._table, "Item": to_item(item),
                          "ConditionExpression": "attribute_not_exists(pk)"}}
        return self._record(delivery, outcome, record, now, 1, was_pending=False)

    def _record(
        self, delivery: Delivery, outcome: Outcome, record: dict[str, Any], now: float, attempt: int | None,
        was_pending: bool,
    ) -> bool:
        """The record first (it is the fence: conditional on the claim, or on being new), then the endpoint's
        counters and health, then the attempt log. Three writes, not one transaction: on the hot path of every
        attempt a transaction costs twice the capacity (and the local stack's DynamoDB copies whole tables for
        each). A sender killed between them leaves a counter one off; the delivery itself is never lost."""
        (kind, request), = record.items()
        try:
            if kind == "Put":
                self._client.put_item(**request)
            else:
                self._client.update_item(**request)
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        health = self._health_action(delivery.endpoint_id, outcome, now, attempt is not None, was_pending)["Update"]
        try:
            self._client.update_item(**health)
        except self._client.exceptions.ConditionalCheckFailedException:
            self._client.delete_item(TableName=self._table, Key=delivery.key)  # the endpoint was deleted
            return False
        if attempt is not None:
            self._client.put_item(TableName=self._table, Item=to_item({
                "pk": _attempts_pk(delivery.endpoint_id),
                "sk": f"{int(now * 1000):013d}#{delivery.seq:012d}#{attempt:03d}#{uuid.uuid4().hex[:6]}",
                "epoch": delivery.epoch, "seq": delivery.seq, "attempt": attempt,
                "status_code": outcome.status_code, "error": outcome.error, "at_ms": int(now * 1000),
            }))
        return True

    def _health_action(
        self, endpoint_id: str, outcome: Outcome, now: float, attempted: bool, was_pending: bool = True
    ) -> dict[str, Any]:
        """The endpoint's side of a delivery's change: its counters (a delivery leaves ``pending`` when it succeeds
        or fails; a first attempt that is to be retried enters it) and health."""
        counts: dict[str, int] = {}
        if outcome.state == "succeeded":
            counts = {"succeeded": 1}
            update = "REMOVE failing_since, last_error"
        else:
            if outcome.state == "failed":
                counts = {"failed": 1}
            update = "SET last_error = :error, failing_since = if_not_exists(failing_since, :now)"
        if was_pending and outcome.state != "pending":
            counts["pending"] = -1
        if not was_pending and outcome.state == "pending":
            counts["pending"] = 1
        if attempted:
            counts["attempts_since_trim"] = 1
        adds = ", ".join(f"{name} :{name}" for name in counts)
        expression = f"{update} ADD {adds}" if adds else update
        expression_values = values(**counts)
        if outcome.state != "succeeded":
            expression_values.update(values(error=outcome.error or "", now=int(now)))
        return {"Update": {"TableName": self._table, "Key": to_item({"pk": ENDPOINT, "sk": endpoint_id}),
                           "UpdateExpression": expression, "ConditionExpression": "attribute_exists(pk)",
                           **({"ExpressionAttributeValues": expression_values} if expression_values else {})}}

    def _count_action(self, endpoint_id: str, **counts: int) -> dict[str, Any]:
        return {"Update": {"TableName": self._table, "Key": to_item({"pk": ENDPOINT, "sk": endpoint_id}),
                           "UpdateExpression": "ADD " + ", ".join(f"{name} :{name}" for name in counts),
                           "ConditionExpression": "attribute_exists(pk)",
                           "ExpressionAttributeValues": values(**counts)}}

    # -- the attempt log --------------------------------------------------------------------------------------
    def attempts(self, endpoint_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` attempts, newest first."""
        page = self._client.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=values(pk=_attempts_pk(endpoint_id)),
            ScanIndexForward=False,
            Limit=limit,
            ConsistentRead=True,
        )
        return [from_item(item) for item in page.get("Items", [])]

    def trim_attempts(self, endpoint: dict[str, Any], keep: int = ATTEMPTS_KEPT) -> int:
        """Once ``TRIM_EVERY`` attempts were logged since the last trim, delete all but the newest ``keep``."""
        since = int(endpoint.get("attempts_since_trim") or 0)
        if since < TRIM_EVERY:
            return 0
        endpoint_id = endpoint["id"]
        keys = [
            {"pk": item["pk"], "sk": item["sk"]}
            for index, item in enumerate(self._query(
                KeyConditionExpression="pk = :pk", ExpressionAttributeValues=values(pk=_attempts_pk(endpoint_id)),
                ScanIndexForward=False, ProjectionExpression="pk, sk",
            ))
            if index >= keep
        ]
        self._delete_keys(keys)
        self._client.update_item(
            TableName=self._table, Key=to_item({"pk": ENDPOINT, "sk": endpoint_id}),
            UpdateExpression="ADD attempts_since_trim :done", ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=values(done=-since),
        )
        return len(keys)

    # -- the relay cursor -------------------------------------------------------------------------------------
    def relayed(self, epoch: str) -> int | None:
        """The seq up to which every event of ``epoch`` was handed to the channels (None: never started)."""
        item = self._client.get_item(
            TableName=self._table, Key=to_item({"pk": RELAY, "sk": epoch}), ConsistentRead=True
        ).get("Item")
        return int(from_item(item)["seq"]) if item else None

    def start_relay(self, epoch: str, seq: int) -> None:
        """Start the cursor of ``epoch`` at ``seq`` unless it exists."""
        try:
            self._client.put_item(
                TableName=self._table, Item=to_item({"pk": RELAY, "sk": epoch, "seq": int(seq)}),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            pass

    def advance_relay(self, epoch: str, from_seq: int, to_seq: int) -> bool:
        """Move the cursor from ``from_seq`` to ``to_seq``; False when it is not at ``from_seq`` (so it only ever
        passes events that were relayed: a gap stays for the tick to fill)."""
        try:
            self._client.update_item(
                TableName=self._table, Key=to_item({"pk": RELAY, "sk": epoch}),
                UpdateExpression="SET seq = :to", ConditionExpression="seq = :from",
                ExpressionAttributeValues=values(to=int(to_seq), **{"from": int(from_seq)}),
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def mark_relayed(self, epoch: str, seq: int) -> None:
        """Note that event ``seq`` was relayed though the cursor could not pass it yet (an earlier event's relay was
        still running): the catch-up then skips it instead of relaying it again."""
        self._client.put_item(TableName=self._table, Item=to_item({
            "pk": f"{RELAY}#{epoch}", "sk": f"{int(seq):012d}", "expires_at": int(self._clock() + DONE_TTL_S),
        }))

    def marked_relayed(self, epoch: str, after: int, until: int) -> set[int]:
        """The seqs in ``(after, until]`` that ``mark_relayed`` noted."""
        return {
            int(from_item(item)["sk"])
            for item in self._query(
                KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                ExpressionAttributeValues=values(pk=f"{RELAY}#{epoch}", low=f"{after + 1:012d}", high=f"{until:012d}"),
                ConsistentRead=True,
            )
        }

    # -- helpers ----------------------------------------------------------------------------------------------
    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return query_items(self._client, {"TableName": self._table, **kwargs})

    def _delete_partition(self, pk: str) -> None:
        keys = [{"pk": item["pk"], "sk": item["sk"]} for item in self._query(
            KeyConditionExpression="pk = :pk", ExpressionAttributeValues=values(pk=pk), ProjectionExpression="pk, sk"
        )]
        self._delete_keys(keys)

    def _delete_keys(self, keys: list[dict[str, Any]]) -> None:
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
            pending = {self._table: requests}
            for _ in range(5):
                unprocessed = self._client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not unprocessed:
                    break
                pending = unprocessed
                time.sleep(0.05)
