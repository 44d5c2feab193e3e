"""Issued API tokens in DynamoDB (``chalicelib.core.tokens.TokenRecord``): only salted digests, never a token.

Layout (catalog table, keys pk/sk): one item per token, ``pk = "APITOKEN"``, ``sk = <token id>``, with ``name``,
``scope``, ``created_at``, ``salt``, ``digest`` and ``last_used_at``/``last_used_s`` once used. The catalog table is
the one kept with point-in-time recovery and retained when the stack goes, like the encrypted OAuth tokens beside
it; the tokens' own partition keeps them apart from the model chunks. Listing is one Query of that partition.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from chalicelib.core.tokens import TokenRecord
from chalicelib.storage.dynamo import from_item, query_items, to_item, values

PARTITION = "APITOKEN"


def _key(token_id: str) -> dict[str, Any]:
    return to_item({"pk": PARTITION, "sk": token_id})


def _record(item: dict[str, Any]) -> TokenRecord:
    fields = from_item(item)
    return TokenRecord(
        id=fields["sk"],
        name=fields["name"],
        scope=fields["scope"],
        created_at=fields["created_at"],
        salt=fields["salt"],
        digest=fields["digest"],
        last_used_at=fields.get("last_used_at"),
        last_used_s=fields.get("last_used_s"),
    )


class TokenStore:
    def __init__(self, dynamodb_client: Any, table_name: str):
        self._client = dynamodb_client
        self._table = table_name

    def add(self, record: TokenRecord) -> None:
        """Store a new token (its id must be new: ids are random, a clash is refused rather than overwritten)."""
        item = to_item(
            {
                "pk": PARTITION,
                "sk": record.id,
                "name": record.name,
                "scope": record.scope,
                "created_at": record.created_at,
                "salt": record.salt,
                "digest": record.digest,
            }
        )
        self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")

    def get(self, token_id: str) -> TokenRecord | None:
        """The token's record, strongly consistent: a revoke is seen by the very next request."""
        item = self._client.get_item(TableName=self._table, Key=_key(token_id), ConsistentRead=True).get("Item")
        return _record(item) if item else None

    def list(self) -> list[TokenRecord]:
        """Every token, by id."""
        request = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": values(pk=PARTITION),
            "ConsistentRead": True,
        }
        return [_record(item) for item in query_items(self._client, request)]

    def delete(self, token_id: str) -> bool:
        """Remove a token; ``False`` when there was none with this id."""
        try:
            self._client.delete_item(
                TableName=self._table, Key=_key(token_id), ConditionExpression="attribute_exists(pk)"
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def touch(self, token_id: str, used_at: str, used_s: float, not_since_s: float) -> bool:
        """Record a use, unless the token is gone (a revoke is never undone by a late touch) or another request
        already recorded one at or after ``not_since_s``; ``False`` when nothing was written."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(token_id),
                UpdateExpression="SET last_used_at = :at, last_used_s = :s",
                ConditionExpression=(
                    "attribute_exists(pk) AND (attribute_not_exists(last_used_s) OR last_used_s < :since)"
                ),
                ExpressionAttributeValues=values(at=used_at, s=_number(used_s), since=_number(not_since_s)),
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True


def _number(seconds: float) -> Decimal:
    return Decimal(str(round(seconds, 3)))
