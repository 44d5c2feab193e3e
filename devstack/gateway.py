"""A local stand-in for API Gateway's WebSocket API, in front of the app's Chalice WebSocket handlers.

What it does, like API Gateway:

- Each upgrade calls ``app.ws_connect(event, context)`` with a ``$connect`` event (query string incl. ``token``,
  headers, ``requestContext`` with ``connectionId``, ``apiId``, ``stage``, ``domainName``, ``identity``…).
  A non-2xx ``statusCode`` (or an exception) refuses the upgrade with that HTTP status (500 when it raised):
  the client never gets a WebSocket.
- Each text message calls ``app.ws_message`` with ``routeKey`` ``$default`` and ``body`` = the text. The route is
  one-way, as Chalice deploys it: the return value is ignored. A handler that raises makes the gateway send
  ``{"message": "Internal server error", "connectionId": ..., "requestId": ...}``; the connection stays open.
- A closed connection calls ``app.ws_disconnect`` (``disconnectStatusCode``, ``disconnectReason``).
- The ``@connections`` management API on its own loopback port: ``POST``/``GET``/``DELETE
  /{stage}/@connections/{id}``; unknown or closed ids answer ``410`` ``GoneException``, payloads over 128 KB
  ``413`` ``PayloadTooLargeException`` — the error shape botocore's ``apigatewaymanagementapi`` client turns
  into ``client.exceptions.GoneException`` etc. ``domainName`` in events is this server's ``host:port``, so
  ``http://{domainName}/{stage}`` is the management endpoint.
- Limits: 128 KB per message and 32 KB per frame from the client (close code 1009 when exceeded — websockets
  enforces both, messages and fragments), 10 min idle (no message from the client) and 2 h per connection
  (close code 1001). Messages sent through ``@connections`` go out in frames of at most 32 KB, as API Gateway
  fragments them. Binary frames from clients are refused (close code 1003). No keepalive pings from the server
  and no ``permessage-deflate``, like API Gateway.

Handlers block (DynamoDB, HTTP), so every invocation runs on a worker thread; the event loop only moves frames.
A handler may call ``@connections`` for its own connection (a reply to ``subscribe``): the management API is an
HTTP/1.1 server (keep-alive, ``Content-Length`` bodies) on the same event loop, which is free while the handler
waits for the answer.

Messages of one connection are handled one after another, in order (API Gateway gives no ordering guarantee;
the local gateway is stricter, which only removes races). A client whose TCP connection breaks during the
opening handshake after ``$connect`` succeeded gets no ``$disconnect`` (its record stays until it is pruned on
410 or expires), which API Gateway would send.

Test hooks (only with ``test_hooks=True``, i.e. ``MODEL_CATALOG_LOCAL_TEST_HOOKS=1`` in the stack), on the
management server: ``POST /_test/drop/{id}`` drops the TCP connection *without* ``$disconnect`` (a client that
vanished); ``POST /_test/limit_exceeded?count=N`` makes the next N ``POST @connections`` answer 429
``LimitExceededException``; ``GET /_test/connections`` lists the open connection ids.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import secrets
import socket
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from chalicelib.clock import utc_iso
from chalicelib.logs import get_logger
from devstack import REQUEST_IDS, LambdaContext, request_uuid

log = get_logger("local.gateway")

MAX_MESSAGE_BYTES = 128 * 1024
MAX_FRAME_BYTES = 32 * 1024
IDLE_TIMEOUT_S = 10 * 60
MAX_CONNECTION_S = 2 * 60 * 60
CONNECT_TIMEOUT_S = 35  # API Gateway's integration timeout is 29 s
_MAX_READ_BYTES = 8 * 1024 * 1024
_ID_ALPHABET = string.ascii_letters + string.digits


class WebSocketApp(Protocol):
    """What the gateway drives: the three Chalice WebSocket handlers, called like Lambda calls them."""

    def ws_connect(self, event: dict[str, Any], context: Any) -> Any: ...

    def ws_message(self, event: dict[str, Any], context: Any) -> Any: ...

    def ws_disconnect(self, event: dict[str, Any], context: Any) -> Any: ...


class GoneError(Exception):
    """The connection id is unknown or the connection is closed (API Gateway: 410 GoneException)."""


class PayloadTooLargeError(Exception):
    """The message exceeds 128 KB (API Gateway: 413 PayloadTooLargeException)."""


class LimitExceededError(Exception):
    """Simulated throttling (test hook; API Gateway: 429 LimitExceededException)."""


@dataclass
class LocalConnection:
    connection_id: str
    websocket: ServerConnection
    connected_at: float
    source_ip: str
    user_agent: str | None
    headers: dict[str, str]
    multi_value_headers: dict[str, list[str]]
    last_active_at: float = 0.0
    closing: bool = False
    dropped: bool = False  # closed without $disconnect (test hook)
    close_reason: str | None = None
    # Set once the handshake completed; @connections sends wait for it (the id is registered when $connect
    # succeeds, before the client sees 101, so a reply can never beat the registration).
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    def describe(self) -> dict[str, Any]:
        """The body of ``GET @connections/{id}`` on the wire (boto3 shows ConnectedAt, Identity, LastActiveAt)."""
        return {
            "connectedAt": _iso(self.connected_at),
            "identity": {"sourceIp": self.source_ip, "userAgent": self.user_agent or ""},
            "lastActiveAt": _iso(self.last_active_at),
        }


def _quiet_logger(name: str) -> logging.Logger:
    """The websockets library logs every open/close at INFO; keep only its warnings and errors."""
    logger = get_logger(name)
    logger.setLevel(logging.WARNING)
    return logger


def _iso(epoch_s: float) -> str:
    return utc_iso(epoch_s)


def _request_id() -> str:
    # From devstack.REQUEST_IDS (no system call); connection ids still come from the OS's random source.
    return _random_id(16, REQUEST_IDS.randrange) + "="


def _random_id(length: int, draw: Callable[[int], int] = secrets.randbelow) -> str:
    # One draw per id, not one per character (a connect makes three ids).
    number = draw(len(_ID_ALPHABET) ** length)
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[index])
    return "".join(chars)


def new_connection_id() -> str:
    """Shaped like API Gateway's (``GyvAmdMzoAMCKpw=``), without ``+``/``/`` so it is path-safe."""
    return _random_id(15) + "="


