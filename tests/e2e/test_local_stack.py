"""The local stack behind ``make run``: the real ``python -m devstack`` as a subprocess on free ports,
its embedded DynamoDB (serialized, persisted), the scheduler, the demo registry and the bundled config."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chalicelib.catalog_config import CatalogOptions, load_config
from chalicelib.settings import EXAMPLE_CONFIG
from devstack.demo_registry import DEMO_REGISTRY_FILE
from devstack.scheduler import LocalScheduler
from tests.stack import EmbeddedDynamo, LocalStack, pid_alive, port_is_free

REPO = Path(__file__).resolve().parents[2]
FIXTURE_REGISTRY = REPO / "tests" / "fixtures" / "providers" / "models_dev_api.json"
PROTECTED_ROUTES = ("/api/v1/providers", "/api/v1/models", "/api/v1/refresh/status")
CATALOG_TABLE = "model-catalog-catalog"

pytestmark = pytest.mark.stack


def wait_until(condition: Any, timeout: float = 30.0, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def demo_model_count() -> int:
    document = json.loads(DEMO_REGISTRY_FILE.read_text())
    return sum(len(provider["models"]) for provider in document.values())


@pytest.fixture
def demo_only(tmp_path: Path) -> Path:
    """A config with only the demo registry: lifecycle tests need a fast start-up refresh, not the real providers."""
    config = tmp_path / "demo_only.toml"
    config.write_text(
        '[model_catalog]\nrefresh_on_start = true\n\n[[providers]]\nid = "demo"\nkind = "registry"\n'
        'url = "${MODEL_CATALOG_DEMO_REGISTRY_URL}"\n'
    )
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    """One stack with the bundled example config, shared by the read-only tests of this module."""
    local = LocalStack(tmp_path_factory.mktemp("stack"))
    local.start()
    yield local
    local.stop()


# -- HTTP API ---------------------------------------------------------------------------------------------
def test_health_is_open(stack: LocalStack) -> None:
    response = stack.get("/api/v1/health", token=False)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", PROTECTED_ROUTES)
def test_protected_routes_refuse_a_missing_or_wrong_token(stack: LocalStack, path: str) -> None:
    for token in (False, "not-the-token"):
        response = stack.get(path, token=token)
        assert response.status_code == 401, (path, token)
        error = response.json()["error"]
        assert error["code"] == "unauthorized" and error["message"]
        assert stack.token not in response.text


def test_the_bundled_config_shows_the_demo_catalog(stack: LocalStack) -> None:
    """The first `make run`: the start-up refresh fills the catalog from the demo registry, with no keys."""
    expected = demo_model_count()

    def demo_models() -> list[dict]:
        response = stack.get("/api/v1/models")
        assert response.status_code == 200, response.text
        return [model for model in response.json()["models"] if model["provider_id"] == "demo"]

    models = wait_until(lambda: len(demo_models()) == expected and demo_models(), what="the demo catalog")
    assert "anthropic/claude-opus-4-6" in {model["id"] for model in models}
    opus = next(model for model in models if model["id"] == "anthropic/claude-opus-4-6")
    assert opus["context_length"] == 1_000_000
    assert opus["pricing"] == {"input_per_mtok": 5.0, "output_per_mtok": 25.0, "cache_read_per_mtok": 0.5,
                               "cache_write_per_mtok": 6.25}
    assert (opus["status"], opus["modalities"]) == ("active", {"input": ["text", "image", "pdf"], "output": ["text"]})

    body = stack.get("/api/v1/models").json()
    assert isinstance(body["revision"], int) and body["revision"] >= 1

    providers = {provider["id"]: provider for provider in stack.get("/api/v1/providers").json()["providers"]}
    assert set(providers) == {"demo", "openai", "anthropic", "gemini", "openrouter", "ollama"}
    assert providers["demo"]["model_count"] == expected
    assert "OPENAI_API_KEY is not set" in (providers["openai"]["last_error"] or "")

    status = stack.get("/api/v1/refresh/status").json()
    assert status["refresh_interval_ms"] == 21_600_000
    assert status["refresh_on_start"] is True
    failed = {failure["provider_id"]: failure["reason"] for failure in status["last_run"]["failed"]}
    assert "OPENAI_API_KEY is not set" in failed["openai"]
    assert "demo" not in failed


def test_concurrent_requests_are_served(stack: LocalStack) -> None:
    results: list[int] = []

    def call() -> None:
        results.append(requests.get(stack.http_url + "/api/v1/health", timeout=30).status_code)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [200] * 20


# -- WebSocket through the stack ----------------------------------------------------------------------
def test_websocket_token_is_checked_at_connect(stack: LocalStack) -> None:
    async def refused(url: str) -> int:
        with pytest.raises(InvalidStatus) as error:
            async with connect(url):
                pass
        return error.value.response.status_code

    assert asyncio.run(refused(f"{stack.ws_url}/?token=wrong")) in (401, 403)
    assert asyncio.run(refused(stack.ws_url)) in (401, 403)


def test_websocket_ping_and_garbage_through_the_app(stack: LocalStack) -> None:
    async def scenario() -> tuple[dict, dict, dict]:
        async with connect(stack.ws_connect_url) as websocket:
            await websocket.send(json.dumps({"action": "ping"}))
            pong = json.loads(await asyncio.wait_for(websocket.recv(), 30))
            await websocket.send("this is not json")
            error = json.loads(await asyncio.wait_for(websocket.recv(), 30))
            await websocket.send(json.dumps({"action": "ping"}))
            again = json.loads(await asyncio.wait_for(websocket.recv(), 30))
            return pong, error, again

    pong, error, again = asyncio.run(scenario())
    assert pong == {"type": "pong"}
    assert error["type"] == "error" and error["error"]["code"]
    assert again == {"type": "pong"}


def test_management_api_of_the_stack_answers_gone_for_unknown_ids(stack: LocalStack) -> None:
    client = stack.management_client()
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId="unknownConnId=", Data=b"{}")


# -- lifecycle ----------------------------------------------------------------------------------------------
def test_state_survives_a_restart_and_reset_empties_it(tmp_path: Path, demo_only: Path) -> None:
    local = LocalStack(tmp_path, config=demo_only)
    local.start()
    client = local.dynamodb_client()
    key = {"pk": {"S": "test#persistence"}, "sk": {"S": "item"}}
    client.put_item(TableName=CATALOG_TABLE, Item={**key, "payload": {"B": b"\x00binary\xff"}})

    local.restart()
    item = local.dynamodb_client().get_item(TableName=CATALOG_TABLE, Key=key, ConsistentRead=True).get("Item")
    assert item is not None and item["payload"]["B"] == b"\x00binary\xff"

    local.restart(MODEL_CATALOG_RESET="1")
    client = local.dynamodb_client()
    assert client.get_item(TableName=CATALOG_TABLE, Key=key, ConsistentRead=True).get("Item") is None
    assert set(client.list_tables()["TableNames"]) >= {CATALOG_TABLE, "model-catalog-events"}
    local.stop()


def test_ctrl_c_stops_cleanly(tmp_path: Path, demo_only: Path) -> None:
    local = LocalStack(tmp_path, config=demo_only)
    local.start()
    assert local.stop(signal_number=signal.SIGINT) == 0  # exit status 0, every port free, DynamoDB child gone


def test_a_crashed_stack_leaves_no_dynamodb_orphan(tmp_path: Path, demo_only: Path) -> None:
    local = LocalStack(tmp_path, config=demo_only)
    local.start()
    dynamodb_pid = local.ready["dynamodb_pid"]
    assert pid_alive(dynamodb_pid)
    os.kill(local.process.pid, signal.SIGKILL)  # only the stack, not its process group
    local.wait_exit()
    wait_until(lambda: not pid_alive(dynamodb_pid), timeout=20, what="the DynamoDB child to exit")
    port = int(local.dynamodb_endpoint.rsplit(":", 1)[1])
    wait_until(lambda: port_is_free(port), timeout=10, what="the DynamoDB port to be freed")


def test_the_scheduler_fires_at_start_and_then_every_tick(tmp_path: Path, demo_only: Path) -> None:
    local = LocalStack(tmp_path, tick_seconds=0.5, config=demo_only)
    local.start()
    try:
        wait_until(lambda: local.stderr_text.count('"scheduled tick') >= 3, timeout=60, what="three scheduled ticks")
    finally:
        local.stop()


def test_log_lines_are_json_when_stderr_is_not_a_terminal(stack: LocalStack) -> None:
    """The default (``auto``) with stderr on a pipe: JSON lines, from the stack and from its DynamoDB child."""
    lines = {}
    for line in stack.stderr_text.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            lines.setdefault(entry["message"], entry)
    assert lines["local stack ready"]["logger"] == "model_catalog.local.stack"
    assert lines["local stack ready"]["http_url"] == stack.http_url
    assert lines["embedded DynamoDB serving"]["logger"] == "model_catalog.local.dynamodb"


def test_human_log_lines_when_asked(tmp_path: Path, demo_only: Path) -> None:
    """MODEL_CATALOG_LOG_FORMAT=human: short lines, also from the DynamoDB child; no colour on a pipe."""
    local = LocalStack(tmp_path, config=demo_only, env={"MODEL_CATALOG_LOG_FORMAT": "human"})
    local.start()
    wait_until(lambda: "scheduled tick done" in local.stderr_text, timeout=60, what="the start-up tick")
    local.stop()
    stderr = local.stderr_text
    time_level = r"^\d\d:\d\d:\d\d INFO  "
    assert re.search(time_level + rf"stack +local stack ready  http_url={re.escape(local.http_url)} ws_url=ws://",
                     stderr, re.MULTILINE), stderr
    assert re.search(time_level + r"dynamodb +embedded DynamoDB serving  endpoint=http://127\.0\.0\.1:\d+ ",
                     stderr, re.MULTILINE), stderr
    assert re.search(time_level + r"scheduler +scheduled tick done  .*ran=true", stderr, re.MULTILINE), stderr
    assert not [line for line in stderr.splitlines() if line.startswith("{")], stderr
    assert "\x1b[" not in stderr


def test_an_external_dynamodb_endpoint_replaces_the_embedded_one(tmp_path: Path, demo_only: Path) -> None:
    with EmbeddedDynamo() as external:
        local = LocalStack(tmp_path, config=demo_only, env={"MODEL_CATALOG_DYNAMODB_ENDPOINT": external.endpoint})
        local.start()
        try:
            assert local.ready["dynamodb_pid"] is None
            assert local.dynamodb_endpoint == external.endpoint
            tables = set(external.client().list_tables()["TableNames"])
            assert {CATALOG_TABLE, "model-catalog-locks", "model-catalog-connections", "model-catalog-events"} <= tables
            assert local.get("/api/v1/providers").status_code == 200
        finally:
            local.stop()


def test_two_stacks_cannot_share_a_state_dir(tmp_path: Path, demo_only: Path) -> None:
    first = LocalStack(tmp_path / "a", state_dir=tmp_path / "shared", config=demo_only)
    first.start()
    try:
        second = LocalStack(tmp_path / "b", state_dir=tmp_path / "shared", config=demo_only)
        second.launch()
        assert second.wait_exit() == 1
        assert "another local stack is using" in second.stderr_text
    finally:
        first.stop()


def test_reset_refuses_to_wipe_a_directory_it_did_not_create(tmp_path: Path) -> None:
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("do not delete")
    local = LocalStack(tmp_path, state_dir=foreign)
    local.launch(MODEL_CATALOG_RESET="1")
    assert local.wait_exit() == 2
    assert "refusing to wipe" in local.stderr_text
    assert (foreign / "thesis.txt").read_text() == "do not delete"


def test_a_port_in_use_is_reported(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        local = LocalStack(tmp_path)
        local.launch(MODEL_CATALOG_HTTP_PORT=str(port))
        assert local.wait_exit() == 1
    assert f"127.0.0.1:{port}" in local.stderr_text and "MODEL_CATALOG_HTTP_PORT" in local.stderr_text


# -- bad configuration stops the start at once --------------------------------------------------------
BAD_CONFIGS = {
    "unknown_key": ("[model_catalog]\nrefresh_interval_ms = 1000\nrefresh_every = 5\n", "refresh_every"),
    "bad_toml": ("[model_catalog\nrefresh_interval_ms = 1\n", "not valid TOML"),
    "bad_value": ("[model_catalog]\nrefresh_interval_ms = -5\n", "refresh_interval_ms"),
    "duplicate_id": (
        '[[providers]]\nid = "a"\nkind = "ollama"\n[[providers]]\nid = "a"\nkind = "ollama"\n',
        "duplicate provider id",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_a_bad_config_exits_2_naming_file_and_key(tmp_path: Path, case: str) -> None:
    text, expected = BAD_CONFIGS[case]
    config = tmp_path / f"{case}.toml"
    config.write_text(text)
    local = LocalStack(tmp_path, config=config)
    local.launch()
    assert local.wait_exit() == 2
    assert str(config) in local.stderr_text
    assert expected in local.stderr_text
    assert "MODEL_CATALOG_READY" not in local.stdout_text
    assert not (tmp_path / "state" / "dynamodb.json").exists()  # nothing was started


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MODEL_CATALOG_REFRESH_ON_START", "maybe"),
        ("MODEL_CATALOG_REFRESH_INTERVAL_MS", "soon"),
        ("MODEL_CATALOG_HTTP_PORT", "eighty"),
        ("MODEL_CATALOG_TICK_SECONDS", "-1"),
        ("MODEL_CATALOG_RESET", "please"),
        ("MODEL_CATALOG_LOG_FORMAT", "yaml"),
    ],
)
def test_a_bad_environment_override_exits_2(tmp_path: Path, variable: str, value: str) -> None:
    local = LocalStack(tmp_path)
    local.launch(**{variable: value})
    assert local.wait_exit() == 2
    assert variable in local.stderr_text
    assert "MODEL_CATALOG_READY" not in local.stdout_text


# -- the embedded DynamoDB -------------------------------------------------------------------------------
def _counter_race(client: Any, threads: int = 12, rounds: int = 25) -> tuple[int, int]:
    """Read-then-conditional-update from many threads; returns (successful updates, final counter)."""
    key = {"pk": {"S": "counter"}, "sk": {"S": "race"}}
    client.put_item(TableName=CATALOG_TABLE, Item={**key, "n": {"N": "0"}})
    successes = 0
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker() -> None:
        nonlocal successes
        start.wait()
        for _ in range(rounds):
            current = client.get_item(TableName=CATALOG_TABLE, Key=key, ConsistentRead=True)["Item"]["n"]["N"]
            try:
                client.update_item(
                    TableName=CATALOG_TABLE,
                    Key=key,
                    UpdateExpression="SET n = :next",
                    ConditionExpression="n = :seen",
                    ExpressionAttributeValues={":seen": {"N": current}, ":next": {"N": str(int(current) + 1)}},
                )
            except client.exceptions.ConditionalCheckFailedException:
                continue
            with lock:
                successes += 1

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(120)
    final = int(client.get_item(TableName=CATALOG_TABLE, Key=key, ConsistentRead=True)["Item"]["n"]["N"])
    return successes, final


def test_conditional_writes_are_atomic_through_the_serialized_server() -> None:
    with EmbeddedDynamo(widen_races=True) as dynamo:
        dynamo.create_tables()
        client = dynamo.client()
        successes, final = _counter_race(client)
        assert successes > 0
        assert final == successes  # every accepted conditional update counted, none lost

        winners: dict[str, list[int]] = {}
        for round_number in range(10):
            barrier = threading.Barrier(16)
            key = f"claim-{round_number}"
            winners[key] = []

            def claim(owner: int, key: str = key, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    client.put_item(
                        TableName=CATALOG_TABLE,
                        Item={"pk": {"S": key}, "sk": {"S": "lock"}, "owner": {"N": str(owner)}},
                        ConditionExpression="attribute_not_exists(pk)",
                    )
                except client.exceptions.ConditionalCheckFailedException:
                    return
                winners[key].append(owner)

            claimants = [threading.Thread(target=claim, args=(owner,)) for owner in range(16)]
            for thread in claimants:
                thread.start()
            for thread in claimants:
                thread.join(60)
            stored = client.get_item(TableName=CATALOG_TABLE, Key={"pk": {"S": key}, "sk": {"S": "lock"}})["Item"]
            assert len(winners[key]) == 1, winners[key]
            assert stored["owner"]["N"] == str(winners[key][0])


def test_negative_control_without_the_lock_conditional_updates_get_lost() -> None:
    """Proves the race is real (so the test above can fail): without serialization, moto loses updates."""
    with EmbeddedDynamo(serialize=False, widen_races=True) as dynamo:
        dynamo.create_tables()
        client = dynamo.client()
        deadline = time.monotonic() + 90
        while True:
            successes, final = _counter_race(client)
            if final < successes:
                return
            assert time.monotonic() < deadline, "moto without the lock never lost an update"


def test_changes_are_snapshotted_while_running_and_survive_a_crash(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = {"pk": {"S": "crash"}, "sk": {"S": "test"}}
    with EmbeddedDynamo(state_dir=state, snapshot_delay_s=0.2) as dynamo:
        dynamo.create_tables()
        dynamo.client().put_item(TableName=CATALOG_TABLE, Item={**key, "v": {"S": "kept"}})
        snapshot = state / "dynamodb.json"
        wait_until(lambda: snapshot.exists() and '"crash"' in snapshot.read_text(), timeout=10, what="a snapshot")
        dynamo.kill()  # no final snapshot: only what was written while running
    assert not list(state.glob(".dynamodb.json.*.tmp")), "a temp file was left behind"
    with EmbeddedDynamo(state_dir=state) as dynamo:
        item = dynamo.client().get_item(TableName=CATALOG_TABLE, Key=key)["Item"]
        assert item["v"]["S"] == "kept"
        ttl = dynamo.client().describe_time_to_live(TableName="model-catalog-events")["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_a_corrupt_snapshot_stops_the_start_with_advice(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "dynamodb.json").write_text("{not json")
    dynamo = EmbeddedDynamo(state_dir=state)
    with pytest.raises(RuntimeError, match="embedded DynamoDB"):
        dynamo.start()
    assert (state / "dynamodb.json").read_text() == "{not json"  # never overwritten


def test_expired_items_are_swept_like_dynamodb_ttl() -> None:
    with EmbeddedDynamo(ttl_sweep_s=0.2) as dynamo:
        dynamo.create_tables()
        client = dynamo.client()
        now = int(time.time())
        for name, expires in (("old", now - 10), ("new", now + 3600)):
            client.put_item(
                TableName="model-catalog-connections",
                Item={"connection_id": {"S": name}, "expires_at": {"N": str(expires)}},
            )

        def remaining() -> set[str]:
            items = client.scan(TableName="model-catalog-connections")["Items"]
            return {item["connection_id"]["S"] for item in items}

        wait_until(lambda: remaining() == {"new"}, timeout=15, what="the expired item to be swept")


# -- scheduler (in-process) ---------------------------------------------------------------------------
def test_scheduler_fires_at_once_survives_failures_and_never_overlaps() -> None:
    calls: list[dict] = []
    running = 0
    overlap = False
    guard = threading.Lock()

    def handler(event: dict, context: Any) -> dict:
        nonlocal running, overlap
        with guard:
            running += 1
            overlap = overlap or running > 1
        calls.append(event)
        time.sleep(0.15)  # longer than the interval: the next tick must wait, not overlap
        with guard:
            running -= 1
        if len(calls) % 2:
            raise RuntimeError("tick failed")
        return {"ran": True}

    scheduler = LocalScheduler(handler, interval_s=0.05)
    scheduler.start()
    try:
        wait_until(lambda: len(calls) >= 4, timeout=30, what="four ticks")
    finally:
        assert scheduler.stop()
    assert not overlap
    assert scheduler.ticks_failed >= 2  # failures were logged and the schedule went on
    first = calls[0]
    assert first["detail-type"] == "Scheduled Event" and first["source"] == "aws.events"
    assert first["resources"][0].startswith("arn:aws:events:us-east-1:")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["time"])
    assert len({event["id"] for event in calls}) == len(calls)


def test_scheduler_first_tick_does_not_wait_for_the_interval() -> None:
    fired = threading.Event()
    scheduler = LocalScheduler(lambda event, context: fired.set(), interval_s=3600)
    scheduler.start()
    try:
        assert fired.wait(30)
    finally:
        scheduler.stop()


# -- demo registry and bundled config ---------------------------------------------------------------------
def test_demo_registry_extends_the_models_dev_fixture() -> None:
    demo = json.loads(DEMO_REGISTRY_FILE.read_text())
    fixture = json.loads(FIXTURE_REGISTRY.read_text())
    for provider_id, provider in fixture.items():
        assert set(provider["models"]) <= set(demo[provider_id]["models"])
    assert 15 <= demo_model_count() <= 30
    for provider_id, provider in demo.items():
        assert provider["id"] == provider_id and provider["name"]
        for model_id, model in provider["models"].items():
            assert model["id"] == model_id
            assert model["limit"]["context"] > 0 and model["limit"]["output"] > 0
            assert set(model["cost"]) >= {"input", "output"}


def test_demo_registry_server_and_its_test_hooks(stack: LocalStack) -> None:
    url = stack.demo_registry_url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.json() == json.loads(DEMO_REGISTRY_FILE.read_text())
    assert requests.get(url, headers={"If-None-Match": response.headers["ETag"]}, timeout=10).status_code == 304
    try:
        stack.set_registry({"tiny": {"id": "tiny", "name": "Tiny", "models": {}}})
        assert requests.get(url, timeout=10).json()["tiny"]["name"] == "Tiny"
        stack.fail_registry(503)
        assert requests.get(url, timeout=10).status_code == 503
    finally:
        stack.reset_registry()
    assert requests.get(url, timeout=10).json() == json.loads(DEMO_REGISTRY_FILE.read_text())


def test_example_config_is_valid_and_its_commented_defaults_are_true() -> None:
    config = load_config(EXAMPLE_CONFIG, environ={}, allow_private_urls=True)
    providers = {provider.id: provider for provider in config.providers}
    assert set(providers) == {"demo", "openai", "anthropic", "gemini", "openrouter", "ollama"}
    assert providers["demo"].kind == "registry"
    assert providers["demo"].url == "http://127.0.0.1:8002/api.json"
    assert providers["ollama"].base_url == "http://127.0.0.1:11434"
    for provider_id in ("openai", "anthropic", "gemini", "openrouter"):
        assert providers[provider_id].api_key_env == f"{provider_id.upper()}_API_KEY"
    expanded = load_config(
        EXAMPLE_CONFIG, environ={"MODEL_CATALOG_DEMO_REGISTRY_URL": "http://x:1/a.json"}, allow_private_urls=True
    )
    assert next(p for p in expanded.providers if p.id == "demo").url == "http://x:1/a.json"

    # The commented "shown with their defaults" lines must stay true: uncommented, they equal the defaults.
    text = EXAMPLE_CONFIG.read_text()
    section = text.split("[model_catalog]", 1)[1].split("[[providers]]", 1)[0]
    commented = dict(re.findall(r"^#\s*([a-z_]+)\s*=\s*([^#\n]+?)\s*(?:#.*)?$", section, flags=re.MULTILINE))
    assert commented, "no commented defaults found"
    values = tomllib.loads("\n".join(f"{key} = {value}" for key, value in commented.items()))
    defaults = CatalogOptions()
    for key, value in values.items():
        assert getattr(defaults, key) == value, key
