"""The WebSocket handlers (docs/reference.md §3) with Chalice's WebsocketEvent, a real (moto) journal and a fake send."""

from __future__ import annotations

import json
import logging

import pytest
from chalice.app import WebsocketEvent

from chalicelib.auth import token_checker
from chalicelib.core.domain import ProviderChange, RefreshResult
from chalicelib.core.events import build_event_message
from chalicelib.entrypoints.websocket import WebsocketHandlers
from chalicelib.errors import ConnectionGone
from chalicelib.events import MAX_WIRE_BYTES
from chalicelib.settings import TableNames
from chalicelib.storage.connections import ConnectionStore
from chalicelib.storage.journal import EventJournal

TABLES = TableNames()
TOKEN = "s3cret-token-value"
EPOCH = "ep-7f3a"




class Outbox:
    """The fake ``send``: frames per connection; ``gone`` ids answer 410 like app.websocket_api.send."""

    def __init__(self):
        self.frames: dict[str, list[dict]] = {}
        self.raw: dict[str, list[str]] = {}
        self.gone: set[str] = set()

    def __call__(self, connection_id: str, text: str) -> None:
        if connection_id in self.gone:
            raise ConnectionGone(connection_id)
        self.raw.setdefault(connection_id, []).append(text)
        self.frames.setdefault(connection_id, []).append(json.loads(text))

    def of(self, connection_id: str = "conn-1") -> list[dict]:
        return self.frames.get(connection_id, [])


class Position:
    def __init__(self, seq: int = 0, epoch: str = EPOCH, revision: int = 1):
        self.value = (seq, epoch, revision)
        self.error: Exception | None = None

    def __call__(self) -> tuple[int, str, int]:
        if self.error:
            raise self.error
        return self.value


@pytest.fixture
def outbox():
    return Outbox()


@pytest.fixture
def position():
    return Position()


@pytest.fixture
def connections(dynamodb):
    return ConnectionStore(dynamodb, TABLES.connections)


@pytest.fixture
def handlers(dynamodb, connections, outbox, position):
    return WebsocketHandlers(
        token_checker(lambda: TOKEN), connections, EventJournal(dynamodb, TABLES.events), position, outbox
    )


