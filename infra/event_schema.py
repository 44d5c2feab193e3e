"""Writes (or checks) docs/event.schema.json: the JSON Schema of a catalog event (docs/reference.md §3, §9).

One event, three channels: the WebSocket event message, the ``data`` of a webhook message (whose envelope is
``$defs/WebhookMessage``) and the ``detail`` of an EventBridge entry. Built from the domain's pydantic models, so
it follows the code; tests/unit/test_event_schema.py checks the file is current and that real messages validate.

    python infra/event_schema.py            # write docs/event.schema.json
    python infra/event_schema.py --check    # exit 1 if it is not current
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
SCHEMA_FILE = PROJECT_DIR / "docs" / "event.schema.json"
REF = "#/$defs/{model}"


def _closed(schema: Any) -> Any:
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            _closed(value)
    elif isinstance(schema, list):
        for item in schema:
            _closed(item)
    return schema


def _stand_in_counts() -> tuple[list[str], list[str]]:
    """The count fields the cut-down stand-ins of a result put in place of lists, read from the code that makes
    them (chalicelib.core.results) rather than listed here."""
    from chalicelib.core.results import shrunk_results

    sample = {"revision": 1, "changed": [{"provider_id": "p", "provider_name": "p"}], "unchanged": ["u"],
              "failed": [{"provider_id": "f", "reason": "r"}]}
    change_counts: set[str] = set()
    result_counts: set[str] = set()
    for stand_in in shrunk_results(sample):
        result_counts |= {key for key in stand_in if key.endswith("_count")}
        for entry in stand_in.get("changed") or []:
            change_counts |= {key for key in entry if key.endswith("_count")}
    return sorted(change_counts), sorted(result_counts)


def build() -> dict[str, Any]:
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
    from chalicelib.core.domain import RefreshResult
    from chalicelib.core.events import EVENT_TYPE
    from chalicelib.core.webhooks import WEBHOOK_EVENT_TYPE

    result = RefreshResult.model_json_schema(ref_template=REF, mode="serialization")
    definitions = result.pop("$defs", {})
    definitions["RefreshResult"] = result
    for schema in definitions.values():
        schema["required"] = list(schema["properties"])  # the service always sends every field
    # A result too big for a channel is sent cut down (chalicelib/core/results.py): its id lists emptied, counts in
    # their place, and "truncated": true. Those fields appear only then.
    count = {"type": "integer", "minimum": 0}
    change_counts, result_counts = _stand_in_counts()
    definitions["ProviderChange"]["properties"].update(dict.fromkeys(change_counts, count))
    definitions["RefreshResult"]["properties"].update(truncated={"const": True}, **dict.fromkeys(result_counts, count))
    definitions["WebhookMessage"] = {
        "title": "WebhookMessage",
        "description": "The body of a webhook POST (Standard Webhooks); `data` is the event.",
        "type": "object",
        "properties": {
            "type": {"const": WEBHOOK_EVENT_TYPE},
            "timestamp": {"type": "string", "format": "date-time"},
            "data": {"$ref": REF.format(model="CatalogEvent")},
        },
        "required": ["type", "timestamp", "data"],
    }
    definitions["CatalogEvent"] = {
        "title": "CatalogEvent",
        "type": "object",
        "properties": {
            "type": {"const": EVENT_TYPE},
            "seq": {"type": "integer", "minimum": 1},
            "epoch": {"type": "string", "minLength": 1},
            "timestamp": {"type": "string", "format": "date-time", "description": "ISO-8601 UTC, when it committed"},
            "payload": {"$ref": REF.format(model="RefreshResult")},
            "truncated": {"const": True},
        },
        "required": ["type", "seq", "epoch", "timestamp", "payload"],
    }
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "CatalogEvent",
        "description": (
            "A catalog change event of model-catalog: the WebSocket event message, the `data` of a webhook message "
            "(`$defs/WebhookMessage`) and the `detail` of the EventBridge entry (source `model-catalog`, detail-type "
            "`model_catalog.changed`). `seq` grows by 1 per event within an `epoch`; deliveries may repeat (dedupe "
            "by epoch and seq). `payload` is the RefreshResult of the REST API; an event too big for a channel "
            'carries a cut-down payload and `"truncated": true` (refetch).'
        ),
        "$ref": REF.format(model="CatalogEvent"),
        "$defs": definitions,
    }
    return _closed(schema)


def text() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/event.schema.json is not current")
    args = parser.parse_args(argv)
    if args.check:
        if not SCHEMA_FILE.exists() or SCHEMA_FILE.read_text(encoding="utf-8") != text():
            print(f"{SCHEMA_FILE} is out of date; run: python infra/event_schema.py", file=sys.stderr)
            return 1
        return 0
    SCHEMA_FILE.write_text(text(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
