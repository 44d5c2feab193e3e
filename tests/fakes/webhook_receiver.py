"""A webhook receiver: a real HTTP server on 127.0.0.1 that records every POST (headers, raw body, arrival time)
and answers from a script (``answers``: a list of statuses, or ``(status, headers)``, used in order, then
``default``). ``hang=True`` never answers (it holds the connection until the server stops).

    with WebhookReceiver() as receiver:
        receiver.answers = [500, 503]  # then 200
        ...
        receiver.wait_for(3)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival
    status: int  # what was answered (0: never answered)


class WebhookReceiver(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many endpoints on one receiver connect at once (the default backlog is 5)

    def __init__(self, default: int = 200, hang: bool = False):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.default = default
        self.hang = hang
        self.answers: list[Any] = []
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def next_answer(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            answer = self.answers.pop(0) if self.answers else self.default
        return answer if isinstance(answer, tuple) else (answer, {})

    def record(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.requests()
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"expected {count} webhook requests within {timeout} s, got {len(self.requests())}")

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.shutdown()
        self.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: WebhookReceiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        arrived = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        if self.server.hang:
            self.server.record(Received(self.path, headers, body, arrived, 0))
            self.server._stopping.wait(60)
            self.close_connection = True
            return
        status, extra = self.server.next_answer()
        self.server.record(Received(self.path, headers, body, arrived, status))
        reply = b'{"ok": true}' if status < 300 else b'{"error": "scripted"}'
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
