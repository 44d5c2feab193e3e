"""Serves the bundled ``demo_registry.json`` (a models.dev-style ``api.json``) on loopback.

The bundled example config's ``demo`` provider (kind ``registry``) reads it, so the first ``make run`` shows a
real catalog with no API keys and no internet. The data is a sample: plausible models with plausible limits
and prices, not an authoritative price list.

Test hooks (only with ``test_hooks=True``): ``PUT /api.json`` replaces the served document (a registry that
changed); ``POST /_test/fail?status=503`` makes ``GET`` answer that status (``status=0`` stops it);
``POST /_test/reset`` serves the bundled file again; ``POST /_test/delay?seconds=30`` makes ``GET`` wait that
long before answering (``seconds=0`` stops it) and ``GET /_test/waiting`` says how many are waiting (a provider
that hangs).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from chalicelib.logs import get_logger

log = get_logger("local.demo_registry")

DEMO_REGISTRY_FILE = Path(__file__).resolve().parent / "demo_registry.json"
_MAX_UPLOAD_BYTES = 64 * 1024 * 1024


class DemoRegistryServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        sock: socket.socket | None = None,
        address: tuple[str, int] = ("127.0.0.1", 0),
        document_path: Path = DEMO_REGISTRY_FILE,
        test_hooks: bool = False,
    ):
        self._document_path = document_path
        self.test_hooks = test_hooks
        self._state_lock = threading.Lock()
        self._body = b""
        self._fail_status = 0
        self._delay_s = 0.0
        self._waiting = 0
        self.reset_document()
        if sock is None:
            super().__init__(address, _RegistryHandler)
        else:
            super().__init__(sock.getsockname()[:2], _RegistryHandler, bind_and_activate=False)
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()[:2]
            self.server_name, self.server_port = self.server_address[0], self.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/api.json"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="demo-registry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- state (also driven by the test hooks) -----------------------------------------------------------
    def reset_document(self) -> None:
        self.set_document(self._document_path.read_bytes())

    def set_document(self, body: bytes) -> None:
        json.loads(body)  # refuse anything that is not JSON: a typo in a test should fail loudly
        with self._state_lock:
            self._body = body

    def fail_with(self, status: int) -> None:
        with self._state_lock:
            self._fail_status = status

    def current(self) -> tuple[int, bytes]:
        with self._state_lock:
            return self._fail_status, self._body

    def delay_with(self, seconds: float) -> None:
        with self._state_lock:
            self._delay_s = seconds

    def wait_delay(self) -> None:
        with self._state_lock:
            delay = self._delay_s
            self._waiting += 1 if delay else 0
        if delay:
            time.sleep(delay)
            with self._state_lock:
                self._waiting -= 1

    @property
    def waiting(self) -> int:
        with self._state_lock:
            return self._waiting


class _RegistryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "model-catalog-demo-registry"
    server: DemoRegistryServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("demo registry request", extra={"line": format % args})

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_test/waiting" and self.server.test_hooks:
            self._send(HTTPStatus.OK, json.dumps({"waiting": self.server.waiting}).encode())
            return
        if path not in ("/", "/api.json"):
            self._send(HTTPStatus.NOT_FOUND, b'{"error": "not found"}')
            return
        self.server.wait_delay()
        fail_status, body = self.server.current()
        if fail_status:
            self._send(HTTPStatus(fail_status), b'{"error": "simulated failure"}')
            return
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if self.headers.get("If-None-Match") == etag:
            self._send(HTTPStatus.NOT_MODIFIED, b"", {"ETag": etag})
            return
        self._send(HTTPStatus.OK, body, {"ETag": etag, "Cache-Control": "no-cache"})

    def do_PUT(self) -> None:
        if not self.server.test_hooks or urlsplit(self.path).path != "/api.json":
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b'{"error": "read-only"}')
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_UPLOAD_BYTES:
            self.close_connection = True
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b'{"error": "too large"}')
            return
        try:
            self.server.set_document(self.rfile.read(length))
        except ValueError as exc:
            self._send(HTTPStatus.BAD_REQUEST, json.dumps({"error": f"not JSON: {exc}"}).encode())
            return
        self._send(HTTPStatus.NO_CONTENT, b"")

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, _MAX_UPLOAD_BYTES))
        if not self.server.test_hooks:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b'{"error": "read-only"}')
            return
        if parts.path == "/_test/fail":
            try:
                status = int((parse_qs(parts.query).get("status") or ["0"])[0])
                if status:
                    HTTPStatus(status)
            except ValueError:
                self._send(HTTPStatus.BAD_REQUEST, b'{"error": "status must be an HTTP status or 0"}')
                return
            self.server.fail_with(status)
            self._send(HTTPStatus.NO_CONTENT, b"")
        elif parts.path == "/_test/reset":
            self.server.fail_with(0)
            self.server.delay_with(0)
            self.server.reset_document()
            self._send(HTTPStatus.NO_CONTENT, b"")
        elif parts.path == "/_test/delay":
            try:
                seconds = float((parse_qs(parts.query).get("seconds") or ["0"])[0])
            except ValueError:
                seconds = -1
            if not 0 <= seconds <= 600:
                self._send(HTTPStatus.BAD_REQUEST, b'{"error": "seconds must be between 0 and 600"}')
                return
            self.server.delay_with(seconds)
            self._send(HTTPStatus.NO_CONTENT, b"")
        else:
            self._send(HTTPStatus.NOT_FOUND, b'{"error": "unknown test hook"}')

    def _send(self, status: HTTPStatus, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if status not in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body and status not in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
            self.wfile.write(body)
