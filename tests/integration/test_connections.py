"""Connections in DynamoDB and the fan-out: 410 pruning, throttling retries, truncation, never raising."""

from __future__ import annotations

import json
import threading
import time

import pytest
from botocore.exceptions import ClientError

from chalicelib.core.domain import ProviderChange, RefreshResult
from chalicelib.core.events import build_event_message
from chalicelib.errors import ConnectionGone
from chalicelib.events import MAX_WIRE_BYTES, Fanout, WebsocketSender
from chalicelib.settings import TableNames
from chalicelib.storage.connections import MAX_CONNECTION_S, ConnectionStore

TABLES = TableNames()








@pytest.fixture
def store(dynamodb, clock):
    return ConnectionStore(dynamodb, TABLES.connections, clock=clock)


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PostToConnection",
    )


class FakeSend:
    """Records what ``app.websocket_api.send`` would have sent; scripted failures per connection."""

    def __init__(self, script: dict[str, list[BaseException]] | None = None):
        self.script = {key: list(value) for key, value in (script or {}).items()}
        self.sent: dict[str, list[str]] = {}
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, connection_id: str, text: str) -> None:
        with self.lock:
            self.attempts[connection_id] = self.attempts.get(connection_id, 0) + 1
            failures = self.script.get(connection_id)
            failure = failures.pop(0) if failures else None
        if failure is not None:
            raise failure
        with self.lock:
            self.sent.setdefault(connection_id, []).append(text)


def event_message(seq: int = 1, revision: int = 3) -> dict:
    result = RefreshResult(
        revision=revision, changed=[ProviderChange(provider_id="openai", provider_name="OpenAI", added=["gpt-x"])]
    )
    return build_event_message(seq, "ep", "2026-01-01T00:00:00.000Z", result)


# --- ConnectionStore --------------------------------------------------------------------------------------


def test_add_stores_the_connection_with_a_ttl_of_at_most_two_hours(dynamodb, store, clock):
    store.add("conn-1", "203.0.113.9")
    item = dynamodb.get_item(TableName=TABLES.connections, Key={"connection_id": {"S": "conn-1"}})["Item"]
    assert item["source_ip"]["S"] == "203.0.113.9"
    assert item["connected_at"]["S"] == "2023-11-14T22:13:20.000Z"
    expires_at = int(item["expires_at"]["N"])
    assert clock.now < expires_at <= clock.now + 2 * 60 * 60
    assert MAX_CONNECTION_S == 7_200


def test_remove_deletes_the_row(store):
    store.add("conn-1")
    store.add("conn-2")
    store.remove("conn-1")
    store.remove("never-there")  # idempotent
    assert store.ids() == ["conn-2"]


def test_pages_paginate_and_return_ids_only(store):
    for index in range(7):
        store.add(f"conn-{index}", "198.51.100.1")
    pages = list(store.pages(page_size=3))
    assert len(pages) >= 3
    assert all(isinstance(cid, str) for page in pages for cid in page)
    assert sorted(cid for page in pages for cid in page) == [f"conn-{index}" for index in range(7)]


def test_pages_skip_rows_past_their_ttl(store, clock):
    store.add("old")
    clock.now += MAX_CONNECTION_S + 1
    store.add("new")
    assert store.ids() == ["new"]


def test_counting_connections_stops_past_the_limit_and_skips_expired_rows(store, clock):
    store.add("old")
    clock.now += MAX_CONNECTION_S + 1
    for index in range(5):
        store.add(f"c{index}")
    assert store.count_up_to(10) == 5  # the expired row does not count
    assert store.count_up_to(2) == 3  # "more than 2" is all a budget needs to know
    assert store.count_up_to(5) == 5


# --- Fanout -----------------------------------------------------------------------------------------------


def test_broadcast_reaches_every_connection_once_across_pages(store):
    ids = [f"c{index:03d}" for index in range(57)]
    for cid in ids:
        store.add(cid)
    send = FakeSend()
    stats = Fanout(store, send, max_workers=4, page_size=10).broadcast(event_message())
    assert (stats.sent, stats.gone, stats.failed, stats.connections) == (57, 0, 0, 57)
    assert sorted(send.sent) == ids
    assert all(len(texts) == 1 for texts in send.sent.values())
    assert json.loads(send.sent["c000"][0]) == event_message()
    assert stats.truncated is False


def test_broadcast_with_no_connections_sends_nothing(store):
    send = FakeSend()
    stats = Fanout(store, send).broadcast(event_message())
    assert (stats.sent, stats.gone, stats.failed) == (0, 0, 0) and send.attempts == {}


def test_a_410_gone_connection_is_pruned(store):
    for cid in ("alive", "vanished"):
        store.add(cid)
    send = FakeSend({"vanished": [ConnectionGone("vanished")]})
    stats = Fanout(store, send).broadcast(event_message())
    assert (stats.sent, stats.gone, stats.failed) == (1, 1, 0)
    assert store.ids() == ["alive"]
    assert send.attempts["vanished"] == 1  # no retry on 410


