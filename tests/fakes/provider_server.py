"""A real threaded HTTP server on 127.0.0.1:0 that plays any provider API in tests.

    with FakeProviderServer() as server:
        server.route("GET", "/v1/models", json=fixture_json("openai_models.json"))
        server.route("GET", "/v1/slow", json={}, delay=30)                    # hangs (until close)
        server.route("GET", "/v1/flaky", responses=[(429, {"error": "x"}, {"Retry-After": "1"}),
                                                    (200, {"data": []}, None)])  # consumed in order, last repeats
        ...  # point a provider at server.url + "/v1"
        server.requests("/v1/models")[0].headers["authorization"]
        server.max_in_flight("/v1/models")

Routes match on method and path (the query string is ignored for matching and recorded). They can be
replaced while the server runs (a test changes a provider's model list between refreshes). An unknown
route answers 404 ``{"error": {"message": "no route for GET /x"}}``. A body given as ``dict``/``list`` is
sent as JSON; ``bytes``/``str`` are sent as is. ``chunk_size`` sends the body with chunked transfer encoding
(no Content-Length) in pieces of that size, sleeping ``chunk_delay`` between them (slow-drip servers).
Every delay is cut short by ``close()``, so a hanging route never holds up the end of a test.
"""

from __future__ import annotations

import json as jsonlib
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "providers"

Body = Any  # dict | list (JSON), bytes, str, or None (empty)


def fixture_path(name: str) -> Path:
    """Path of a shared provider fixture: ``"openai_models.json"``, ``"errors/openai_401"`` (``.json`` optional)."""
    path = FIXTURES_DIR / name
    return path if path.suffix else path.with_suffix(".json")


def fixture_json(name: str) -> Any:
    """The parsed JSON of a shared provider fixture (see ``fixture_path``)."""
    return jsonlib.loads(fixture_path(name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]  # first value of each parameter
    headers: dict[str, str]  # lower-cased names
    body: bytes
    raw_query: str = ""

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


@dataclass
class _Route:
    responses: list[tuple[int, Body, Mapping[str, str] | None]]
    delay: float = 0.0
    chunk_size: int | None = None
    chunk_delay: float = 0.0
    served: int = 0

    def next_response(self) -> tuple[int, Body, Mapping[str, str] | None]:
        index = min(self.served, len(self.responses) - 1)
        self.served += 1
        return self.responses[index]


@dataclass
class _State:
    routes: dict[tuple[str, str], _Route] = field(default_factory=dict)
    recorded: list[RecordedRequest] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)
    connections: int = 0  # TCP connections accepted so far
    open_sockets: set[socket.socket] = field(default_factory=set)


def _encode(body: Body) -> tuple[bytes, str | None]:
    if body is None:
        return b"", None
    if isinstance(body, bytes):
        return body, None
    if isinstance(body, str):
        return body.encode("utf-8"), None
    return jsonlib.dumps(body).encode("utf-8"), "application/json"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body are separate writes: without NODELAY, Nagle + delayed ACK add ~40 ms per request.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.state.lock:
            self.server.state.connections += 1
            self.server.state.open_sockets.add(self.request)

    def finish(self) -> None:
        with self.server.state.lock:
            self.server.state.open_sockets.discard(self.request)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _handle(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        record = RecordedRequest(
            method=self.command,
            path=parts.path,
            query={k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw_query=parts.query,
        )
        with state.lock:
            state.recorded.append(record)
            route = state.routes.get((self.command, parts.path))
            state.in_flight[parts.path] = state.in_flight.get(parts.path, 0) + 1
            state.max_in_flight[parts.path] = max(state.max_in_flight.get(parts.path, 0), state.in_flight[parts.path])
            if route is None:
                missing = {"error": {"message": f"no route for {self.command} {parts.path}"}}
                status, payload, headers = 404, missing, None
                delay, chunk_size, chunk_delay = 0.0, None, 0.0
            else:
                status, payload, headers = route.next_response()
                delay, chunk_size, chunk_delay = route.delay, route.chunk_size, route.chunk_delay
        try:
            if delay and state.closing.wait(delay):
                return
            self._send(status, payload, headers, chunk_size, chunk_delay)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with state.lock:
                state.in_flight[parts.path] -= 1

    def _send(
        self, status: int, payload: Body, headers: Mapping[str, str] | None, chunk_size: int | None, chunk_delay: float
    ) -> None:
        data, content_type = _encode(payload)
        self.send_response(status)
        names = {k.lower() for k in (headers or {})}
        if content_type and "content-type" not in names:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if chunk_size:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(data), chunk_size):
                piece = data[start : start + chunk_size]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
                if chunk_delay and self.server.state.closing.wait(chunk_delay):
                    return
            self.wfile.write(b"0\r\n\r\n")
        else:
            if "content-length" not in names:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle  # noqa: N815 - http.server's names


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: _State


class FakeProviderServer:
    """See the module docstring. ``url`` is ``http://127.0.0.1:<port>`` (no trailing slash)."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeProviderServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def route(
        self,
        method: str,
        path: str,
        status: int = 200,
        json: Any = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        responses: Iterable[tuple[int, Body, Mapping[str, str] | None]] | None = None,
        chunk_size: int | None = None,
        chunk_delay: float = 0.0,
    ) -> None:
        """Serve ``method path``: one response (``status`` + ``json`` or ``body`` + ``headers``) or a list of
        ``(status, body, headers)`` consumed in order, the last repeating. Replaces an existing route."""
        planned = list(responses) if responses is not None else [(status, json if json is not None else body, headers)]
        if not planned:
            raise ValueError("responses must not be empty")
        with self._server.state.lock:
            self._server.state.routes[(method.upper(), path)] = _Route(planned, delay, chunk_size, chunk_delay)

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        """Requests received so far (all, or those for ``path``), in arrival order."""
        with self._server.state.lock:
            return [r for r in self._server.state.recorded if path is None or r.path == path]

    def max_in_flight(self, path: str) -> int:
        """The largest number of requests for ``path`` that were being handled at the same time."""
        with self._server.state.lock:
            return self._server.state.max_in_flight.get(path, 0)

    def connections(self) -> int:
        """How many TCP connections clients have opened so far (kept-alive requests share one)."""
        with self._server.state.lock:
            return self._server.state.connections

    def drop_connections(self) -> None:
        """Close every open connection from the server's side, as a server does with idle keep-alive ones."""
        with self._server.state.lock:
            sockets = list(self._server.state.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._server.state.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
