"""The event journal in DynamoDB: an outbox written in the catalog commit, read for replay and repair.

Every catalog change is committed together with one journal item (``append_action`` is part of the commit's
TransactWriteItems), so an event exists if and only if its change does. Delivery happens after the commit and is
best effort; the journal is the source of truth: a client that missed a push resumes with ``since=<last seq>`` and
gets the events replayed, and the scheduled tick re-delivers events whose publisher crashed (``unpublished``,
``claim``, ``mark_published``). ``trim`` lets DynamoDB's TTL remove events outside the kept window.

Item (events table, key ``epoch`` (S, HASH) + ``seq`` (N, RANGE)): ``epoch``, ``seq``, ``timestamp`` (ISO-8601
UTC), ``body`` (B: ``codec.pack`` of the full client message), ``published`` (BOOL), optional ``claimed_until`` (N,
epoch seconds: a publisher is delivering it), ``claimed_by`` and ``expires_at`` (N, TTL).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.events import fit_message
from chalicelib.logs import get_logger
from chalicelib.storage import codec
from chalicelib.storage.dynamo import from_item, query_items, to_item, values

log = get_logger("events")

# DynamoDB items are capped at 400 KB; keep the packed body well under it (key and attributes need room).
MAX_JOURNAL_BODY_BYTES = 350_000
DEFAULT_KEEP = 1_000
# Once outside the kept window an event may still be read for a while (a replay in flight).
TRIM_GRACE_S = 3_600
# How long a publisher owns an event before the tick may deliver it again (it crashed, or timed out).
DEFAULT_CLAIM_LEASE_S = 120


def packed_size(message: Mapping[str, Any]) -> int:
    return len(codec.pack(message))


def _key(epoch: str, seq: int) -> dict[str, Any]:
    return to_item({"epoch": epoch, "seq": seq})


def _seq(item: dict[str, Any]) -> int:
    return int(from_item({"seq": item["seq"]})["seq"])


def _message_of(item: dict[str, Any]) -> dict[str, Any]:
    return codec.unpack(from_item({"body": item["body"]})["body"])


class EventJournal:
    """Reads and maintains the journal. New events are written by the catalog commit (``append_action``)."""

    def __init__(self, dynamodb_client: Any, table_name: str, clock: Callable[[], float] = time.time):
        self._client = dynamodb_client
        self._table = table_name
        self._clock = clock

    @property
    def table(self) -> str:
        return self._table

    def append_action(self, message: dict[str, Any]) -> dict[str, Any]:
        """A TransactWriteItems ``Put`` that journals ``message``. It fails the whole transaction if the seq exists,
        so a seq can never be written twice (two writers would both lose, never both win)."""
        stored = fit_message(message, MAX_JOURNAL_BODY_BYTES, size=packed_size)
        return {
            "Put": {
                "TableName": self._table,
                "Item": to_item(
                    {
                        "epoch": str(message["epoch"]),
                        "seq": int(message["seq"]),
                        "timestamp": str(message["timestamp"]),
                        "body": codec.pack(stored),
                        "published": False,
                    }
                ),
                "ConditionExpression": "attribute_not_exists(#seq)",
                "ExpressionAttributeNames": {"#seq": "seq"},
            }
        }

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return query_items(self._client, {"TableName": self._table, "ConsistentRead": True, **kwargs})

    def latest_seq(self, epoch: str) -> int | None:
        """The highest seq journaled in ``epoch`` (None when the journal has nothing for it)."""
        page = self._client.query(
            TableName=self._table,
            ConsistentRead=True,
            KeyConditionExpression="#epoch = :epoch",
            ExpressionAttributeNames={"#epoch": "epoch", "#seq": "seq"},
            ExpressionAttributeValues=values(epoch=epoch),
            ProjectionExpression="#seq",
            ScanIndexForward=False,
            Limit=1,
        )
        items = page.get("Items", [])
        return _seq(items[0]) if items else None

    def replay(
        self, epoch: str, since: int, until: int | None = None, max_events: int = DEFAULT_KEEP
    ) -> list[dict[str, Any]] | None:
        """The messages with ``since < seq <= until`` (``until`` defaults to the latest journaled seq), in order.

        None when the journal cannot give exactly that run: an unknown epoch, a trimmed (or TTL-holed) range,
        or more than ``max_events`` to send (refetching is cheaper then). The caller answers resync_required.
        """
        if until is None:
            until = self.latest_seq(epoch)
            if until is None:
                return None
        if since < 0:
            return None
        if until <= since:
            return []
        if until - since > max_events:
            return None
        messages: list[dict[str, Any]] = []
        expected = since + 1
        for item in self._query(
            KeyConditionExpression="#epoch = :epoch AND #seq BETWEEN :low AND :high",
            ExpressionAttributeNames={"#epoch": "epoch", "#seq": "seq"},
            ExpressionAttributeValues=values(epoch=epoch, low=since + 1, high=until),
        ):
            if _seq(item) != expected:
                return None  # the oldest kept seq is past since+1, or TTL removed one in the middle
            messages.append(_message_of(item))
            expected += 1
        if expected != until + 1:
            return None  # the newest ones are not there (should not happen: they are committed with the change)
        return messages

    def read(
        self, epoch: str, low: int, high: int, newest_first: bool = False, page_size: int | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(seq, message)`` of the journaled events of ``epoch`` with ``low <= seq <= high``, in seq order (or
        newest first), read page by page as the caller goes: a caller that stops early reads no further pages. Gaps
        (trimmed events) are the caller's to notice; ``page_size`` bounds the items of one Query page."""
        if high < low:
            return
        request: dict[str, Any] = {
            "KeyConditionExpression": "#epoch = :epoch AND #seq BETWEEN :low AND :high",
            "ExpressionAttributeNames": {"#epoch": "epoch", "#seq": "seq"},
            "ExpressionAttributeValues": values(epoch=epoch, low=low, high=high),
            "ScanIndexForward": not newest_first,
        }
        if page_size is not None:
            request["Limit"] = page_size
        for item in self._query(**request):
            yield _seq(item), _message_of(item)

    def unpublished(self, epoch: str, limit: int = 20) -> list[dict[str, Any]]:
        """Events among the newest ``limit`` that no publisher finished broadcasting, oldest first."""
        page = self._client.query(
            TableName=self._table,
            ConsistentRead=True,
            KeyConditionExpression="#epoch = :epoch",
            ExpressionAttributeNames={"#epoch": "epoch"},
            ExpressionAttributeValues=values(epoch=epoch),
            ScanIndexForward=False,
            Limit=limit,
        )
        pending = [item for item in page.get("Items", []) if not item.get("published", {}).get("BOOL", False)]
        return [_message_of(item) for item in reversed(pending)]

    def claim(self, epoch: str, seq: int, lease_s: float = DEFAULT_CLAIM_LEASE_S, claimer: str | None = None) -> bool:
        """Take the right to broadcast an unpublished event for ``lease_s`` seconds; False if it is published
        or another publisher holds a live claim (so a tick and a committer never broadcast it together).

        The claim names its claimer (one id per publish attempt), so botocore's retry of our own claim whose
        response was lost still succeeds instead of finding "someone else's" live claim."""
        now = self._clock()
        claimer = claimer or uuid.uuid4().hex
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(epoch, seq),
                UpdateExpression="SET #claimed = :until, #claimer = :me",
                ConditionExpression=(
                    "attribute_exists(#seq) AND #published = :false"
                    " AND (attribute_not_exists(#claimed) OR #claimed < :now OR #claimer = :me)"
                ),
                ExpressionAttributeNames={
                    "#seq": "seq", "#published": "published", "#claimed": "claimed_until", "#claimer": "claimed_by",
                },
                ExpressionAttributeValues=values(until=int(now + lease_s), false=False, now=int(now), me=claimer),
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def mark_published(self, epoch: str, seq: int) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(epoch, seq),
                UpdateExpression="SET #published = :true REMOVE #claimed",
                ConditionExpression="attribute_exists(#seq)",
                ExpressionAttributeNames={"#seq": "seq", "#published": "published", "#claimed": "claimed_until"},
                ExpressionAttributeValues=values(true=True),
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            pass  # already trimmed away: nothing left to mark

    def trim(self, epoch: str, latest_seq: int, keep: int = DEFAULT_KEEP, sweep: int = 10) -> int:
        """Best effort: give ``expires_at`` to the events just outside the newest ``keep`` so the journal keeps
        at least the last ``keep`` and TTL removes the rest. Each call looks at ``sweep`` events below the
        window, so a trim that was skipped (a crash) is caught up by the next ones. Returns how many it marked."""
        boundary = latest_seq - keep
        if boundary < 1:
            return 0
        expires_at = int(self._clock() + TRIM_GRACE_S)
        marked = 0
        try:
            for item in self._query(
                KeyConditionExpression="#epoch = :epoch AND #seq BETWEEN :low AND :high",
                ExpressionAttributeNames={"#epoch": "epoch", "#seq": "seq", "#expires": "expires_at"},
                ExpressionAttributeValues=values(epoch=epoch, low=max(1, boundary - sweep + 1), high=boundary),
                ProjectionExpression="#seq, #expires",
            ):
                if "expires_at" in item:
                    continue
                self._client.update_item(
                    TableName=self._table,
                    Key=_key(epoch, _seq(item)),
                    UpdateExpression="SET #expires = :expires",
                    ConditionExpression="attribute_exists(#seq)",
                    ExpressionAttributeNames={"#seq": "seq", "#expires": "expires_at"},
                    ExpressionAttributeValues=values(expires=expires_at),
                )
                marked += 1
        except (ClientError, BotoCoreError) as exc:
            log.warning("journal trim failed", extra={"epoch": epoch, "latest_seq": latest_seq, "error": str(exc)})
        return marked
