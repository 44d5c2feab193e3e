"""The local stack behind ``make run``: the real ``python -m devstack`` as a subprocess on free ports,
its embedded DynamoDB (serialized, persisted), the scheduler, the demo registry and the bundled config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as connect_sync

from chalicelib.catalog_config import CatalogOptions, load_config
from chalicelib.core.manifest import Manifest
from chalicelib.settings import EXAMPLE_CONFIG
from chalicelib.storage.catalog import CatalogStore, manifest_item
from devstack.demo_registry import DEMO_REGISTRY_FILE
from devstack.scheduler import LocalScheduler
from devstack.tables import table_specs
from tests.fakes.registry_documents import GrowingRegistry
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


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("target", ["the stack", "the process group of make run"])
def test_a_stop_signal_leaves_no_process_of_the_stack(
    tmp_path: Path, demo_only: Path, signal_number: int, target: str
) -> None:
    under_make = target != "the stack"
    local = LocalStack(tmp_path, config=demo_only, under_make=under_make)
    local.start()
    assert len(local.tree_at_ready) == (3 if under_make else 2)  # [make,] the stack, its DynamoDB
    # Exit status 0, every port free, every process of the tree (as seen when it was ready) gone.
    assert local.stop(signal_number=signal_number, group=under_make) == 0
    if under_make:
        assert local.returncode == -signal_number  # make itself dies of the signal, after its child exited


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
    assert (local.state_dir / "dynamodb.clean").exists()  # it stopped cleanly on its own: final snapshot, marker


def test_sigkill_of_the_process_group_of_make_run_leaves_no_process(tmp_path: Path, demo_only: Path) -> None:
    """make and the stack die at once; the DynamoDB child (its own session) notices and exits on its own."""
    local = LocalStack(tmp_path, config=demo_only, under_make=True)
    local.start()
    tree = local.tree_at_ready
    local.signal_group(signal.SIGKILL)
    local.wait_exit()
    local.assert_nothing_left()
    assert not [pid for pid in tree if pid_alive(pid)]


def test_a_burst_of_stop_signals_stops_the_dynamodb_child_cleanly() -> None:
    """The child's handlers only record the signal (no lock): a burst of SIGTERMs while it waits ends it cleanly.
    Before, its handler set a threading.Event the main thread was waiting on and could deadlock on its lock."""
    for _ in range(5):
        dynamo = EmbeddedDynamo().start()
        for _ in range(200):
            with contextlib.suppress(ProcessLookupError):
                os.kill(dynamo.pid, signal.SIGTERM)
        assert dynamo.stop() == 0


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


# -- durability: clean stops lose nothing, crashes never reuse a cursor (docs/reference.md §1.3) -----------
DURABLE_CONFIG = """
[model_catalog]
refresh_on_start = false

