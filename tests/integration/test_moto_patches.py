"""The embedded DynamoDB's fix to moto (devstack/moto_patches.py): a transaction copies each table once for its
rollback backup, not once per action; what it answers and stores is unchanged."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devstack.dynamodb import EmbeddedDynamoServer

REGION = "us-east-1"


@pytest.fixture
def server() -> Any:
    server = EmbeddedDynamoServer(ttl_sweep_s=None)
    server.start()
    app = server.app
    app.regions.add(REGION)
    app.request(REGION, "CreateTable", {
        "TableName": "t", "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]})
    for index in range(150):
        app.request(REGION, "PutItem", {"TableName": "t", "Item": {"pk": {"S": f"k{index:03d}"}, "n": {"N": "1"}}})
    yield app
    server.stop()


def deletes(keys: range, condition_fails: bool = False) -> dict[str, Any]:
    actions: list[dict[str, Any]] = [{"ConditionCheck": {
        "TableName": "t", "Key": {"pk": {"S": "k149"}}, "ConditionExpression": "n = :n",
        "ExpressionAttributeValues": {":n": {"N": "2" if condition_fails else "1"}}}}]
    actions += [{"Delete": {"TableName": "t", "Key": {"pk": {"S": f"k{index:03d}"}}}} for index in keys]
    return {"TransactItems": actions}


def count_copies(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    import moto.dynamodb.models.table as tables

    copied: list[Any] = []
    real = copy.deepcopy

    def counting(value: Any, memo: Any = None) -> Any:
        if isinstance(value, tables.Table):
            copied.append(value)
        return real(value, memo)

    monkeypatch.setattr(copy, "deepcopy", counting)
    return copied


def test_a_transaction_of_99_actions_copies_its_table_once(server, monkeypatch) -> None:
    copied = count_copies(monkeypatch)
    server.request(REGION, "TransactWriteItems", deletes(range(0, 99)))
    assert len(copied) == 1
    left = server.request(REGION, "Scan", {"TableName": "t", "Select": "COUNT"})["Count"]
    assert left == 51


def test_a_cancelled_transaction_still_restores_the_table_whole(server) -> None:
    from devstack.dynamodb import DynamoRequestError

    with pytest.raises(DynamoRequestError, match="TransactionCanceledException"):
        server.request(REGION, "TransactWriteItems", deletes(range(0, 99), condition_fails=True))
    assert server.request(REGION, "Scan", {"TableName": "t", "Select": "COUNT"})["Count"] == 150


def test_negative_control_moto_as_it_is_copies_the_table_once_per_action(server, monkeypatch) -> None:
    import moto.dynamodb.models as models

    monkeypatch.setattr(models, "copy", copy)  # moto's own module, not the patched stand-in
    copied = count_copies(monkeypatch)
    server.request(REGION, "TransactWriteItems", deletes(range(0, 99)))
    assert len(copied) == 100
