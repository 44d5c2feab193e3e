"""The local WebSocket gateway (devstack/gateway.py) against a tiny fake app, real WebSocket clients
and a real boto3 ``apigatewaymanagementapi`` client — independent of the catalog core."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devstack.gateway import MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, LocalWebSocketGateway, text_frames

GOOD = "good-token"


def management_client(gateway: LocalWebSocketGateway) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=gateway.management_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=BotoConfig(retries={"mode": "standard", "total_max_attempts": 1}),
    )


class FakeApp:
    """The three handlers with Chalice's (event, context) signature; records every event.

    ``$connect`` accepts ``token=good-token``, raises for ``token=boom`` and answers 401 otherwise.
    ``$default``: ``echo:<text>`` replies ``<text>`` through @connections from inside the handler (as the app's
    subscribe does); ``boom`` raises; anything else is only recorded.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.gateway: LocalWebSocketGateway | None = None
        self._changed = threading.Condition()
        self._client: Any = None

    def _record(self, event: dict[str, Any]) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of(self, route: str, connection_id: str | None = None) -> list[dict[str, Any]]:
        with self._changed:
            return [
                event
                for event in self.events
                if event["requestContext"]["routeKey"] == route
                and (connection_id is None or event["requestContext"]["connectionId"] == connection_id)
            ]

    def wait_for(self, route: str, connection_id: str | None = None, count: int = 1, timeout: float = 10) -> list:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.of(route, connection_id)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {route} event for {connection_id} within {timeout} s: {self.events}")
                self._changed.wait(remaining)
        return self.of(route, connection_id)

    def ws_connect(self, event: dict[str, Any], context: Any) -> dict[str, int]:
        self._record(event)
        token = (event.get("queryStringParameters") or {}).get("token")
        if token == "boom":
            raise RuntimeError("connect handler failed")
        return {"statusCode": 200 if token == GOOD else 401}

    def ws_message(self, event: dict[str, Any], context: Any) -> dict[str, int]:
        self._record(event)
        body = event["body"]
        if body == "boom":
            raise RuntimeError("message handler failed")
        if body.startswith("echo:"):
            assert self.gateway is not None
            if self._client is None:
                self._client = management_client(self.gateway)
            self._client.post_to_connection(
                ConnectionId=event["requestContext"]["connectionId"], Data=body[len("echo:") :].encode()
            )
        return {"statusCode": 200}

    def ws_disconnect(self, event: dict[str, Any], context: Any) -> dict[str, int]:
        self._record(event)
        return {"statusCode": 200}


@pytest.fixture
def app() -> FakeApp:
    return FakeApp()


@pytest.fixture
def make_gateway(app: FakeApp):
    started: list[LocalWebSocketGateway] = []

    def make(**options: Any) -> LocalWebSocketGateway:
        options.setdefault("test_hooks", True)
        gateway = LocalWebSocketGateway(app, **options)
        app.gateway = gateway
        gateway.start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


@pytest.fixture
def gateway(make_gateway) -> LocalWebSocketGateway:
    return make_gateway()


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 60))


async def connected_id(app: FakeApp, known: set[str] | None = None) -> str:
    """The id of the newest accepted connection (from the $connect events the fake app saw)."""
    await asyncio.sleep(0)
    known = known or set()
    ids = [e["requestContext"]["connectionId"] for e in app.of("$connect") if e["requestContext"]["connectionId"]]
    fresh = [cid for cid in ids if cid not in known]
    assert fresh, "no $connect event"
    return fresh[-1]


