"""The WebSocket protocol (docs/reference.md §3) end to end: real WebSocket clients against the local stack (`python -m devstack`).

One stack serves the whole module (starting it is the slow part); every test reads the current position from
its own ``subscribed`` frame, so the tests do not depend on each other's order. The demo registry is the only
provider; tests change what it serves (always adding models, so the shrink guard never trips) and refresh
through the REST API.

Frame ordering makes "nothing was sent" checkable without sleeping: the gateway handles one connection's
messages in order and the refresh answers only after its fan-out posted to ``@connections``, so after a
refresh a ``ping`` is answered by a ``pong`` that is queued behind any event of that refresh.
"""

from __future__ import annotations

import contextlib
import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from chalicelib.bootstrap import Container, bootstrap
from chalicelib.settings import TableNames, settings_from_env
from tests.fakes.registry_documents import GrowingRegistry
from tests.faults import build_engine
from tests.stack import LocalStack

pytestmark = pytest.mark.stack

TABLES = TableNames()
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
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("ws-e2e")
    config = root / "catalog.toml"
    config.write_text(textwrap.dedent(CONFIG))
    with LocalStack(root, config=config) as running:
        yield running


@pytest.fixture(scope="module")
def registry(stack: LocalStack) -> GrowingRegistry:
    registry = GrowingRegistry()
    registry.add_model(stack)
    first = stack.post("/api/v1/providers:refresh")
    assert first.status_code == 200, first.text
    return registry


class Client:
    """A WebSocket client of the protocol (docs/reference.md §3) (sync websockets; each has its own I/O thread)."""

    def __init__(self, connection: ClientConnection):
        self.connection = connection

    def send(self, message: Any) -> None:
        self.connection.send(message if isinstance(message, str) else json.dumps(message))

    def recv(self, timeout: float = 10) -> dict[str, Any]:
        return json.loads(self.connection.recv(timeout=timeout))

    def until_pong(self, timeout: float = 10) -> list[dict[str, Any]]:
        """Send a ping; return every frame that arrives before its pong."""
        self.send({"action": "ping"})
        frames = []
        while (frame := self.recv(timeout)) != {"type": "pong"}:
            frames.append(frame)
        return frames

    def subscribe(self, since: int | None = None, epoch: str | None = None) -> tuple[dict[str, Any], list[dict]]:
        """The ``subscribed`` frame and whatever followed it (replayed events, resync_required)."""
        self.send({"action": "subscribe", "since": since, "epoch": epoch})
        subscribed = self.recv()
        assert subscribed["type"] == "subscribed", subscribed
        return subscribed, self.until_pong()

    def next_event(self, timeout: float = 10) -> dict[str, Any]:
        frame = self.recv(timeout)
        assert frame["type"] == EVENT, frame
        return frame

    def close(self) -> None:
        self.connection.close()


def ws_connect(url: str) -> Any:
    return connect(url, open_timeout=15, ping_interval=None, proxy=None, max_size=2**21)


@pytest.fixture
def open_client(stack: LocalStack, registry: GrowingRegistry) -> Iterator[Any]:
    with contextlib.ExitStack() as opened:

        def open_one() -> Client:
            return Client(opened.enter_context(ws_connect(stack.ws_connect_url)))

        yield open_one


def refresh(stack: LocalStack) -> dict[str, Any]:
    response = stack.post("/api/v1/providers:refresh")
    assert response.status_code == 200, response.text
    return response.json()


def change(stack: LocalStack, registry: GrowingRegistry) -> dict[str, Any]:
    added = registry.add_model(stack)
    result = refresh(stack)
    assert result["changed"] and added in result["changed"][0]["added"], result
    return result


def connection_rows(stack: LocalStack) -> set[str]:
    client = stack.dynamodb_client()
    pages = client.get_paginator("scan").paginate(TableName=TABLES.connections, ConsistentRead=True)
    return {item["connection_id"]["S"] for page in pages for item in page["Items"]}


def broadcast_logs(stack: LocalStack, seq: int) -> list[dict[str, Any]]:
    lines = []
    for line in stack.stderr_text.splitlines() + stack.stdout_text.splitlines():
        if '"broadcast"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "broadcast" and entry.get("seq") == seq:
            lines.append(entry)
    return lines


