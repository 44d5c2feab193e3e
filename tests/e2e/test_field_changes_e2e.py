"""Field-level changes, lifecycle and overrides (docs/reference.md §10) end to end: the local stack (`python -m
devstack`) with its demo registry as the provider, a real WebSocket client, the REST API; and a config whose override
is bad stopping the start."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.stack import LocalStack

pytestmark = pytest.mark.stack

EVENT = "event.model_catalog.changed"
CONFIG = """
[model_catalog]
refresh_interval_ms = 0
refresh_on_start = false

[[providers]]
id = "demo"
name = "Demo registry"
kind = "registry"
url = "${MODEL_CATALOG_DEMO_REGISTRY_URL:-http://127.0.0.1:9/api.json}"

# The operator's price for one model wins over whatever the registry says, at every refresh.
[[overrides]]
provider_id = "demo"
model = "acme/pinned-*"
pricing = { input_per_mtok = 4, output_per_mtok = 20 }
"""


def registry(big_input: float, big_context: int, old_status: str | None, pinned_input: float) -> dict[str, Any]:
    """A models.dev-style registry: ``acme/big`` (price, context, cache price, modalities), ``acme/old`` (maybe
    deprecated) and ``acme/pinned-1`` (its price overridden by the config)."""
    old: dict[str, Any] = {"id": "old", "name": "Old", "limit": {"context": 8192, "output": 1024},
                           "cost": {"input": 1, "output": 2}}
    if old_status:
        old["status"] = old_status
    return {
        "acme": {
            "id": "acme",
            "name": "Acme",
            "models": {
                "big": {"id": "big", "name": "Big", "tool_call": True,
                        "limit": {"context": big_context, "output": 16384},
                        "cost": {"input": big_input, "output": 15, "cache_read": 0.3},
                        "modalities": {"input": ["text", "image"], "output": ["text"]}},
                "old": old,
                "pinned-1": {"id": "pinned-1", "name": "Pinned", "cost": {"input": pinned_input, "output": 25}},
            },
        }
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fields-e2e")
    config = root / "catalog.toml"
    config.write_text(textwrap.dedent(CONFIG))
    with LocalStack(root, config=config) as running:
        yield running


def refresh(stack: LocalStack) -> dict[str, Any]:
    response = stack.post("/api/v1/providers:refresh")
    assert response.status_code == 200, response.text
    return response.json()


def models(stack: LocalStack) -> dict[str, dict[str, Any]]:
    response = stack.get("/api/v1/models")
    assert response.status_code == 200, response.text
    return {m["id"]: m for m in response.json()["models"]}


BIG_PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cache_read_per_mtok": 0.3, "cache_write_per_mtok": None}


def test_a_price_a_context_length_and_an_un_deprecation_arrive_as_exact_changes(stack: LocalStack) -> None:
    stack.set_registry(registry(big_input=3, big_context=128_000, old_status="deprecated", pinned_input=5))
    first = refresh(stack)
    assert first["changed"][0]["added"] == ["acme/big", "acme/old", "acme/pinned-1"]
    before = models(stack)
    assert (before["acme/old"]["status"], before["acme/old"]["retires_at"]) == ("deprecated", None)
    assert before["acme/big"]["pricing"] == BIG_PRICE
    assert before["acme/big"]["modalities"] == {"input": ["text", "image"], "output": ["text"]}
    assert before["acme/pinned-1"]["pricing"]["input_per_mtok"] == 4.0  # the override, not the registry's 5

    with connect(stack.ws_connect_url, open_timeout=15, ping_interval=None, proxy=None) as ws:
        ws.send(json.dumps({"action": "subscribe", "since": None, "epoch": None}))
        subscribed = json.loads(ws.recv(timeout=10))
        assert subscribed["type"] == "subscribed"

        # The provider lowers a price, raises a context length, un-deprecates a model, and changes the price of a
        # model whose price the config overrides (that one must not show up).
        stack.set_registry(registry(big_input=2.5, big_context=200_000, old_status=None, pinned_input=6))
        result = refresh(stack)
        expected_change = {
            "provider_id": "demo",
            "provider_name": "Demo registry",
            "added": [],
            "removed": [],
            "updated": ["acme/big", "acme/old"],
            "changes": [
                {"model_id": "acme/big", "field": "context_length", "before": 128_000, "after": 200_000},
                {"model_id": "acme/big", "field": "pricing", "before": BIG_PRICE,
                 "after": {**BIG_PRICE, "input_per_mtok": 2.5}},
                {"model_id": "acme/old", "field": "status", "before": "deprecated", "after": "active"},
            ],
        }
        assert result == {"revision": first["revision"] + 1, "changed": [expected_change], "unchanged": [],
                          "failed": []}

        event = json.loads(ws.recv(timeout=10))
        assert event["type"] == EVENT and event["seq"] == subscribed["seq"] + 1
        assert event["payload"] == result
        assert "truncated" not in event

    status = stack.get("/api/v1/refresh/status").json()
    assert status["last_run"] == result
    after = models(stack)
    assert after["acme/big"]["context_length"] == 200_000 and after["acme/old"]["status"] == "active"
    assert after["acme/pinned-1"]["pricing"]["input_per_mtok"] == 4.0  # the override survived the refresh


@pytest.mark.parametrize(
    ("replacement", "expected"),
    [
        ('provider_id = "demo"\nprice = 3\nmodel', "overrides[0].price: unknown key"),
        ('provider_id = "dmeo"\nmodel', "overrides[0].provider_id: unknown provider 'dmeo'"),
    ],
)
def test_a_bad_override_stops_the_start_naming_file_key_and_problem(
    tmp_path: Path, replacement: str, expected: str
) -> None:
    config = tmp_path / "bad_override.toml"
    config.write_text(textwrap.dedent(CONFIG).replace('provider_id = "demo"\nmodel', replacement))
    local = LocalStack(tmp_path, config=config)
    local.launch()
    assert local.wait_exit() == 2
    assert f"{config}: {expected}" in local.stderr_text
    assert "MODEL_CATALOG_READY" not in local.stdout_text
    assert not (tmp_path / "state" / "dynamodb.json").exists()  # nothing was started