# -- $connect ---------------------------------------------------------------------------------------------
def test_connect_event_is_shaped_like_api_gateway(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    async def scenario() -> None:
        async with connect(f"{gateway.ws_url}/?token={GOOD}&flavour=a&flavour=b", user_agent_header="tester/1.0"):
            pass

    run(scenario())
    event = app.of("$connect")[0]
    context = event["requestContext"]
    assert context["eventType"] == "CONNECT"
    assert context["routeKey"] == "$connect"
    assert re.fullmatch(r"[A-Za-z0-9]{15}=", context["connectionId"])
    assert context["stage"] == "local"
    assert context["apiId"] == "local"
    assert context["domainName"] == f"127.0.0.1:{gateway.management_port}"
    assert f"http://{context['domainName']}/{context['stage']}" == gateway.management_endpoint
    assert isinstance(context["requestTimeEpoch"], int) and isinstance(context["connectedAt"], int)
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["userAgent"] == "tester/1.0"
    assert context["requestId"] and context["extendedRequestId"]
    assert event["queryStringParameters"] == {"token": GOOD, "flavour": "b"}
    assert event["multiValueQueryStringParameters"]["flavour"] == ["a", "b"]
    assert "Sec-WebSocket-Key" in event["headers"] and event["headers"]["Host"].startswith("127.0.0.1:")
    assert event["isBase64Encoded"] is False


def test_refused_connect_is_an_http_error_not_a_websocket(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    async def scenario(token: str) -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{gateway.ws_url}/?token={token}"):
                pass
        return refused.value.response.status_code

    assert run(scenario("wrong")) == 401
    assert run(scenario("boom")) == 500  # a $connect handler that raises refuses the client too
    assert len(app.of("$connect")) == 2
    assert app.of("$disconnect") == []  # never connected, so never disconnected
    assert gateway.connection_ids() == []


def test_missing_token_is_refused(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    async def scenario() -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(gateway.ws_url):
                pass
        return refused.value.response.status_code

    assert run(scenario()) == 401
    assert app.of("$connect")[0]["queryStringParameters"] is None


def test_unknown_path_is_forbidden(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    async def scenario() -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{gateway.ws_url}/elsewhere?token={GOOD}"):
                pass
        return refused.value.response.status_code

    assert run(scenario()) == 403
    assert app.of("$connect") == []


# -- $default -----------------------------------------------------------------------------------------------
def test_message_round_trip_with_a_reply_sent_from_inside_the_handler(
    app: FakeApp, gateway: LocalWebSocketGateway
) -> None:
    async def scenario() -> tuple[str, str]:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as websocket:
            await websocket.send("echo:hello")
            reply = await websocket.recv()
            return reply, await connected_id(app)

    reply, connection_id = run(scenario())
    assert reply == "hello"
    message = app.of("$default", connection_id)[0]
    assert message["body"] == "echo:hello"
    assert message["requestContext"]["eventType"] == "MESSAGE"
    assert message["requestContext"]["messageId"]
    assert message["isBase64Encoded"] is False


def test_messages_of_one_connection_reach_the_handler_in_order(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    async def scenario() -> str:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as websocket:
            for number in range(30):
                await websocket.send(f"m{number}")
            await websocket.send("echo:done")
            assert await websocket.recv() == "done"
            return await connected_id(app)

    connection_id = run(scenario())
    bodies = [event["body"] for event in app.of("$default", connection_id)]
    assert bodies == [f"m{number}" for number in range(30)] + ["echo:done"]


def test_a_failing_handler_answers_internal_server_error_and_keeps_the_connection(
    app: FakeApp, gateway: LocalWebSocketGateway
) -> None:
    async def scenario() -> tuple[dict, str, str]:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as websocket:
            await websocket.send("boom")
            error = json.loads(await websocket.recv())
            await websocket.send("echo:still here")
            return error, await websocket.recv(), await connected_id(app)

    error, after, connection_id = run(scenario())
    assert error["message"] == "Internal server error"
    assert error["connectionId"] == connection_id and error["requestId"]
    assert after == "still here"


def test_binary_frames_are_refused_with_1003(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    async def scenario() -> int | None:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as websocket:
            await websocket.send(b"\x00\x01")
            with pytest.raises(ConnectionClosed):
                await websocket.recv()
            return websocket.close_code

    assert run(scenario()) == 1003
    assert app.of("$default") == []


# -- limits ----------------------------------------------------------------------------------------------
def test_a_message_over_128_kb_closes_the_connection_with_1009(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    async def scenario() -> tuple[int | None, str]:
        async with connect(f"{gateway.ws_url}/?token={GOOD}", max_size=None) as websocket:
            connection_id = await connected_id(app)
            chunk = "x" * (MAX_FRAME_BYTES // 2)
            fragments = [chunk] * (MAX_MESSAGE_BYTES // len(chunk)) + ["y"]  # 128 KB + 1 in small frames
            with pytest.raises(ConnectionClosed):
                await websocket.send(fragments)
                await websocket.recv()
            return websocket.close_code, connection_id

    code, connection_id = run(scenario())
    assert code == 1009
    disconnect = app.wait_for("$disconnect", connection_id)[0]
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1009
    assert app.of("$default", connection_id) == []


def test_a_frame_over_32_kb_closes_the_connection_with_1009(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    async def scenario() -> int | None:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as websocket:
            with pytest.raises(ConnectionClosed):
                await websocket.send("x" * (MAX_FRAME_BYTES + 1))  # one frame
                await websocket.recv()
            return websocket.close_code

    assert run(scenario()) == 1009
    assert app.of("$default") == []


def test_a_large_message_in_small_frames_is_accepted(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    body = "z" * (MAX_MESSAGE_BYTES - 100)

    async def scenario() -> str:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as websocket:
            chunks = [body[i : i + MAX_FRAME_BYTES] for i in range(0, len(body), MAX_FRAME_BYTES)]
            await websocket.send(chunks)
            await websocket.send("echo:ok")
            assert await websocket.recv() == "ok"
            return await connected_id(app)

    connection_id = run(scenario())
    assert app.of("$default", connection_id)[0]["body"] == body


def test_outgoing_messages_are_cut_into_frames_of_at_most_32_kb() -> None:
    text = ("é" * 20_000 + "a" * 50_000 + "€" * 10_000).encode()  # multi-byte characters across cuts
    frames = text_frames(text, MAX_FRAME_BYTES)
    assert len(frames) > 1
    assert all(len(frame.encode()) <= MAX_FRAME_BYTES for frame in frames)
    assert "".join(frames).encode() == text
    assert text_frames(b"small", MAX_FRAME_BYTES) == ["small"]
    binary = text_frames(b"\xff" * (MAX_FRAME_BYTES + 5), MAX_FRAME_BYTES)
    assert [len(frame) for frame in binary] == [MAX_FRAME_BYTES, 5]


def test_idle_connections_are_closed_with_1001(app: FakeApp, make_gateway) -> None:
    gateway = make_gateway(idle_timeout_s=0.5)

    async def scenario() -> tuple[int | None, str]:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as websocket:
            connection_id = await connected_id(app)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(websocket.recv(), 20)
            return websocket.close_code, connection_id

    code, connection_id = run(scenario())
    assert code == 1001
    assert app.wait_for("$disconnect", connection_id)[0]["requestContext"]["disconnectReason"] == "Idle timeout"


def test_connections_end_at_the_maximum_duration_even_when_active(app: FakeApp, make_gateway) -> None:
    gateway = make_gateway(max_connection_s=1.0, idle_timeout_s=600)

    async def scenario() -> tuple[int | None, int]:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as websocket:
            sent = 0
            with pytest.raises(ConnectionClosed):
                for _ in range(200):  # stays active: a message every 0.1 s
                    await websocket.send("tick")
                    sent += 1
                    await asyncio.sleep(0.1)
            return websocket.close_code, sent

    code, sent = run(scenario())
    assert code == 1001
    assert sent < 200


# -- @connections ---------------------------------------------------------------------------------------
def test_management_api_post_get_delete_with_boto3(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    client = management_client(gateway)

    async def scenario() -> tuple[str, dict, int | None]:
        async with connect(f"{gateway.ws_url}/?token={GOOD}", user_agent_header="tester/2") as websocket:
            connection_id = await connected_id(app)
            await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b'{"hello": 1}')
            received = await websocket.recv()
            info = await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
            await asyncio.to_thread(client.delete_connection, ConnectionId=connection_id)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(websocket.recv(), 10)
            return received, {**info, "connection_id": connection_id}, websocket.close_code

    received, info, code = run(scenario())
    assert received == '{"hello": 1}'
    assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "tester/2"}
    assert info["ConnectedAt"] <= info["LastActiveAt"]
    assert code == 1000
    connection_id = info["connection_id"]
    assert app.wait_for("$disconnect", connection_id)[0]["requestContext"]["eventType"] == "DISCONNECT"
    for call in (
        lambda: client.post_to_connection(ConnectionId=connection_id, Data=b"late"),
        lambda: client.get_connection(ConnectionId=connection_id),
        lambda: client.delete_connection(ConnectionId=connection_id),
    ):
        with pytest.raises(client.exceptions.GoneException):
            call()


def test_unknown_connection_ids_are_gone(gateway: LocalWebSocketGateway) -> None:
    client = management_client(gateway)
    with pytest.raises(client.exceptions.GoneException) as gone:
        client.post_to_connection(ConnectionId="doesNotExist1=", Data=b"x")
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    with pytest.raises(client.exceptions.GoneException):
        client.get_connection(ConnectionId="doesNotExist1=")
    raw = requests.post(f"{gateway.management_endpoint}/@connections/nope", data=b"x", timeout=10)
    assert raw.status_code == 410
    assert raw.headers["x-amzn-ErrorType"] == "GoneException"
    assert "message" in raw.json()


def test_a_client_that_closed_is_gone(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    async def scenario() -> str:
        async with connect(f"{gateway.ws_url}/?token={GOOD}"):
            return await connected_id(app)

    connection_id = run(scenario())
    disconnect = app.wait_for("$disconnect", connection_id)[0]
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000
    client = management_client(gateway)
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId=connection_id, Data=b"x")


def test_payloads_over_128_kb_are_refused_with_413(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    client = management_client(gateway)

    async def scenario() -> tuple[str, str]:
        async with connect(f"{gateway.ws_url}/?token={GOOD}", max_size=None) as websocket:
            connection_id = await connected_id(app)
            with pytest.raises(client.exceptions.PayloadTooLargeException):
                await asyncio.to_thread(
                    client.post_to_connection, ConnectionId=connection_id, Data=b"a" * (MAX_MESSAGE_BYTES + 1)
                )
            exactly = "b" * MAX_MESSAGE_BYTES
            await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=exactly.encode())
            return await websocket.recv(), exactly

    received, expected = run(scenario())
    assert received == expected  # the largest allowed message arrives whole (sent in 32 KB frames)


def test_wrong_stage_or_path_is_forbidden(gateway: LocalWebSocketGateway) -> None:
    base = gateway.management_endpoint.rsplit("/", 1)[0]
    for url in (f"{base}/prod/@connections/abc", f"{base}/local/connections/abc", f"{base}/local/@connections/"):
        response = requests.post(url, data=b"x", timeout=10)
        assert response.status_code == 403, url
        assert response.headers["x-amzn-ErrorType"] == "ForbiddenException"


def _raw_exchange(gateway: LocalWebSocketGateway, data: bytes, answers: int = 1) -> list[bytes]:
    """Send raw bytes to the management API; the answers (status line and headers, up to ``answers``), then b""
    once the gateway closed the connection (or nothing more if it kept it open)."""
    seen: list[bytes] = []
    with socket.create_connection(("127.0.0.1", gateway.management_port), timeout=5) as sock:
        sock.sendall(data)
        buffered = b""
        while len(seen) < answers + 1:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                seen.append(b"")
                break
            buffered += chunk
            while b"\r\n\r\n" in buffered:
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                buffered = buffered[length:]
                seen.append(head)
            if len(seen) == answers:
                sock.settimeout(0.5)
    return seen


def test_management_api_keeps_connections_alive_and_closes_on_request(gateway: LocalWebSocketGateway) -> None:
    get = b"GET /local/@connections/nope HTTP/1.1\r\nHost: x\r\n\r\n"
    kept = _raw_exchange(gateway, get + get, answers=2)
    assert [answer.split(b"\r\n")[0] for answer in kept] == [b"HTTP/1.1 410 Gone"] * 2  # and no close after them
    closing = _raw_exchange(gateway, get.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + get, answers=1)
    assert closing[0].startswith(b"HTTP/1.1 410 Gone") and b"Connection: close" in closing[0]
    assert closing[1:] == [b""]  # closed: the second request was not answered


def test_management_api_refuses_malformed_requests_and_closes(gateway: LocalWebSocketGateway) -> None:
    cases = {
        b"NONSENSE\r\n\r\n": 400,
        b"POST /local/@connections/x HTTP/1.1\r\nbroken header\r\n\r\n": 400,
        b"POST /local/@connections/x HTTP/1.1\r\nContent-Length: -3\r\n\r\n": 400,
        b"POST /local/@connections/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n": 411,
        b"POST /local/@connections/x HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n": 413,
        b"PUT /local/@connections/x HTTP/1.1\r\n\r\n": 501,
    }
    for request, status in cases.items():
        answers = _raw_exchange(gateway, request)
        assert answers[0].split(b" ")[:2] == [b"HTTP/1.1", str(status).encode()], request
        if status != 501:
            assert answers[1:] == [b""], request  # the connection cannot be trusted after it: closed


def test_stop_does_not_wait_for_kept_alive_management_clients(app: FakeApp) -> None:
    gateway = LocalWebSocketGateway(app, test_hooks=True)
    gateway.start()
    idle = socket.create_connection(("127.0.0.1", gateway.management_port), timeout=5)
    idle.sendall(b"GET /local/@connections/nope HTTP/1.1\r\n\r\n")
    assert idle.recv(65536).startswith(b"HTTP/1.1 410")
    started = time.monotonic()
    gateway.stop()
    assert time.monotonic() - started < 5
    assert idle.recv(65536) == b""  # the gateway closed it
    idle.close()


# -- test hooks -------------------------------------------------------------------------------------------
def test_drop_hook_cuts_the_client_without_disconnect(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    client = management_client(gateway)
    base = gateway.management_endpoint.rsplit("/", 1)[0]

    async def scenario() -> tuple[str, int | None]:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as websocket:
            connection_id = await connected_id(app)
            assert gateway.connection_ids() == [connection_id]
            response = await asyncio.to_thread(requests.post, f"{base}/_test/drop/{connection_id}", timeout=10)
            assert response.status_code == 204
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(websocket.recv(), 10)
            return connection_id, websocket.close_code

    connection_id, code = run(scenario())
    assert code == 1006  # abnormal closure: no close frame, the TCP connection just went away
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId=connection_id, Data=b"x")

    # A later connection's full lifecycle proves the handlers ran since; the dropped one never got $disconnect.
    async def another() -> str:
        async with connect(f"{gateway.ws_url}/?token={GOOD}"):
            return await connected_id(app, known={connection_id})

    other = run(another())
    app.wait_for("$disconnect", other)
    assert app.of("$disconnect", connection_id) == []
    assert requests.get(f"{base}/_test/connections", timeout=10).json() == {"connections": []}


def test_limit_exceeded_hook_throttles_the_next_posts(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    client = management_client(gateway)
    base = gateway.management_endpoint.rsplit("/", 1)[0]

    async def scenario() -> str:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as websocket:
            connection_id = await connected_id(app)
            requests.post(f"{base}/_test/limit_exceeded?count=2", timeout=10).raise_for_status()
            for _ in range(2):
                with pytest.raises(client.exceptions.LimitExceededException):
                    await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"x")
            await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"third")
            return await websocket.recv()

    assert run(scenario()) == "third"


def test_test_hooks_are_off_unless_enabled(app: FakeApp, make_gateway) -> None:
    gateway = make_gateway(test_hooks=False)
    base = gateway.management_endpoint.rsplit("/", 1)[0]
    assert requests.post(f"{base}/_test/drop/anything", timeout=10).status_code == 403
    assert requests.get(f"{base}/_test/connections", timeout=10).status_code == 403


# -- many clients, shutdown ---------------------------------------------------------------------------------
def test_25_concurrent_clients(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    client = management_client(gateway)

    async def one(number: int, ready: asyncio.Barrier, results: dict) -> None:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as websocket:
            await websocket.send(f"echo:reply-{number}")
            results[number] = [await websocket.recv()]
            await ready.wait()  # everyone is connected and answered: now a broadcast through @connections
            results[number].append(await asyncio.wait_for(websocket.recv(), 30))

    async def scenario() -> dict:
        results: dict[int, list[str]] = {}
        ready = asyncio.Barrier(26)
        tasks = [asyncio.create_task(one(number, ready, results)) for number in range(25)]
        while len(results) < 25:
            await asyncio.sleep(0.05)
            for task in tasks:
                if task.done():
                    task.result()  # surface a failed client at once
        ids = gateway.connection_ids()
        assert len(ids) == 25
        for connection_id in ids:
            await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"broadcast")
        await ready.wait()
        await asyncio.gather(*tasks)
        return results

    results = run(scenario())
    assert results == {number: [f"reply-{number}", "broadcast"] for number in range(25)}
    connect_ids = {event["requestContext"]["connectionId"] for event in app.of("$connect")}
    assert len(connect_ids) == 25
    for connection_id in connect_ids:
        app.wait_for("$disconnect", connection_id)


def test_stop_closes_clients_with_1001_and_sends_their_disconnect(app: FakeApp) -> None:
    gateway = LocalWebSocketGateway(app)
    app.gateway = gateway
    gateway.start()
    closed = threading.Event()
    outcome: dict[str, Any] = {}

    async def client() -> None:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as websocket:
            outcome["id"] = await connected_id(app)
            closed.set()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(websocket.recv(), 30)
            outcome["code"] = websocket.close_code

    thread = threading.Thread(target=run, args=(client(),))
    thread.start()
    assert closed.wait(30)
    gateway.stop()
    thread.join(30)
    assert outcome["code"] == 1001
    assert app.of("$disconnect", outcome["id"]), "stopping the gateway must run $disconnect"
    with pytest.raises(OSError):
        asyncio.run(asyncio.wait_for(connect(f"{gateway.ws_url}/?token={GOOD}"), 5))