def test_the_sender_turns_api_gateways_410_into_connection_gone():
    """A real management-API client, stubbed: GoneException (410) is the modelled exception the sender catches."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("apigatewaymanagementapi", endpoint_url="https://x.example/api", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_client_error("post_to_connection", service_error_code="GoneException", http_status_code=410)
    stub.add_response("post_to_connection", {}, {"ConnectionId": "alive", "Data": b"{}"})
    sender = WebsocketSender(lambda: client)
    with stub:
        with pytest.raises(ConnectionGone):
            sender.send("vanished", "{}")
        sender.send("alive", "{}")


def test_limit_exceeded_is_retried_with_exponential_backoff(store):
    store.add("busy")
    delays: list[float] = []
    send = FakeSend({"busy": [client_error("LimitExceededException", 429), client_error("LimitExceededException")]})
    fanout = Fanout(store, send, base_delay_s=0.1, max_attempts=5, sleep=delays.append)
    stats = fanout.broadcast(event_message())
    assert (stats.sent, stats.failed) == (1, 0)
    assert send.attempts["busy"] == 3
    assert len(delays) == 2
    assert 0.05 <= delays[0] <= 0.1 and 0.1 <= delays[1] <= 0.2  # equal jitter around 0.1 * 2**attempt


def test_throttling_that_never_ends_gives_up_and_counts_a_failure(store):
    store.add("busy")
    store.add("fine")
    delays: list[float] = []
    send = FakeSend({"busy": [client_error("TooManyRequestsException", 429)] * 10})
    stats = Fanout(store, send, max_attempts=4, max_delay_s=0.3, sleep=delays.append).broadcast(event_message())
    assert (stats.sent, stats.gone, stats.failed) == (1, 0, 1)
    assert send.attempts["busy"] == 4 and len(delays) == 3
    assert max(delays) <= 0.3
    assert store.ids() == sorted(["busy", "fine"])  # throttled is not gone: the row stays


def test_other_send_failures_are_counted_never_raised_nor_retried(store):
    for cid in ("forbidden", "boom", "ok"):
        store.add(cid)
    send = FakeSend({"forbidden": [client_error("ForbiddenException", 403)], "boom": [RuntimeError("socket closed")]})
    delays: list[float] = []
    stats = Fanout(store, send, sleep=delays.append).broadcast(event_message())
    assert (stats.sent, stats.gone, stats.failed) == (1, 0, 2)
    assert send.attempts == {"forbidden": 1, "boom": 1, "ok": 1} and delays == []
    assert len(store.ids()) == 3


def test_a_failing_connections_table_never_raises(dynamodb, clock):
    broken = ConnectionStore(dynamodb, "no-such-table", clock=clock)
    stats = Fanout(broken, FakeSend()).broadcast(event_message())
    assert stats.connections == 0 and stats.incomplete is True


def test_pruning_failure_is_not_raised(store, clock):
    store.add("vanished")

    class FlakyStore(ConnectionStore):
        def remove(self, connection_id: str) -> None:
            raise client_error("ProvisionedThroughputExceededException")

    flaky = FlakyStore(store._client, TABLES.connections, clock=clock)
    stats = Fanout(flaky, FakeSend({"vanished": [ConnectionGone("vanished")]})).broadcast(event_message())
    assert stats.gone == 1


def test_a_message_over_128kb_is_sent_truncated(store):
    store.add("c1")
    ids = [f"model-{index:06d}-with-a-rather-long-suffix" for index in range(4_000)]
    big = RefreshResult(revision=5, changed=[ProviderChange(provider_id="reg", provider_name="Registry", added=ids)])
    message = build_event_message(2, "ep", "2026-01-01T00:00:00.000Z", big)
    assert len(json.dumps(message).encode()) > 128 * 1024
    send = FakeSend()
    stats = Fanout(store, send).broadcast(message)
    (text,) = send.sent["c1"]
    assert len(text.encode("utf-8")) <= MAX_WIRE_BYTES <= 128 * 1024
    frame = json.loads(text)
    assert frame["truncated"] is True and frame["payload"]["truncated"] is True
    assert frame["seq"] == 2 and frame["payload"]["revision"] == 5
    assert frame["payload"]["changed"][0]["provider_id"] == "reg"
    assert frame["payload"]["changed"][0]["added_count"] == 4_000
    assert stats.truncated is True


def test_concurrency_is_bounded_by_max_workers(store):
    for index in range(40):
        store.add(f"c{index}")
    in_flight = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()

    def slow_send(connection_id: str, text: str) -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
            if in_flight == 3:
                release.set()
        release.wait(5)  # hold the first three so every worker gets busy at once
        time.sleep(0.001)
        with lock:
            in_flight -= 1

    stats = Fanout(store, slow_send, max_workers=3).broadcast(event_message())
    assert stats.sent == 40
    assert peak == 3


def test_the_sender_creates_its_client_once_under_concurrent_sends(store):
    """The fan-out sends from many threads at once: the sender's lazy client is created exactly once."""
    created: list[int] = []
    sent: list[str] = []
    lock = threading.Lock()

    class Client:
        def post_to_connection(self, ConnectionId: str, Data: bytes) -> None:  # noqa: N803 (boto3's names)
            with lock:
                sent.append(ConnectionId)

    def factory() -> Client:
        created.append(1)
        time.sleep(0.05)  # slow, like building a boto3 client: other threads arrive meanwhile
        return Client()

    for index in range(30):
        store.add(f"c{index}")
    stats = Fanout(store, WebsocketSender(factory).send, max_workers=8).broadcast(event_message())
    assert (stats.sent, stats.failed) == (30, 0)
    assert created == [1] and len(sent) == 30
