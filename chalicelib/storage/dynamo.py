"""Small helpers over the low-level DynamoDB client, shared by the storage adapters.

Items are written and read through boto3's ``TypeSerializer``/``TypeDeserializer`` (numbers come back as ``int``
when integral); errors are told apart by the client's modelled exceptions, and a cancelled transaction's reasons
are read by ``cancellation_reasons``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """Python values as DynamoDB attribute values (``None`` values are left out)."""
    return {name: _SERIALIZER.serialize(value) for name, value in values.items() if value is not None}


def from_item(item: Mapping[str, Any] | None) -> dict[str, Any]:
    """DynamoDB attribute values as Python values: ``int`` for integral numbers, ``bytes`` for binaries."""
    return {name: _plain(_DESERIALIZER.deserialize(value)) for name, value in (item or {}).items()}


def values(**named: Any) -> dict[str, Any]:
    """``ExpressionAttributeValues`` from keyword arguments: ``values(owner="x")`` → ``{":owner": {"S": "x"}}``."""
    return {f":{name}": _SERIALIZER.serialize(value) for name, value in named.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Binary):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, set)):
        return [_plain(v) for v in value]
    return value


def query_items(client: Any, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every item a Query returns, following ``LastEvaluatedKey`` page by page."""
    request = dict(request)
    while True:
        page = client.query(**request)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (None for anything else)."""
    response = getattr(error, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def cancellation_reasons(error: BaseException) -> list[str | None]:
    """The per-action reason codes of a cancelled ``TransactWriteItems``, in the order of its actions."""
    response = getattr(error, "response", None) or {}
    return [reason.get("Code") for reason in response.get("CancellationReasons", [])]
