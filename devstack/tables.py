"""Reads infra/tables.json, the one declaration of the DynamoDB tables, and creates them (local stack, tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalicelib.settings import TableNames

# Not in the Lambda bundle: deployed code never creates tables (CloudFormation does); tests and the local stack do.
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "infra" / "tables.json"


def table_specs() -> dict[str, dict[str, Any]]:
    return json.loads(SCHEMA_FILE.read_text())["tables"]


def create_tables(dynamodb_client: Any, tables: TableNames) -> None:
    """Create every table that does not exist yet (idempotent), with TTL where declared."""
    existing = set(dynamodb_client.list_tables().get("TableNames", []))
    for role, spec in table_specs().items():
        name = getattr(tables, role)
        if name in existing:
            continue
        indexes = spec.get("global_secondary_indexes")
        dynamodb_client.create_table(
            TableName=name,
            KeySchema=spec["key_schema"],
            AttributeDefinitions=spec["attribute_definitions"],
            BillingMode="PAY_PER_REQUEST",
            **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
        )
        dynamodb_client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
        if spec.get("ttl_attribute"):
            dynamodb_client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec["ttl_attribute"]},
            )