[[providers]]
id = "demo"
name = "Demo registry"
kind = "registry"
url = "${MODEL_CATALOG_DEMO_REGISTRY_URL}"
"""
EVENT = "event.model_catalog.changed"
# The stack's test-only negative controls (read only with MODEL_CATALOG_LOCAL_TEST_HOOKS=1, which LocalStack sets).
NO_WAL = {"MODEL_CATALOG_LOCAL_TEST_NO_WAL": "1", "MODEL_CATALOG_LOCAL_TEST_SNAPSHOT_DELAY": "3600"}
NO_NEW_EPOCH = {"MODEL_CATALOG_LOCAL_TEST_NO_NEW_EPOCH": "1"}


@pytest.fixture
def durable_config(tmp_path: Path) -> Path:
    """Only the demo registry, no start-up refresh: after a restart the catalog is exactly what was stored."""
    config = tmp_path / "durable.toml"
    config.write_text(DURABLE_CONFIG)
    return config


def change(stack: LocalStack, registry: GrowingRegistry) -> dict[str, Any]:
    """A refresh that changes the catalog, answered 200."""
    added = registry.add_model(stack)
    response = stack.post("/api/v1/providers:refresh")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["changed"] and added in result["changed"][0]["added"], result
    return result


def catalog_ids(stack: LocalStack) -> set[str]:
    response = stack.get("/api/v1/models")
    assert response.status_code == 200, response.text
    return {model["id"] for model in response.json()["models"]}


class Subscriber:
    """A real WebSocket client of docs/reference.md §3."""

    def __init__(self, connection: ClientConnection):
        self.connection = connection

    def recv(self, timeout: float = 15) -> dict[str, Any]:
        return json.loads(self.connection.recv(timeout=timeout))

    def subscribe(self, since: int | None = None, epoch: str | None = None) -> tuple[dict[str, Any], list[dict]]:
        """The ``subscribed`` frame and every frame after it up to the pong of a ping (replays, resync_required)."""
        self.connection.send(json.dumps({"action": "subscribe", "since": since, "epoch": epoch}))
        subscribed = self.recv()
        assert subscribed["type"] == "subscribed", subscribed
        self.connection.send(json.dumps({"action": "ping"}))
        frames = []
        while (frame := self.recv()) != {"type": "pong"}:
            frames.append(frame)
        return subscribed, frames

    def next_event(self) -> dict[str, Any]:
        frame = self.recv()
        assert frame["type"] == EVENT, frame
        return frame


@contextlib.contextmanager
def subscriber(stack: LocalStack) -> Iterator[Subscriber]:
    with connect_sync(stack.ws_connect_url, open_timeout=15, ping_interval=None, proxy=None) as connection:
        yield Subscriber(connection)


def resumed_honestly(seen: dict[str, Any], frames: list[dict[str, Any]]) -> bool:
    """A client that saw event ``seen`` and resubscribed with ``since = seen.seq - 1``: the promise is that it
    either gets that very event replayed, unchanged, or is told to resync — never another event under the same
    ``(epoch, seq)``, never silence."""
    if [frame["type"] for frame in frames] == ["resync_required"]:
        return True
    same_cursor = [frame for frame in frames if (frame.get("epoch"), frame.get("seq")) == (seen["epoch"], seen["seq"])]
    return same_cursor == [seen]


def log_messages(stack: LocalStack, message: str) -> list[dict[str, Any]]:
    return [entry for entry in stack.log_entries() if entry.get("message") == message]


@pytest.mark.parametrize("durability", ["as shipped", "final snapshot alone (no write-ahead log)"])
def test_sigterm_to_the_process_group_of_make_run_right_after_a_change_loses_nothing(
    tmp_path: Path, durable_config: Path, durability: str
) -> None:
    """Round after round: a change answers 200, the whole process group of ``make run`` gets SIGTERM at once (make
    forwards it: the stack gets two), and after a restart the catalog and the journal hold the change, in the
    same epoch. Without the write-ahead log (and no snapshot timer) only the final snapshot can save it."""
    env = {} if durability == "as shipped" else NO_WAL
    local = LocalStack(tmp_path, config=durable_config, env=env, under_make=True)
    registry = GrowingRegistry()
    seen: dict[str, Any] | None = None
    for round_number in range(4):
        local.start()
        if seen is not None:
            assert registry.ids <= catalog_ids(local), f"round {round_number}: the catalog lost a change"
            with subscriber(local) as client:
                subscribed, frames = client.subscribe(since=seen["seq"] - 1, epoch=seen["epoch"])
            assert (subscribed["epoch"], subscribed["seq"]) == (seen["epoch"], seen["seq"])  # a clean stop: same epoch
            assert frames == [seen]  # the journal holds the event, with the content the client saw
            assert not log_messages(local, "new event epoch")
        if round_number == 3:
            break
        with subscriber(local) as client:
            client.subscribe()
            result = change(local, registry)
            local.signal_group(signal.SIGTERM)  # right after the 200; make forwards it to the stack
            # The kernel merges a signal that arrives while the same one is pending, so make's copy may coincide
            # with the group's: one more, a moment later, makes the second signal certain.
            time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.kill(local.ready["pid"], signal.SIGTERM)
            seen = client.next_event()  # already delivered: the refresh answers after its fan-out
        assert seen["payload"] == result
        local.wait_exit()
        assert local.stack_exit_code() == 0, local.stderr_text
        local.assert_nothing_left()
        sigterms = [entry for entry in log_messages(local, "stop signal received") if entry["signal"] == "SIGTERM"]
        assert len(sigterms) >= 2, local.stderr_text  # a repeated SIGTERM, and still a clean stop
    local.stop(group=True)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_stop_signal_to_the_stack_alone_right_after_a_change_keeps_it_in_the_final_snapshot(
    tmp_path: Path, durable_config: Path, signal_number: int
) -> None:
    """Without the write-ahead log and with no snapshot timer, only the clean stop's final snapshot can keep the
    change: the signal reaches the stack alone (not make, not its group), the change is there after a restart."""
    local = LocalStack(tmp_path, config=durable_config, env=NO_WAL)
    registry = GrowingRegistry()
    local.start()
    with subscriber(local) as client:
        client.subscribe()
        change(local, registry)
        local.process.send_signal(signal_number)  # right after the 200
        seen = client.next_event()
    assert local.wait_exit() == 0, local.stderr_text
    local.assert_nothing_left()
    local.start()
    assert registry.ids <= catalog_ids(local)
    with subscriber(local) as client:
        subscribed, frames = client.subscribe(since=seen["seq"] - 1, epoch=seen["epoch"])
    assert subscribed["epoch"] == seen["epoch"] and frames == [seen]
    local.stop()


CRASH_CASES = {
    # case: (environment, what a resuming client gets)
    "as shipped": ({}, "resync_required"),
    "control: write-ahead log, epoch kept": (NO_NEW_EPOCH, "the same event replayed"),
    "control: no write-ahead log, epoch kept": ({**NO_WAL, **NO_NEW_EPOCH}, "a reused cursor"),
}


@pytest.mark.parametrize("case", list(CRASH_CASES))
def test_sigkill_of_the_whole_tree_right_after_a_change_never_reuses_a_cursor(
    tmp_path: Path, durable_config: Path, case: str
) -> None:
    """kill -9 of make, the stack and its DynamoDB at once, right after a change a client saw; restart; the next
    change; the client resumes from just before the event it saw. As shipped the stack starts a new epoch (no
    clean-shutdown marker) and the write-ahead log kept the change. The controls switch the mechanisms off: the
    log alone keeps the cursor honest here, and without either the test sees the same (epoch, seq) with other
    content — so it can tell."""
    env, expected = CRASH_CASES[case]
    local = LocalStack(tmp_path, config=durable_config, env=env, under_make=True)
    registry = GrowingRegistry()
    local.start()
    change(local, registry)
    local.stop(group=True)  # a first change, kept by a clean stop whatever the case
    local.start()
    with subscriber(local) as client:
        client.subscribe()
        change(local, registry)
        lost_model = f"acme/{sorted(registry.models)[-1]}"
        killed = local.kill_tree()  # right after the 200
        seen = client.next_event()
    assert len(killed) == 3
    local.assert_nothing_left()

    local.start()
    kept = lost_model in catalog_ids(local)
    new_epoch = log_messages(local, "new event epoch")
    change(local, registry)  # under the old epoch and an older journal, this would take the seen event's seq
    with subscriber(local) as client:
        subscribed, frames = client.subscribe(since=seen["seq"] - 1, epoch=seen["epoch"])
    local.stop(group=True)

    if expected == "resync_required":
        assert kept, "the write-ahead log lost an acknowledged change"
        assert [frame["type"] for frame in frames] == ["resync_required"], frames
        assert subscribed["epoch"] != seen["epoch"] and subscribed["seq"] == 1
        assert [entry["reason"] for entry in new_epoch] == ["no clean-shutdown marker: the last stop was not clean"]
        assert resumed_honestly(seen, frames)
    elif expected == "the same event replayed":
        assert kept and not new_epoch
        assert frames[0] == seen and subscribed["seq"] == seen["seq"] + 1
        assert resumed_honestly(seen, frames)
    else:
        assert not kept, "the control should have lost the change (no log, no snapshot timer)"
        reused = [frame for frame in frames if (frame["epoch"], frame["seq"]) == (seen["epoch"], seen["seq"])]
        assert reused and reused[0]["payload"] != seen["payload"], frames  # one cursor, two contents
        assert not resumed_honestly(seen, frames)


def test_a_deliberate_third_ctrl_c_forces_the_exit_after_the_final_snapshot(tmp_path: Path) -> None:
    """A stop that hangs (a scheduled refresh stuck on a provider) is cut short by a third Ctrl-C: exit 130 at
    once, yet the embedded DynamoDB writes its final snapshot first — with no write-ahead log, only that snapshot
    can keep the change, and its clean-shutdown marker keeps the epoch."""
    config = tmp_path / "ticking.toml"
    config.write_text(DURABLE_CONFIG.replace("refresh_on_start = false", "refresh_on_start = false\nrefresh_interval_ms = 500"))
    local = LocalStack(tmp_path, config=config, env=NO_WAL, tick_seconds=0.5)
    registry = GrowingRegistry()
    local.start()
    with subscriber(local) as client:
        client.subscribe()
        added = registry.add_model(local)
        assert local.post("/api/v1/providers:refresh").status_code == 200  # (or a tick got there first)
        seen = client.next_event()
    assert added in seen["payload"]["changed"][0]["added"]
    base = local.demo_registry_url.rsplit("/", 1)[0]
    requests.post(f"{base}/_test/delay?seconds=60", timeout=10).raise_for_status()
    wait_until(lambda: requests.get(f"{base}/_test/waiting", timeout=10).json()["waiting"] >= 1,
               what="a scheduled refresh stuck on the provider")
    for _ in range(3):
        local.process.send_signal(signal.SIGINT)
        time.sleep(0.2)
    assert local.wait_exit(timeout_s=45) == 130, local.stderr_text
    assert "still stopping cleanly; press Ctrl-C again to force the exit" in local.stderr_text
    assert "forced exit" in local.stderr_text
    local.assert_nothing_left()

    local.start()
    assert registry.ids <= catalog_ids(local)
    with subscriber(local) as client:
        subscribed, frames = client.subscribe(since=seen["seq"] - 1, epoch=seen["epoch"])
    assert subscribed["epoch"] == seen["epoch"] and frames[0] == seen
    local.stop()


def test_a_state_directory_restored_from_a_backup_starts_a_new_epoch(tmp_path: Path, durable_config: Path) -> None:
    """A complete older copy of the state directory, clean-shutdown marker included, is older than what was
    served: the marker names the snapshot file it was written for, and a restored copy is another file."""
    state = tmp_path / "state"
    local = LocalStack(tmp_path, config=durable_config)
    registry = GrowingRegistry()
    local.start()
    change(local, registry)
    local.stop()
    backup = tmp_path / "backup"
    shutil.copytree(state, backup, ignore=shutil.ignore_patterns(".lock", ".dynamodb.lock"))
    local.start()
    with subscriber(local) as client:
        client.subscribe()
        change(local, registry)
        seen = client.next_event()
    local.stop()
    shutil.rmtree(state)
    shutil.copytree(backup, state)  # copy2: contents and times as they were; only the files are new

    local.start()
    with subscriber(local) as client:
        subscribed, frames = client.subscribe(since=seen["seq"] - 1, epoch=seen["epoch"])
    assert [frame["type"] for frame in frames] == ["resync_required"]
    assert subscribed["epoch"] != seen["epoch"]
    [entry] = log_messages(local, "new event epoch")
    assert "not the one the last clean stop wrote" in entry["reason"]
    local.restart()  # the state written by this clean stop is accepted again: the epoch stays
    assert not log_messages(local, "new event epoch")
    local.stop()


@pytest.mark.parametrize("journal_seq", [None, 2, 5], ids=["journal empty", "journal behind", "journal ahead"])
def test_a_journal_that_disagrees_with_the_manifest_starts_a_new_epoch(
    tmp_path: Path, durable_config: Path, journal_seq: int | None
) -> None:
    """Also with an external DynamoDB (no clean-shutdown marker to read): the manifest says seq 3 of its epoch,
    the journal ends elsewhere — one was restored without the other."""
    with EmbeddedDynamo() as external:
        tables = external.create_tables()
        client = external.client()
        store = CatalogStore(client, tables.catalog)
        store.read_manifest()
        client.put_item(TableName=tables.catalog, Item=manifest_item(Manifest(revision=7, epoch="e0", seq=3)))
        if journal_seq is not None:
            client.put_item(TableName=tables.events, Item={"epoch": {"S": "e0"}, "seq": {"N": str(journal_seq)}})
        local = LocalStack(tmp_path, config=durable_config, env={"MODEL_CATALOG_DYNAMODB_ENDPOINT": external.endpoint})
        local.start()
        local.stop()
        manifest = store.read_manifest()
        assert manifest.epoch != "e0" and manifest.seq == 0 and manifest.revision == 7
        [entry] = log_messages(local, "new event epoch")
        assert "manifest is at seq 3" in entry["reason"]


def test_a_journal_that_agrees_with_the_manifest_keeps_the_epoch(tmp_path: Path, durable_config: Path) -> None:
    with EmbeddedDynamo() as external:
        tables = external.create_tables()
        client = external.client()
        client.put_item(TableName=tables.catalog, Item=manifest_item(Manifest(revision=7, epoch="e0", seq=3)))
        client.put_item(TableName=tables.events, Item={"epoch": {"S": "e0"}, "seq": {"N": "3"}})
        local = LocalStack(tmp_path, config=durable_config, env={"MODEL_CATALOG_DYNAMODB_ENDPOINT": external.endpoint})
        local.start()
        local.stop()
        assert CatalogStore(client, tables.catalog).read_manifest().epoch == "e0"
        assert not log_messages(local, "new event epoch")


def test_the_embedded_dynamodb_refuses_browsers(stack: LocalStack) -> None:
    """No web page may read or change the local tables (OAuth tokens included): a cross-origin preflight, a
    cross-origin GET or POST, and a DNS-rebinding request (a foreign Host) are refused, without CORS headers."""
    endpoint = stack.dynamodb_endpoint
    page = "http://evil.example"
    preflight = requests.options(endpoint + "/", timeout=10, headers={
        "Origin": page, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-amz-target"})
    cross_get = requests.get(endpoint + "/", headers={"Origin": page}, timeout=10)
    delete = {"X-Amz-Target": "DynamoDB_20120810.DeleteTable", "Content-Type": "application/x-amz-json-1.0"}
    cross_post = requests.post(endpoint + "/", headers={**delete, "Origin": page}, timeout=10,
                               data=json.dumps({"TableName": CATALOG_TABLE}))
    rebound = requests.post(endpoint + "/", headers={**delete, "Host": "evil.example"}, timeout=10,
                            data=json.dumps({"TableName": CATALOG_TABLE}))
    for response in (preflight, cross_get, cross_post, rebound):
        assert response.status_code == 403, (response.request.method, response.text)
        assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    assert CATALOG_TABLE in stack.dynamodb_client().list_tables()["TableNames"]  # nothing was deleted; SDKs work


def test_negative_control_moto_alone_answers_cors_for_any_origin() -> None:
    """The same preflight to moto's own app (without the stack's guard, global CORS on as moto ships) is allowed:
    the refusal above is the stack's doing, not moto's default."""
    from moto.moto_server.werkzeug_app import create_backend_app
    from werkzeug.test import Client

    if os.environ.get("MOTO_DISABLE_GLOBAL_CORS"):
        pytest.skip("moto's global CORS is switched off in this process")
    response = Client(create_backend_app("dynamodb")).options("/", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-amz-target"})
    assert response.headers.get("Access-Control-Allow-Origin") in ("*", "http://evil.example")


def test_state_files_are_private_and_an_old_directory_is_tightened(tmp_path: Path, durable_config: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    (state / ".model-catalog-state").write_text("model-catalog local stack state (safe to delete)\n")
    key = state / "oauth.key"
    key.write_bytes(os.urandom(32))
    for path in (state / ".model-catalog-state", key):
        os.chmod(path, 0o644)
    local = LocalStack(tmp_path, config=durable_config)
    local.start()
    change(local, GrowingRegistry())
    local.stop()
    names = {path.name for path in state.iterdir()}
    assert {"dynamodb.json", "dynamodb.clean", "oauth.key", ".model-catalog-state", ".lock"} <= names
    assert any(name.startswith("dynamodb-wal-") for name in names)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    modes = {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in state.iterdir()}
    assert set(modes.values()) == {"0o600"}, modes


# -- the embedded DynamoDB's write-ahead log ------------------------------------------------------------
def _put_items(dynamo: EmbeddedDynamo, count: int) -> list[dict[str, Any]]:
    dynamo.create_tables()
    client = dynamo.client()
    keys = [{"pk": {"S": f"wal#{n}"}, "sk": {"S": "item"}} for n in range(count)]
    for n, key in enumerate(keys):
        client.put_item(TableName=CATALOG_TABLE, Item={**key, "n": {"N": str(n)}})
    return keys


def _present(dynamo: EmbeddedDynamo, keys: list[dict[str, Any]]) -> list[bool]:
    client = dynamo.client()
    if CATALOG_TABLE not in client.list_tables()["TableNames"]:
        return [False] * len(keys)
    return [bool(client.get_item(TableName=CATALOG_TABLE, Key=key, ConsistentRead=True).get("Item")) for key in keys]


@pytest.mark.parametrize("wal", [True, False], ids=["write-ahead log", "negative control: none"])
def test_every_acknowledged_write_survives_sigkill(tmp_path: Path, wal: bool) -> None:
    """SIGKILL right after the last answer, with no snapshot since (the timer is an hour): the log replays
    every write. Without it the writes are gone — the test can tell."""
    state = tmp_path / "state"
    with EmbeddedDynamo(state_dir=state, snapshot_delay_s=3600, wal=wal) as dynamo:
        keys = _put_items(dynamo, 30)
        dynamo.kill()
    with EmbeddedDynamo(state_dir=state, snapshot_delay_s=3600, wal=wal) as dynamo:
        assert _present(dynamo, keys) == [wal] * len(keys)
        if wal:
            assert dynamo.restored["clean"] is False
            assert dynamo.restored["reason"] == "no clean-shutdown marker: the last stop was not clean"
            specs = table_specs().values()
            table_writes = len(specs) + sum(1 for spec in specs if spec.get("ttl_attribute"))  # CreateTable, TTL
            assert dynamo.restored["replayed"] == len(keys) + table_writes


CONNECTIONS_TABLE = "model-catalog-connections"


@pytest.mark.parametrize("stop", ["sigkill", "clean stop"])
@pytest.mark.parametrize("ephemeral", [True, False], ids=["connections ephemeral", "negative control: durable"])
def test_the_connections_table_is_not_kept_across_restarts(tmp_path: Path, stop: str, ephemeral: bool) -> None:
    """The stack's WebSocket connections end with it, so their rows are neither logged nor snapshotted (a connect
    waits for no fsync); every other table keeps every acknowledged write. Declared durable, the same rows would
    come back — the test can tell."""
    state = tmp_path / "state"
    tables = (CONNECTIONS_TABLE,) if ephemeral else ()
    with EmbeddedDynamo(state_dir=state, snapshot_delay_s=0.05, ephemeral_tables=tables) as dynamo:
        keys = _put_items(dynamo, 3)
        client = dynamo.client()
        for n in range(3):
            client.put_item(TableName=CONNECTIONS_TABLE, Item={"connection_id": {"S": f"c{n}"}})
        client.delete_item(TableName=CONNECTIONS_TABLE, Key={"connection_id": {"S": "c0"}})
        time.sleep(0.5)  # a snapshot of the catalog writes is taken meanwhile
        if stop == "sigkill":
            dynamo.kill()
    with EmbeddedDynamo(state_dir=state, ephemeral_tables=tables) as dynamo:
        client = dynamo.client()
        assert all(_present(dynamo, keys))
        assert CONNECTIONS_TABLE in client.list_tables()["TableNames"]  # the table itself is kept
        rows = client.scan(TableName=CONNECTIONS_TABLE)["Items"]
        assert sorted(row["connection_id"]["S"] for row in rows) == ([] if ephemeral else ["c1", "c2"])


def test_a_clean_stop_is_reported_clean_and_compacts_the_log(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with EmbeddedDynamo(state_dir=state, snapshot_delay_s=3600) as dynamo:
        keys = _put_items(dynamo, 5)
    segments = sorted(state.glob("dynamodb-wal-*.log"))
    assert len(segments) == 1 and segments[0].stat().st_size == 0  # all of it is in the final snapshot
    assert (state / "dynamodb.clean").exists()
    with EmbeddedDynamo(state_dir=state) as dynamo:
        assert dynamo.restored == {"clean": True, "state": "clean", "reason": None, "replayed": 0}
        assert all(_present(dynamo, keys))
        assert not (state / "dynamodb.clean").exists()  # removed before serving


def test_a_damaged_log_is_set_aside_and_reported(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with EmbeddedDynamo(state_dir=state, snapshot_delay_s=3600) as dynamo:
        keys = _put_items(dynamo, 10)
        dynamo.kill()
    [segment] = state.glob("dynamodb-wal-*.log")
    data = bytearray(segment.read_bytes())
    data[data.index(b'"wal#5"') + 2] ^= 0x01  # one flipped bit in the 6th item's record
    segment.write_bytes(bytes(data))
    with EmbeddedDynamo(state_dir=state) as dynamo:
        assert dynamo.restored["clean"] is False and "is damaged at byte" in dynamo.restored["reason"]
        assert _present(dynamo, keys) == [True] * 5 + [False] * 5  # up to the damage, nothing after it
        assert list(state.glob("*.damaged"))  # kept for inspection, never replayed again
        dynamo.client().put_item(TableName=CATALOG_TABLE, Item={**keys[7], "n": {"N": "7"}})
        dynamo.kill()
    with EmbeddedDynamo(state_dir=state) as dynamo:  # what was replayed was snapshotted; new writes are logged
        assert _present(dynamo, keys) == [True] * 5 + [False] * 2 + [True] + [False] * 2


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