def _status_of(result: Any) -> int:
    status = result.get("statusCode", 200) if isinstance(result, dict) else getattr(result, "status_code", 200)
    try:
        return int(status)
    except (TypeError, ValueError):
        return 500


def text_frames(data: bytes, max_frame_bytes: int) -> list[str] | list[bytes]:
    """Split an outgoing message into frames of at most ``max_frame_bytes``.

    UTF-8 text becomes text fragments cut on character boundaries; anything else goes out as binary.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return [data[i : i + max_frame_bytes] for i in range(0, len(data), max_frame_bytes)] or [b""]
    frames: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + max_frame_bytes, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # never cut inside a UTF-8 sequence
            end -= 1
        frames.append(data[start:end].decode("utf-8"))
        start = end
    return frames or [""]


class LocalWebSocketGateway:
    """The WebSocket server and the ``@connections`` HTTP server, both on one asyncio loop (its own thread)."""

    def __init__(
        self,
        app: WebSocketApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        management_port: int = 0,
        sock: socket.socket | None = None,
        management_sock: socket.socket | None = None,
        stage: str = "local",
        api_id: str = "local",
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        max_connection_s: float = MAX_CONNECTION_S,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        handler_workers: int = 64,
        handler_timeout_s: float = 30.0,
        send_timeout_s: float = 10.0,
        test_hooks: bool = False,
    ):
        self._app = app
        self._host = host
        self._port = port
        self._management_port = management_port
        self._sock = sock
        self._management_sock = management_sock
        self.stage = stage
        self.api_id = api_id
        self.idle_timeout_s = idle_timeout_s
        self.max_connection_s = max_connection_s
        self.max_message_bytes = max_message_bytes
        self.max_frame_bytes = max_frame_bytes
        self.handler_timeout_s = handler_timeout_s
        self.send_timeout_s = send_timeout_s
        self.test_hooks = test_hooks
        self._executor = concurrent.futures.ThreadPoolExecutor(handler_workers, thread_name_prefix="ws-handler")
        self._connections: dict[str, LocalConnection] = {}
        self._registry_lock = threading.Lock()
        self._limit_exceeded_remaining = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[Any]] = set()  # loop-thread only
        self._management: asyncio.Server | None = None
        self._management_api = _ManagementApi(self)
        self.port = 0
        self.management_port = 0

    # -- addresses ------------------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"ws://{self._host}:{self.port}"

    @property
    def management_endpoint(self) -> str:
        """The ``endpoint_url`` for boto3's ``apigatewaymanagementapi`` client (stage included)."""
        return f"http://{self._host}:{self.management_port}/{self.stage}"

    @property
    def domain_name(self) -> str:
        return f"{self._host}:{self.management_port}"

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run_loop, args=(started,), name="ws-gateway", daemon=True)
        self._thread.start()
        started.result(timeout=15)
        log.info(
            "websocket gateway serving",
            extra={"ws_url": self.ws_url, "management_endpoint": self.management_endpoint},
        )

    def _run_loop(self, started: concurrent.futures.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(self._serve())
            self.port = self._server.sockets[0].getsockname()[1]
            self._management = loop.run_until_complete(self._serve_management())
            self.management_port = self._management.sockets[0].getsockname()[1]
            self._reaper = loop.create_task(self._reap())
        except BaseException as exc:
            started.set_exception(exc)
            if self._server is not None:
                self._server.close()
            loop.close()
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> Server:
        options: dict[str, Any] = {
            "process_request": self._process_request,
            "max_size": (self.max_message_bytes, self.max_frame_bytes),
            "compression": None,
            "ping_interval": None,
            "ping_timeout": None,
            "open_timeout": CONNECT_TIMEOUT_S,
            "close_timeout": 5,
            "server_header": "model-catalog-local-gateway",
            "logger": _quiet_logger("local.gateway.websockets"),
        }
        if self._sock is not None:
            return await serve(self._handle, sock=self._sock, **options)
        return await serve(self._handle, self._host, self._port, **options)

    async def _serve_management(self) -> asyncio.Server:
        api = self._management_api
        if self._management_sock is not None:
            return await asyncio.start_server(api.serve_client, sock=self._management_sock, limit=_MAX_HEAD_BYTES)
        return await asyncio.start_server(
            api.serve_client, self._host, self._management_port, limit=_MAX_HEAD_BYTES
        )

    def stop(self, timeout_s: float = 15.0) -> None:
        """Close every client with 1001 (each gets its ``$disconnect``), then stop both servers."""
        loop = self._loop
        if loop is not None and self._thread is not None and self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(timeout_s), loop)
            with contextlib.suppress(Exception):
                future.result(timeout=timeout_s + 5)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=5)
        self._executor.shutdown(wait=False, cancel_futures=True)
        log.info("websocket gateway stopped")

    async def _shutdown(self, timeout_s: float) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        if self._server is not None:
            with self._registry_lock:
                for connection in self._connections.values():
                    connection.closing = True
                    connection.close_reason = "Going away"
            self._server.close(close_connections=True)  # close code 1001 (going away)
            try:
                await asyncio.wait_for(self._server.wait_closed(), timeout_s)
            except TimeoutError:
                log.warning("websocket handlers did not finish in time", extra={"timeout_s": timeout_s})
        if self._background:
            _done, pending = await asyncio.wait(set(self._background), timeout=5)
            for task in pending:
                task.cancel()
        if self._management is not None:
            self._management.close()
            self._management_api.disconnect_all()  # kept-alive clients: the server would wait for them
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._management.wait_closed(), 5)

    # -- handler invocation -------------------------------------------------------------------------
    async def _invoke(self, handler_name: str, event: dict[str, Any]) -> Any:
        handler = getattr(self._app, handler_name)
        context = LambdaContext(f"model-catalog-local-{handler_name}", self.handler_timeout_s)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, handler, event, context)

    def _request_context(
        self, connection_id: str, route_key: str, event_type: str, connected_at: float, identity: dict[str, Any]
    ) -> dict[str, Any]:
        now = time.time()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": _request_id(),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": int(connected_at * 1000),
            "requestTimeEpoch": int(now * 1000),
            "identity": identity,
            "requestId": _request_id(),
            "domainName": self.domain_name,
            "connectionId": connection_id,
            "apiId": self.api_id,
        }

    @staticmethod
    def _identity(source_ip: str, user_agent: str | None) -> dict[str, Any]:
        identity: dict[str, Any] = {"sourceIp": source_ip}
        if user_agent:
            identity["userAgent"] = user_agent
        return identity

    # -- $connect -------------------------------------------------------------------------------------
    async def _process_request(self, websocket: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") not in ("", f"/{self.stage}"):
            return _reject(websocket, HTTPStatus.FORBIDDEN, "Forbidden")
        connection_id = new_connection_id()
        connected_at = time.time()
        peer = websocket.remote_address
        source_ip = str(peer[0]) if peer else "127.0.0.1"
        user_agent = request.headers.get("User-Agent")
        headers: dict[str, str] = {}
        multi_value_headers: dict[str, list[str]] = {}
        for name, value in request.headers.raw_items():
            headers[name] = value
            multi_value_headers.setdefault(name, []).append(value)
        headers.setdefault("X-Forwarded-For", source_ip)
        multi_value_headers.setdefault("X-Forwarded-For", [source_ip])
        query = parse_qs(parts.query, keep_blank_values=True)
        event = {
            "headers": headers,
            "multiValueHeaders": multi_value_headers,
            "queryStringParameters": {key: values[-1] for key, values in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "requestContext": self._request_context(
                connection_id, "$connect", "CONNECT", connected_at, self._identity(source_ip, user_agent)
            ),
            "isBase64Encoded": False,
        }
        try:
            result = await self._invoke("ws_connect", event)
        except Exception:
            log.exception("$connect handler raised; connection refused", extra={"connection_id": connection_id})
            return _reject(websocket, HTTPStatus.INTERNAL_SERVER_ERROR, "Internal server error")
        status = _status_of(result)
        if not 200 <= status < 300:
            log.info("connection refused by $connect", extra={"connection_id": connection_id, "status": status})
            try:
                refusal = HTTPStatus(status) if status >= 400 else HTTPStatus.FORBIDDEN
            except ValueError:
                refusal = HTTPStatus.FORBIDDEN
            return _reject(websocket, refusal, refusal.phrase)
        connection = LocalConnection(
            connection_id=connection_id,
            websocket=websocket,
            connected_at=connected_at,
            source_ip=source_ip,
            user_agent=user_agent,
            headers=headers,
            multi_value_headers=multi_value_headers,
            last_active_at=connected_at,
        )
        websocket.local_connection = connection  # type: ignore[attr-defined]
        with self._registry_lock:
            self._connections[connection_id] = connection
        self._in_background(self._forget_if_never_opened(connection))
        return None

    def _in_background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _forget_if_never_opened(self, connection: LocalConnection) -> None:
        """The handshake failed after $connect succeeded: unregister it and send its $disconnect."""
        await connection.websocket.wait_closed()
        if connection.opened.is_set():
            return  # _handle owns the rest of its life
        with self._registry_lock:
            self._connections.pop(connection.connection_id, None)
        connection.closing = True
        connection.opened.set()  # wakes a waiting send, which then finds the connection closing
        await self._on_disconnect(connection)

    # -- an open connection ---------------------------------------------------------------------------
    async def _handle(self, websocket: ServerConnection) -> None:
        connection: LocalConnection = websocket.local_connection  # type: ignore[attr-defined]
        connection.opened.set()
        log.debug("websocket connected", extra={"connection_id": connection.connection_id})
        try:
            async for message in websocket:
                if isinstance(message, bytes):
                    connection.close_reason = "Binary frames are not supported"
                    await websocket.close(1003, "Binary frames are not supported")
                    break
                connection.last_active_at = time.time()
                await self._on_message(connection, message)
        except ConnectionClosed:
            pass
        finally:
            with self._registry_lock:
                self._connections.pop(connection.connection_id, None)
            connection.closing = True
            if not connection.dropped:
                await self._on_disconnect(connection)

    async def _on_message(self, connection: LocalConnection, body: str) -> None:
        context = self._request_context(
            connection.connection_id,
            "$default",
            "MESSAGE",
            connection.connected_at,
            self._identity(connection.source_ip, connection.user_agent),
        )
        context["messageId"] = _request_id()
        event = {"requestContext": context, "body": body, "isBase64Encoded": False}
        try:
            await self._invoke("ws_message", event)
        except Exception:
            log.exception("$default handler raised", extra={"connection_id": connection.connection_id})
            error = {
                "message": "Internal server error",
                "connectionId": connection.connection_id,
                "requestId": context["requestId"],
            }
            with contextlib.suppress(ConnectionClosed):
                await connection.websocket.send(json.dumps(error))

    async def _on_disconnect(self, connection: LocalConnection) -> None:
        code, peer_reason = _close_code(connection.websocket)
        reason = connection.close_reason or peer_reason
        context = self._request_context(
            connection.connection_id,
            "$disconnect",
            "DISCONNECT",
            connection.connected_at,
            self._identity(connection.source_ip, connection.user_agent),
        )
        context["disconnectStatusCode"] = code
        context["disconnectReason"] = reason
        event = {
            "headers": connection.headers,
            "multiValueHeaders": connection.multi_value_headers,
            "requestContext": context,
            "isBase64Encoded": False,
        }
        try:
            await self._invoke("ws_disconnect", event)
        except Exception:
            log.exception("$disconnect handler raised", extra={"connection_id": connection.connection_id})
        log.debug("websocket disconnected", extra={"connection_id": connection.connection_id, "code": code})

    async def _reap(self) -> None:
        """Close connections past the idle timeout or the maximum duration (1001, like API Gateway)."""
        interval = max(0.05, min(1.0, self.idle_timeout_s / 4, self.max_connection_s / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            with self._registry_lock:
                connections = list(self._connections.values())
            for connection in connections:
                if connection.closing:
                    continue
                if now - connection.connected_at >= self.max_connection_s:
                    reason = "Connection duration limit reached"
                elif now - connection.last_active_at >= self.idle_timeout_s:
                    reason = "Idle timeout"
                else:
                    continue
                connection.closing = True
                connection.close_reason = reason
                log.info("closing websocket", extra={"connection_id": connection.connection_id, "reason": reason})
                self._in_background(connection.websocket.close(1001, "Going away"))

    # -- @connections: coroutines on the loop (the management API's), and the same for other threads ----------
    def _find(self, connection_id: str) -> LocalConnection:
        with self._registry_lock:
            connection = self._connections.get(connection_id)
        if connection is None or connection.closing:
            raise GoneError(connection_id)
        return connection

    def _run_on_loop(self, coroutine: Any, timeout_s: float) -> Any:
        loop = self._loop
        if loop is None or loop.is_closed():
            coroutine.close()
            raise GoneError("gateway stopped")
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:
            coroutine.close()
            raise GoneError("gateway stopped") from None
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def post_to_connection(self, connection_id: str, data: bytes) -> None:
        self._run_on_loop(self._post_to_connection(connection_id, data), self.send_timeout_s)

    async def _post_to_connection(self, connection_id: str, data: bytes) -> None:
        if len(data) > self.max_message_bytes:
            raise PayloadTooLargeError(f"{len(data)} bytes exceeds the {self.max_message_bytes} byte message limit")
        with self._registry_lock:
            if self._limit_exceeded_remaining > 0:
                self._limit_exceeded_remaining -= 1
                raise LimitExceededError("Limit Exceeded")
        connection = self._find(connection_id)
        frames = text_frames(data, self.max_frame_bytes)
        if not connection.opened.is_set():
            await connection.opened.wait()
        if connection.closing:
            raise GoneError(connection_id)
        try:
            await connection.websocket.send(frames[0] if len(frames) == 1 else frames)
        except ConnectionClosed:
            raise GoneError(connection_id) from None

    def get_connection(self, connection_id: str) -> dict[str, Any]:
        return self._find(connection_id).describe()

    def delete_connection(self, connection_id: str) -> None:
        self._run_on_loop(self._delete_connection(connection_id), self.send_timeout_s + 5)

    async def _delete_connection(self, connection_id: str) -> None:
        connection = self._find(connection_id)
        connection.closing = True
        connection.close_reason = "Connection deleted through @connections"

        async def close() -> None:
            if not connection.opened.is_set():
                await connection.opened.wait()
            await connection.websocket.close(1000, "")

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(close(), self.send_timeout_s)

    def drop_connection(self, connection_id: str) -> None:
        """Test hook: the TCP connection vanishes and ``$disconnect`` is never called."""
        self._run_on_loop(self._drop_connection(connection_id), self.send_timeout_s)

    async def _drop_connection(self, connection_id: str) -> None:
        connection = self._find(connection_id)
        connection.dropped = True
        connection.closing = True
        with self._registry_lock:
            self._connections.pop(connection_id, None)
        transport = connection.websocket.transport
        if transport is not None:
            transport.abort()

    def simulate_limit_exceeded(self, count: int) -> None:
        with self._registry_lock:
            self._limit_exceeded_remaining = max(0, count)

    def connection_ids(self) -> list[str]:
        with self._registry_lock:
            return sorted(cid for cid, connection in self._connections.items() if not connection.closing)


def _close_code(websocket: ServerConnection) -> tuple[int, str]:
    """The code that ended the connection: ours when the gateway closed first (1009, 1001…), else the client's."""
    protocol = websocket.protocol
    if protocol.close_sent is not None and (protocol.close_rcvd is None or not protocol.close_rcvd_then_sent):
        return int(protocol.close_sent.code), protocol.close_sent.reason
    if protocol.close_rcvd is not None:
        return int(protocol.close_rcvd.code), protocol.close_rcvd.reason
    return 1006, ""


def _reject(websocket: ServerConnection, status: HTTPStatus, message: str) -> Response:
    response = websocket.respond(status, json.dumps({"message": message}) + "\n")
    response.headers["Content-Type"] = "application/json"
    return response


# -- the @connections management API --------------------------------------------------------------------
# An HTTP/1.1 server on the gateway's own event loop: a send reaches its WebSocket without crossing threads. (A
# threaded http.server cost about a quarter of the stack's CPU per delivery in a 1,000-client fan-out: a thread
# per connection, header parsing through the email package, and a hand-over to the loop and back per request.)
_MAX_HEAD_BYTES = 64 * 1024
_MANAGEMENT_IDLE_S = 120.0  # a kept-alive client silent this long is disconnected


class _BadRequest(Exception):
    def __init__(self, status: HTTPStatus, error_type: str, message: str):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def _http_response(status: HTTPStatus, body: bytes, error_type: str | None, keep_alive: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Date: {_http_date()}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"x-amzn-RequestId: {request_uuid()}",
    ]
    if error_type:
        lines.append(f"x-amzn-ErrorType: {error_type}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@functools.lru_cache(maxsize=2)
def _http_date_of(second: int) -> str:
    return formatdate(second, usegmt=True)


def _http_date() -> str:
    return _http_date_of(int(time.time()))


def _error_body(message: str) -> bytes:
    return json.dumps({"message": message}).encode()


def _parse_head(head: bytes) -> tuple[str, str, bool, int]:
    """(method, target, keep-alive, Content-Length) of a request head; ``_BadRequest`` if it cannot be served."""
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "BadRequestException", "malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "BadRequestException", "malformed header line")
        headers[name.lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    if "transfer-encoding" in headers:
        raise _BadRequest(HTTPStatus.LENGTH_REQUIRED, "BadRequestException", "a Content-Length is required")
    try:
        length = int(headers.get("content-length") or 0)
    except ValueError:
        length = -1
    if length < 0:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "BadRequestException", "bad Content-Length")
    if length > _MAX_READ_BYTES:
        raise _BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "PayloadTooLargeException", "payload too large")
    return method, target, keep_alive, length


class _ManagementApi:
    """The requests of one gateway's ``@connections`` API (``/{stage}/@connections/{id}``, and the test hooks)."""

    def __init__(self, gateway: LocalWebSocketGateway):
        self._gateway = gateway
        self._clients: set[asyncio.StreamWriter] = set()  # loop-thread only

    def disconnect_all(self) -> None:
        for writer in list(self._clients):
            writer.close()

    async def serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients = self._clients
        clients.add(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _MANAGEMENT_IDLE_S)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, TimeoutError):
                    return
                try:
                    method, target, keep_alive, length = _parse_head(head[:-4])
                except _BadRequest as bad:
                    writer.write(_http_response(bad.status, _error_body(bad.message), bad.error_type, False))
                    await writer.drain()
                    return
                try:
                    body = await reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                status, payload, error_type = await self.handle(method, target, body)
                writer.write(_http_response(status, payload, error_type, keep_alive))
                await writer.drain()
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("management request", extra={"line": f"{method} {target} {status.value}"})
                if not keep_alive:
                    return
        except ConnectionError:
            return
        finally:
            clients.discard(writer)
            writer.close()

    async def handle(self, method: str, target: str, body: bytes) -> tuple[HTTPStatus, bytes, str | None]:
        gateway = self._gateway
        if method not in ("GET", "POST", "DELETE"):
            return HTTPStatus.NOT_IMPLEMENTED, _error_body(f"Unsupported method ({method!r})"), None
        parts = urlsplit(target)
        segments = parts.path.split("/")
        if gateway.test_hooks and len(segments) >= 3 and segments[1] == "_test":
            return await self._test_hook(method, segments[2:], parse_qs(parts.query))
        # /{stage}/@connections/{id}
        if len(segments) != 4 or segments[2] != "@connections" or not segments[3]:
            return _failure(HTTPStatus.FORBIDDEN, "ForbiddenException", "Missing Authentication Token")
        if segments[1] != gateway.stage:
            return _failure(HTTPStatus.FORBIDDEN, "ForbiddenException", f"unknown stage {segments[1]!r}")
        connection_id = unquote(segments[3])
        try:
            if method == "POST":
                await asyncio.wait_for(gateway._post_to_connection(connection_id, body), gateway.send_timeout_s)
                return HTTPStatus.OK, b"", None
            if method == "GET":
                return HTTPStatus.OK, json.dumps(gateway.get_connection(connection_id)).encode(), None
            await gateway._delete_connection(connection_id)
            return HTTPStatus.NO_CONTENT, b"", None
        except GoneError:
            return _failure(HTTPStatus.GONE, "GoneException", f"connection {connection_id} is gone")
        except PayloadTooLargeError as exc:
            return _failure(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "PayloadTooLargeException", str(exc))
        except LimitExceededError as exc:
            return _failure(HTTPStatus.TOO_MANY_REQUESTS, "LimitExceededException", str(exc))
        except TimeoutError:
            return _failure(HTTPStatus.INTERNAL_SERVER_ERROR, "InternalServerErrorException", "send timed out")

    async def _test_hook(
        self, method: str, segments: list[str], query: dict[str, list[str]]
    ) -> tuple[HTTPStatus, bytes, str | None]:
        gateway = self._gateway
        try:
            if method == "POST" and segments[0] == "drop" and len(segments) == 2:
                await gateway._drop_connection(unquote(segments[1]))
                return HTTPStatus.NO_CONTENT, b"", None
            if method == "POST" and segments == ["limit_exceeded"]:
                gateway.simulate_limit_exceeded(int((query.get("count") or ["1"])[0]))
                return HTTPStatus.NO_CONTENT, b"", None
            if method == "GET" and segments == ["connections"]:
                return HTTPStatus.OK, json.dumps({"connections": gateway.connection_ids()}).encode(), None
            return _failure(HTTPStatus.NOT_FOUND, "NotFoundException", "unknown test hook")
        except GoneError:
            return _failure(HTTPStatus.GONE, "GoneException", "connection is gone")
        except ValueError as exc:
            return _failure(HTTPStatus.BAD_REQUEST, "BadRequestException", str(exc))


def _failure(status: HTTPStatus, error_type: str, message: str) -> tuple[HTTPStatus, bytes, str | None]:
    return status, _error_body(message), error_type