# --- connect / garbage ------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["wrong-token", ""])
def test_a_bad_or_missing_token_is_refused_at_connect(stack: LocalStack, registry: GrowingRegistry, token: str):
    url = f"{stack.ws_url}/" + (f"?token={token}" if token else "")
    with pytest.raises(InvalidStatus) as refused, ws_connect(url):
        pass
    assert refused.value.response.status_code == 401


def test_garbage_gets_an_error_frame_and_the_connection_lives(open_client):
    client = open_client()
    client.send("this is not json")
    frame = client.recv()
    assert frame["type"] == "error" and frame["error"]["code"] == "bad_message" and frame["error"]["message"]
    client.send({"action": "teleport"})
    assert client.recv()["error"]["code"] == "unknown_action"
    assert client.until_pong() == []  # still open and served


# --- events -----------------------------------------------------------------------------------------------


def test_a_change_sends_an_event_with_the_rest_result_as_payload(stack, registry, open_client):
    watchers = [open_client(), open_client()]
    positions = [client.subscribe()[0] for client in watchers]
    result = change(stack, registry)
    for client, position in zip(watchers, positions, strict=True):
        event = client.next_event()
        assert event["payload"] == result
        assert event["seq"] == position["seq"] + 1
        assert event["epoch"] == position["epoch"]
        assert event["payload"]["revision"] == position["revision"] + 1
        assert event["timestamp"].endswith("Z")
        assert "truncated" not in event


def test_seq_grows_by_one_per_event(stack, registry, open_client):
    client = open_client()
    position, _ = client.subscribe()
    seqs = []
    for _ in range(3):
        change(stack, registry)
        seqs.append(client.next_event()["seq"])
    assert seqs == [position["seq"] + 1, position["seq"] + 2, position["seq"] + 3]
    again, _ = open_client().subscribe()
    assert again["seq"] == seqs[-1]


def test_no_event_for_a_refresh_that_changed_nothing(stack, registry, open_client):
    client = open_client()
    position, _ = client.subscribe()
    result = refresh(stack)
    assert result["changed"] == [] and result["failed"] == []
    assert client.until_pong() == []
    assert open_client().subscribe()[0]["seq"] == position["seq"]


def test_no_event_for_failures_alone(stack, registry, open_client):
    client = open_client()
    position, _ = client.subscribe()
    registry.add_model(stack)  # a change is waiting, but the provider fails
    stack.fail_registry(503)
    try:
        result = refresh(stack)
    finally:
        stack.fail_registry(0)
    assert result["changed"] == [] and [f["provider_id"] for f in result["failed"]] == ["demo"]
    assert client.until_pong() == []
    assert open_client().subscribe()[0]["seq"] == position["seq"]
    refresh(stack)  # the waiting change goes out now (an event, so the next test starts clean)


def test_twenty_five_clients_all_receive_the_event(stack, registry, open_client):
    clients = [open_client() for _ in range(25)]
    for client in clients:
        client.subscribe()
    result = change(stack, registry)
    events = [client.next_event() for client in clients]
    assert {event["seq"] for event in events} == {events[0]["seq"]}
    assert all(event["payload"] == result for event in events)


def test_limit_exceeded_sends_are_retried(stack, registry, open_client):
    client = open_client()
    client.subscribe()
    stack.limit_exceeded(3)
    result = change(stack, registry)
    event = client.next_event()
    assert event["payload"] == result
    (log,) = broadcast_logs(stack, event["seq"])
    assert log["failed"] == 0 and log["sent"] >= 1


# --- resume -----------------------------------------------------------------------------------------------


def test_resume_replays_the_missed_events(stack, registry, open_client):
    first = open_client()
    position, _ = first.subscribe()
    first.close()  # offline while two changes happen
    missed = [change(stack, registry), change(stack, registry)]
    resumed = open_client()
    subscribed, replayed = resumed.subscribe(since=position["seq"], epoch=position["epoch"])
    assert subscribed["seq"] == position["seq"] + 2
    assert [event["type"] for event in replayed] == [EVENT, EVENT]
    assert [event["seq"] for event in replayed] == [position["seq"] + 1, position["seq"] + 2]
    assert [event["payload"] for event in replayed] == missed


def test_resume_from_the_latest_seq_replays_nothing(stack, registry, open_client):
    position, _ = open_client().subscribe()
    subscribed, replayed = open_client().subscribe(since=position["seq"], epoch=position["epoch"])
    assert subscribed["seq"] == position["seq"] and replayed == []