def ws_event(route: str, connection_id: str = "conn-1", body: str | None = None, query: dict | None = None):
    """An API Gateway WebSocket proxy event, as Chalice hands it to the handlers."""
    event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE")
    raw = {
        "requestContext": {
            "routeKey": route,
            "eventType": event_type,
            "connectionId": connection_id,
            "domainName": "127.0.0.1",
            "stage": "local",
            "apiId": "local",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "isBase64Encoded": False,
    }
    if route == "$connect":
        raw["queryStringParameters"] = query
        raw["headers"] = {"Host": "127.0.0.1"}
    if body is not None:
        raw["body"] = body
    return WebsocketEvent(raw, None)


def message(handlers, body, connection_id: str = "conn-1") -> dict:
    text = body if isinstance(body, str) else json.dumps(body)
    return handlers.on_message(ws_event("$default", connection_id, body=text))


def journal_events(client, count: int, epoch: str = EPOCH) -> list[dict]:
    events = []
    for seq in range(1, count + 1):
        result = RefreshResult(
            revision=seq + 1, changed=[ProviderChange(provider_id="openai", provider_name="OpenAI", added=[f"m{seq}"])]
        )
        event = build_event_message(seq, epoch, "2026-01-01T00:00:00.000Z", result)
        client.transact_write_items(TransactItems=[EventJournal(None, TABLES.events).append_action(event)])
        events.append(event)
    return events


# --- $connect / $disconnect -------------------------------------------------------------------------------


def test_connect_with_the_token_stores_the_connection(handlers, connections):
    assert handlers.on_connect(ws_event("$connect", query={"token": TOKEN})) == {"statusCode": 200}
    assert connections.ids() == ["conn-1"]


@pytest.mark.parametrize("query", [None, {}, {"token": ""}, {"token": "wrong"}, {"token": TOKEN + "x"}])
def test_connect_without_the_right_token_is_refused(handlers, connections, query):
    assert handlers.on_connect(ws_event("$connect", query=query)) == {"statusCode": 401}
    assert connections.ids() == []


def test_connect_is_refused_when_the_connection_cannot_be_stored(dynamodb, outbox, position):
    broken = WebsocketHandlers(
        token_checker(lambda: TOKEN),
        ConnectionStore(dynamodb, "no-such-table"),
        EventJournal(dynamodb, TABLES.events),
        position,
        outbox,
    )
    assert broken.on_connect(ws_event("$connect", query={"token": TOKEN})) == {"statusCode": 500}


def test_connect_answers_500_when_the_token_cannot_be_verified(dynamodb, connections, outbox, position):
    def unreadable(presented):
        raise RuntimeError("the token store is unreachable")

    failing = WebsocketHandlers(unreadable, connections, EventJournal(dynamodb, TABLES.events), position, outbox)
    assert failing.on_connect(ws_event("$connect", query={"token": TOKEN})) == {"statusCode": 500}
    assert connections.ids() == []


def test_connect_refused_when_no_token_is_configured(dynamodb, connections, outbox, position):
    unset = WebsocketHandlers(
        token_checker(lambda: None), connections, EventJournal(dynamodb, TABLES.events), position, outbox
    )
    assert unset.on_connect(ws_event("$connect", query={"token": "anything"})) == {"statusCode": 401}


def test_disconnect_removes_the_connection(handlers, connections):
    handlers.on_connect(ws_event("$connect", "a", query={"token": TOKEN}))
    handlers.on_connect(ws_event("$connect", "b", query={"token": TOKEN}))
    assert handlers.on_disconnect(ws_event("$disconnect", "a")) == {"statusCode": 200}
    assert connections.ids() == ["b"]


# --- ping / subscribe -------------------------------------------------------------------------------------


def test_ping_answers_pong(handlers, outbox):
    assert message(handlers, {"action": "ping"}) == {"statusCode": 200}
    assert outbox.of() == [{"type": "pong"}]


def test_subscribe_without_since_announces_the_position_only(handlers, outbox, position, dynamodb):
    journal_events(dynamodb, 3)
    position.value = (3, EPOCH, 4)
    message(handlers, {"action": "subscribe", "since": None, "epoch": None})
    assert outbox.of() == [{"type": "subscribed", "seq": 3, "epoch": EPOCH, "revision": 4}]
    message(handlers, {"action": "subscribe"}, connection_id="conn-2")  # since and epoch may be left out
    assert outbox.of("conn-2") == [{"type": "subscribed", "seq": 3, "epoch": EPOCH, "revision": 4}]


def test_subscribe_since_the_latest_seq_replays_nothing(handlers, outbox, position, dynamodb):
    journal_events(dynamodb, 3)
    position.value = (3, EPOCH, 4)
    message(handlers, {"action": "subscribe", "since": 3, "epoch": EPOCH})
    assert outbox.of() == [{"type": "subscribed", "seq": 3, "epoch": EPOCH, "revision": 4}]


def test_subscribe_since_the_middle_replays_the_missed_events_in_order(handlers, outbox, position, dynamodb):
    events = journal_events(dynamodb, 5)
    position.value = (5, EPOCH, 6)
    message(handlers, {"action": "subscribe", "since": 2, "epoch": EPOCH})
    assert outbox.of() == [{"type": "subscribed", "seq": 5, "epoch": EPOCH, "revision": 6}, *events[2:]]


def test_replay_stops_at_the_announced_seq(handlers, outbox, position, dynamodb):
    journal_events(dynamodb, 5)  # 5 is committed after position was read: it arrives by fan-out instead
    position.value = (4, EPOCH, 5)
    message(handlers, {"action": "subscribe", "since": 2, "epoch": EPOCH})
    assert [frame.get("seq") for frame in outbox.of()] == [4, 3, 4]


def test_subscribe_with_another_epoch_requires_a_resync(handlers, outbox, position, dynamodb):
    journal_events(dynamodb, 3)
    position.value = (3, EPOCH, 4)
    message(handlers, {"action": "subscribe", "since": 1, "epoch": "an-old-epoch"})
    assert outbox.of() == [
        {"type": "subscribed", "seq": 3, "epoch": EPOCH, "revision": 4},
        {"type": "resync_required", "seq": 3, "epoch": EPOCH},
    ]


def test_subscribe_since_without_epoch_requires_a_resync(handlers, outbox, position, dynamodb):
    journal_events(dynamodb, 3)
    position.value = (3, EPOCH, 4)
    message(handlers, {"action": "subscribe", "since": 1, "epoch": None})
    assert outbox.of()[-1] == {"type": "resync_required", "seq": 3, "epoch": EPOCH}


def test_subscribe_since_a_seq_from_the_future_requires_a_resync(handlers, outbox, position, dynamodb):
    journal_events(dynamodb, 3)
    position.value = (3, EPOCH, 4)
    message(handlers, {"action": "subscribe", "since": 9, "epoch": EPOCH})
    assert outbox.of()[-1] == {"type": "resync_required", "seq": 3, "epoch": EPOCH}


def test_subscribe_over_a_trimmed_gap_requires_a_resync(handlers, outbox, position, dynamodb):
    journal_events(dynamodb, 6)
    for seq in (1, 2, 3):
        dynamodb.delete_item(TableName=TABLES.events, Key={"epoch": {"S": EPOCH}, "seq": {"N": str(seq)}})
    position.value = (6, EPOCH, 7)
    message(handlers, {"action": "subscribe", "since": 1, "epoch": EPOCH})
    assert [frame["type"] for frame in outbox.of()] == ["subscribed", "resync_required"]
    message(handlers, {"action": "subscribe", "since": 3, "epoch": EPOCH}, connection_id="conn-2")
    assert [frame.get("seq") for frame in outbox.of("conn-2")] == [6, 4, 5, 6]


def test_subscribe_on_a_fresh_catalog(handlers, outbox, position):
    position.value = (0, EPOCH, 0)
    message(handlers, {"action": "subscribe", "since": 0, "epoch": EPOCH})
    assert outbox.of() == [{"type": "subscribed", "seq": 0, "epoch": EPOCH, "revision": 0}]


def test_a_replayed_event_over_128kb_is_sent_truncated(handlers, outbox, position, dynamodb):
    ids = [f"model-{index:06d}-with-a-long-name" for index in range(6_000)]
    big = RefreshResult(revision=2, changed=[ProviderChange(provider_id="reg", provider_name="Registry", added=ids)])
    event = build_event_message(1, EPOCH, "2026-01-01T00:00:00.000Z", big)
    dynamodb.transact_write_items(TransactItems=[EventJournal(None, TABLES.events).append_action(event)])
    position.value = (1, EPOCH, 2)
    message(handlers, {"action": "subscribe", "since": 0, "epoch": EPOCH})
    replayed = outbox.raw["conn-1"][1]
    assert len(replayed.encode("utf-8")) <= MAX_WIRE_BYTES
    frame = json.loads(replayed)
    assert frame["truncated"] is True and frame["payload"]["changed"][0]["added_count"] == 6_000


def test_a_connect_writes_once_and_a_subscribe_writes_nothing(handlers, dynamodb, outbox):
    """A burst of 1,000 clients costs 1,000 writes, not 2,000: the subscribe only reads the position."""
    writes: list[str] = []
    dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.*",
        lambda model, **_: writes.append(model.name) if model.name not in ("GetItem", "Query", "Scan") else None,
    )
    handlers.on_connect(ws_event("$connect", query={"token": TOKEN}))
    assert writes == ["PutItem"]  # the counter counts (the negative control)
    message(handlers, {"action": "subscribe", "since": None, "epoch": None})
    assert writes == ["PutItem"] and outbox.frames["conn-1"][-1]["type"] == "subscribed"


