"""Open WebSocket connections in DynamoDB, one item per connection (the fan-out reads them page by page)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from chalicelib.clock import utc_iso
from chalicelib.storage.dynamo import to_item, values

# API Gateway closes every WebSocket connection after 2 hours; a row older than that is a leftover.
MAX_CONNECTION_S = 2 * 60 * 60


class ConnectionStore:
    """One item per open connection: ``connection_id`` (key), ``connected_at``, ``source_ip``, ``expires_at``. A
    subscribe writes nothing (one write per connection: the fan-out sends to every stored connection anyway)."""

    def __init__(self, dynamodb_client: Any, table_name: str, clock: Callable[[], float] = time.time):
        self._client = dynamodb_client
        self._table = table_name
        self._clock = clock

    def add(self, connection_id: str, source_ip: str | None = None) -> None:
        now = self._clock()
        item = {
            "connection_id": connection_id,
            "connected_at": utc_iso(now),
            "expires_at": int(now + MAX_CONNECTION_S),
            "source_ip": source_ip or None,
        }
        self._client.put_item(TableName=self._table, Item=to_item(item))

    def remove(self, connection_id: str) -> None:
        self._client.delete_item(TableName=self._table, Key=to_item({"connection_id": connection_id}))

    def pages(self, page_size: int = 1_000) -> Iterator[list[str]]:
        """Connection ids, one Scan page at a time (ids only), skipping rows past their TTL that DynamoDB has
        not deleted yet."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "ProjectionExpression": "connection_id",
            "FilterExpression": "attribute_not_exists(expires_at) OR expires_at > :now",
            "ExpressionAttributeValues": values(now=int(self._clock())),
            "Limit": page_size,
        }
        while True:
            page = self._client.scan(**request)
            ids = [item["connection_id"]["S"] for item in page.get("Items", [])]
            if ids:
                yield ids
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def count_up_to(self, limit: int) -> int:
        """How many connections are open, counting no further than ``limit + 1`` (``Select=COUNT`` Scan pages: no item
        comes back): enough to tell whether a fan-out fits a budget without reading a large table whole."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "Select": "COUNT",
            "FilterExpression": "attribute_not_exists(expires_at) OR expires_at > :now",
            "ExpressionAttributeValues": values(now=int(self._clock())),
            "Limit": limit + 1,
        }
        count = 0
        while True:
            page = self._client.scan(**request)
            count += int(page.get("Count", 0))
            if count > limit or "LastEvaluatedKey" not in page:
                return count
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def ids(self) -> list[str]:
        return [connection_id for page in self.pages() for connection_id in page]