def test_a_bad_epoch_requires_a_resync(stack, registry, open_client):
    client = open_client()
    position, _ = client.subscribe()
    subscribed, after = client.subscribe(since=max(0, position["seq"] - 1), epoch="not-" + position["epoch"])
    assert subscribed == position
    assert after == [{"type": "resync_required", "seq": position["seq"], "epoch": position["epoch"]}]


# --- 410 Gone ---------------------------------------------------------------------------------------------


def test_a_client_that_vanished_without_disconnect_is_pruned_on_410(stack, registry, open_client):
    before = set(stack.connection_ids())
    doomed = open_client()
    doomed.subscribe()
    (doomed_id,) = set(stack.connection_ids()) - before
    witness = open_client()
    witness.subscribe()
    stack.drop_connection(doomed_id)  # TCP cut, no $disconnect: the row stays
    with pytest.raises(ConnectionClosed):
        doomed.recv(timeout=10)
    assert doomed_id in connection_rows(stack)
    result = change(stack, registry)
    event = witness.next_event()
    assert event["payload"] == result
    assert doomed_id not in connection_rows(stack)
    (log,) = broadcast_logs(stack, event["seq"])
    assert log["gone"] >= 1 and log["failed"] == 0


# --- a crash between commit and fan-out -------------------------------------------------------------------


@pytest.fixture
def stack_wiring(stack: LocalStack, tmp_path: Path) -> Container:
    """This process wired to the stack's DynamoDB and @connections, like a second Lambda of the deployment."""
    environ = {
        "MODEL_CATALOG_CONFIG": str(stack.config),
        "MODEL_CATALOG_DEMO_REGISTRY_URL": stack.demo_registry_url,
        "MODEL_CATALOG_ALLOW_PRIVATE_URLS": "1",
        "MODEL_CATALOG_API_TOKEN": stack.token,
        "MODEL_CATALOG_DYNAMODB_ENDPOINT": stack.dynamodb_endpoint,
        "MODEL_CATALOG_WS_MANAGEMENT_ENDPOINT": stack.management_endpoint,
        "MODEL_CATALOG_WS_STAGE": "local",
        "MODEL_CATALOG_LOCAL_KEY_FILE": str(tmp_path / "oauth.key"),
        "MODEL_CATALOG_DEPLOYMENT_ID": "e2e-crash-test",
        "AWS_REGION": "us-east-1",
    }
    return bootstrap(settings_from_env({**os.environ, **environ}))


def test_a_crash_between_commit_and_fan_out_loses_nothing(stack, registry, open_client, stack_wiring):
    online = open_client()
    position, _ = online.subscribe()
    offline_since = position["seq"]

    # The committing Lambda "dies" right after its transaction: the same engine, with no publisher.
    registry.add_model(stack)
    container = stack_wiring
    engine = build_engine(container.settings, container.aws.client("dynamodb"), container.fetcher_factory)
    committed = engine.run("all", trigger="manual").model_dump(mode="json")
    assert committed["changed"]
    seq = offline_since + 1
    item = stack.dynamodb_client().get_item(
        TableName=TABLES.events,
        Key={"epoch": {"S": position["epoch"]}, "seq": {"N": str(seq)}},
        ConsistentRead=True,
    )["Item"]
    assert item["published"] == {"BOOL": False}  # in the journal, never pushed
    assert online.until_pong() == []

    # A client resuming from before the change gets it from the journal.
    subscribed, replayed = open_client().subscribe(since=offline_since, epoch=position["epoch"])
    assert subscribed["seq"] == seq
    assert [(event["seq"], event["payload"]) for event in replayed] == [(seq, committed)]

    # The next scheduled tick pushes it to everyone still connected, then marks it published.
    outcome = container.service.tick(trigger="scheduled")
    assert outcome["ran"] is False  # nothing due: only the repair ran
    event = online.next_event()
    assert (event["seq"], event["payload"]) == (seq, committed)
    item = stack.dynamodb_client().get_item(
        TableName=TABLES.events,
        Key={"epoch": {"S": position["epoch"]}, "seq": {"N": str(seq)}},
        ConsistentRead=True,
    )["Item"]
    assert item["published"] == {"BOOL": True}
    assert container.publisher.publish_pending(position["epoch"]) == 0  # nothing left to repair
