"""Small helpers over the low-level DynamoDB client, shared by the adapters that talk to DynamoDB."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def query_items(client: Any, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every item a Query returns, following ``LastEvaluatedKey`` page by page."""
    request = dict(request)
    while True:
        page = client.query(**request)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
