"""A small threaded WSGI server that keeps HTTP/1.1 connections open, for the embedded DynamoDB.

werkzeug's development server answers every request with ``Connection: close``, so each DynamoDB call of the
stack paid for a new TCP connection (connect, accept, a new server thread). botocore keeps a pool of connections
open, as it does against DynamoDB itself; this server lets it reuse them: one thread per connection, serving its
requests one after another until the client closes it or it idles out.

Only what a JSON API needs: request bodies with ``Content-Length`` (``Transfer-Encoding: chunked`` is answered with
``411 Length Required``), responses materialized by the app and sent with their ``Content-Length``.
"""

from __future__ import annotations

import io
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A connection idle for this long is closed (botocore opens a new one when it needs it).
IDLE_TIMEOUT_S = 60.0
_MAX_BODY_BYTES = 64 * 1024 * 1024
LINGER_S = 1.0  # after refusing a request whose body is not read, how long to read what the client still sends

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class KeepAliveWSGIServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` running a WSGI app over keep-alive HTTP/1.1 connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients connecting at once (a burst of WebSocket connects) must not be refused

    def __init__(self, address: tuple[str, int], app: WsgiApp):
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._closing = False
        super().__init__(address, _KeepAliveHandler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            if self._closing:
                self.shutdown_request(request)
                return
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that went away mid-request (killed, or its pool closed): nothing to report
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        """Stop listening and end every open connection: nothing is served after this returns (a request being
        answered right now still completes)."""
        super().server_close()
        with self._open_lock:
            self._closing = True
            connections = list(self._open)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "model-catalog-local"
    timeout = IDLE_TIMEOUT_S
    disable_nagle_algorithm = True  # the response goes out now, not after the client's delayed ACK (40 ms)
    server: KeepAliveWSGIServer

    def log_message(self, format: str, *args: Any) -> None:  # no access log line per call
        pass

    def do_POST(self) -> None:
        self._run()

    def do_GET(self) -> None:
        self._run()

    def do_PUT(self) -> None:
        self._run()

    def do_DELETE(self) -> None:
        self._run()

    def do_HEAD(self) -> None:
        self._run()

    def do_PATCH(self) -> None:
        self._run()

    def do_OPTIONS(self) -> None:  # a browser's CORS preflight: the app answers it (it refuses browsers)
        self._run()

    def _run(self) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._refuse(HTTPStatus.LENGTH_REQUIRED, b"chunked request bodies are not supported\n")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY_BYTES:
            self._refuse(HTTPStatus.BAD_REQUEST, b"bad Content-Length\n")
            return
        body = self.rfile.read(length) if length else b""
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        try:
            chunks = self.server.app(self._environ(body), start_response)
            try:
                payload = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        except Exception:
            self.server.handle_error(self.request, self.client_address)
            self._plain(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n")
            self.close_connection = True
            return
        lines = [f"HTTP/1.1 {captured['status']}", f"Server: {self.server_version}"]
        lines += [
            f"{name}: {value}" for name, value in captured["headers"]
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "server")
        ]
        lines.append(f"Content-Length: {len(payload)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + payload)  # one write: one TCP segment burst

    def _environ(self, body: bytes) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "RAW_URI": self.path,
            "REQUEST_URI": self.path,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": str(self.client_address[1]),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        content_type = self.headers.get("Content-Type")
        if content_type:
            environ["CONTENT_TYPE"] = content_type
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                continue
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _refuse(self, status: HTTPStatus, body: bytes) -> None:
        """Answer a request whose body is not read, then close without resetting the connection: closing with the
        client's unread body still arriving would send it a reset, which can reach it before (and destroy) the
        answer. So: answer, stop sending, read what still comes (for at most a second), then close."""
        self._plain(status, body)
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_S)
            while self.connection.recv(65536):
                pass
        except OSError:
            pass  # the client is gone or took too long: close anyway

    def _plain(self, status: HTTPStatus, body: bytes) -> None:
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        self.wfile.write(head.encode("latin-1") + body)