# --- anything else ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("this is not json", "bad_message"),
        ('{"action": "ping"', "bad_message"),
        ("", "bad_message"),
        ("[1, 2, 3]", "bad_message"),
        ('"ping"', "bad_message"),
        ("null", "bad_message"),
        ({"no": "action"}, "bad_message"),
        ({"action": 5}, "bad_message"),
        ({"action": "dance"}, "unknown_action"),
        ({"action": "subscribe", "since": "3", "epoch": EPOCH}, "invalid_field"),
        ({"action": "subscribe", "since": True, "epoch": EPOCH}, "invalid_field"),
        ({"action": "subscribe", "since": -1, "epoch": EPOCH}, "invalid_field"),
        ({"action": "subscribe", "since": 1.5, "epoch": EPOCH}, "invalid_field"),
        ({"action": "subscribe", "since": 1, "epoch": 7}, "invalid_field"),
    ],
)
def test_anything_else_gets_an_error_frame_and_the_connection_stays(handlers, outbox, connections, body, code):
    handlers.on_connect(ws_event("$connect", query={"token": TOKEN}))
    assert message(handlers, body) == {"statusCode": 200}
    (frame,) = outbox.of()
    assert frame["type"] == "error"
    assert frame["error"]["code"] == code
    assert isinstance(frame["error"]["message"], str) and frame["error"]["message"]
    assert connections.ids() == ["conn-1"]
    message(handlers, {"action": "ping"})  # still served afterwards
    assert outbox.of()[-1] == {"type": "pong"}


def test_a_message_without_a_body_is_an_error_frame(handlers, outbox):
    assert handlers.on_message(ws_event("$default")) == {"statusCode": 200}
    assert outbox.of()[0]["error"]["code"] == "bad_message"


def test_a_server_fault_answers_internal_error_and_keeps_the_connection(handlers, outbox, position):
    position.error = RuntimeError("manifest unreadable")
    assert message(handlers, {"action": "subscribe", "since": None, "epoch": None}) == {"statusCode": 200}
    (frame,) = outbox.of()
    assert frame == {"type": "error", "error": {"code": "internal_error", "message": "internal error; try again"}}


def test_a_client_gone_while_answering_is_forgotten_without_raising(handlers, outbox, connections):
    handlers.on_connect(ws_event("$connect", query={"token": TOKEN}))
    outbox.gone.add("conn-1")
    assert message(handlers, {"action": "ping"}) == {"statusCode": 200}
    assert connections.ids() == []
    handlers.on_connect(ws_event("$connect", "conn-2", query={"token": TOKEN}))
    outbox.gone.add("conn-2")
    assert message(handlers, "garbage", connection_id="conn-2") == {"statusCode": 200}
    assert connections.ids() == []


def test_nothing_secret_is_logged_on_a_refused_connect(handlers):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level=logging.DEBUG)
    logging.getLogger("model_catalog").addHandler(keep)  # it does not propagate to pytest's caplog
    try:
        handlers.on_connect(ws_event("$connect", query={"token": "leaked-guess-123"}))
        handlers.on_connect(ws_event("$connect", "conn-2", query={"token": TOKEN}))
    finally:
        logging.getLogger("model_catalog").removeHandler(keep)
    logged = " ".join(f"{record.getMessage()} {record.__dict__}" for record in records)
    assert "refused" in logged and "conn-2" in logged
    assert "leaked-guess-123" not in logged and TOKEN not in logged
