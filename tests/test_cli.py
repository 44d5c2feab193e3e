"""The CLI against small stub servers of its own: argument parsing, output formats, exit codes 0/1/2/3,
and `watch`'s resume/resync logic over a scripted WebSocket. Fast; no local stack needed
The end-to-end runs against the local stack are at the bottom (marked ``stack``)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import catalog_cli as cli
from catalog_cli import commands, watch

REPO = Path(__file__).resolve().parents[1]
TOKEN = "stub-token-123"

PROVIDERS = {
    "providers": [
        {"id": "openai", "name": "OpenAI", "kind": "openai", "refreshable": True, "model_count": 2,
         "last_refreshed_at": "2026-01-01T00:00:00Z", "last_error": None},
        {"id": "anthropic", "name": "Anthropic", "kind": "anthropic", "refreshable": True, "model_count": 0,
         "last_refreshed_at": None, "last_error": "HTTP 401 from the provider: check ANTHROPIC_API_KEY"},
    ]
}
MODELS = {
    "revision": 7,
    "models": [
        {"provider_id": "openai", "id": "gpt-4o", "display_name": None, "context_length": 128000,
         "max_output_tokens": 16384, "capabilities": ["tools", "vision"],
         "pricing": {"input_per_mtok": 2.5, "output_per_mtok": 10.0}},
        {"provider_id": "openai", "id": "whisper-1", "display_name": None, "context_length": None,
         "max_output_tokens": None, "capabilities": [], "pricing": None},
    ],
}
RESULT_OK = {
    "revision": 8,
    "changed": [{"provider_id": "openai", "provider_name": "OpenAI", "added": ["gpt-5"], "removed": ["gpt-3"],
                 "updated": ["gpt-4o"]}],
    "unchanged": ["anthropic"],
    "failed": [],
}
RESULT_FAILED = {**RESULT_OK, "failed": [{"provider_id": "anthropic", "reason": "the provider answered HTTP 529"}]}
STATUS = {"refresh_interval_ms": 21600000, "refresh_on_start": True, "last_run": RESULT_OK,
          "next_due_at": "2099-01-01T00:00:00Z"}


# ---------------------------------------------------------------------------------------------------------
# stub HTTP API


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None


@dataclass
class StubApi:
    url: str = ""
    # (method, raw path) → list of (status, body, headers); the last entry repeats.
    routes: dict[tuple[str, str], list[tuple[int, Any, dict[str, str]]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def route(self, method: str, path: str, status: int = 200, body: Any = None,
              headers: dict[str, str] | None = None) -> None:
        self.routes.setdefault((method, path), []).append((status, body, headers or {}))

    def replace(self, method: str, path: str, status: int = 200, body: Any = None,
                headers: dict[str, str] | None = None) -> None:
        self.routes[(method, path)] = [(status, body, headers or {})]


@pytest.fixture
def stub() -> Iterator[StubApi]:
    api = StubApi()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            api.seen.append(Seen(self.command, parts.path, parse_qs(parts.query), self.headers.get("Authorization")))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send(401, {"error": {"code": "unauthorized", "message": "missing or invalid bearer token"}}, {})
                return
            queue = api.routes.get((self.command, parts.path))
            if not queue:
                self._send(404, {"error": {"code": "not_found", "message": f"no stub for {parts.path}"}}, {})
                return
            status, body, headers = queue.pop(0) if len(queue) > 1 else queue[0]
            self._send(status, body, headers)

        def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        do_GET = _serve  # noqa: N815
        do_POST = _serve  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _no_cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli.URL_ENV, raising=False)
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)
    monkeypatch.setattr(watch, "BACKOFF_BASE_S", 0.01)


def run(stub: StubApi, *argv: str) -> int:
    return cli.main(["--url", stub.url, "--token", TOKEN, *argv])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------
# providers / models / status


def test_providers_prints_a_table(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/providers", body=PROVIDERS)

    assert run(stub, "providers") == cli.EXIT_OK

    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "NAME", "KIND", "MODELS", "LAST", "REFRESHED", "LAST", "ERROR"]
    openai = next(line for line in out if line.startswith("openai"))
    assert "OpenAI" in openai and "2026-01-01T00:00:00Z" in openai and openai.rstrip().endswith("-")
    anthropic = next(line for line in out if line.startswith("anthropic"))
    assert "never" in anthropic and "check ANTHROPIC_API_KEY" in anthropic
    assert stub.seen[0].authorization == f"Bearer {TOKEN}"


def test_providers_json_is_the_api_body(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/providers", body=PROVIDERS)

    assert run(stub, "providers", "--json") == 0
    assert json.loads(capsys.readouterr().out) == PROVIDERS


def test_models_table_formats_numbers_capabilities_and_price(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/models", body=MODELS)

    assert run(stub, "models") == 0

    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "gpt-4o" in line)
    assert row.split() == ["openai", "gpt-4o", "128,000", "16,384", "tools,vision", "2.50", "/", "10.00"]
    bare = next(line for line in out.splitlines() if "whisper-1" in line)
    assert bare.split() == ["openai", "whisper-1", "-", "-", "-", "-"]
    assert "2 models, revision 7" in out


def test_models_provider_filter_is_sent_as_query(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/models", body=MODELS)

    assert run(stub, "models", "--provider", "openai", "--json") == 0

    assert stub.seen[-1].query == {"provider_id": ["openai"]}
    assert json.loads(capsys.readouterr().out) == MODELS


def test_unknown_provider_is_a_usage_error_with_the_envelope_message(
    stub: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.route("GET", "/api/v1/models", status=404,
               body={"error": {"code": "provider_not_found", "message": "no provider with id 'nope' in the config"}})

    assert run(stub, "models", "--provider", "nope") == cli.EXIT_USAGE

    err = capsys.readouterr().err
    assert "no provider with id 'nope' in the config" in err and "provider_not_found" in err


def test_status_human_and_json(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/refresh/status", body=STATUS)

    assert run(stub, "status") == 0
    out = capsys.readouterr().out
    assert "refresh interval:  6 h (21600000 ms)" in out
    assert "refresh on start:  yes" in out
    assert "2099-01-01T00:00:00Z" in out and "from now" in out
    assert "revision 8: 1 changed, 1 unchanged, 0 failed" in out

    assert run(stub, "status", "--json") == 0
    assert json.loads(capsys.readouterr().out) == STATUS


def test_status_with_scheduling_off_and_no_run(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/refresh/status",
               body={"refresh_interval_ms": 0, "refresh_on_start": False, "last_run": None, "next_due_at": None})

    assert run(stub, "status") == 0
    out = capsys.readouterr().out
    assert "off (0 ms)" in out and "not scheduled" in out and "none yet" in out


# ---------------------------------------------------------------------------------------------------------
# refresh


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        ([], "/api/v1/providers:refresh"),
        (["--oauth"], "/api/v1/providers:refresh_oauth"),
        (["--provider", "openai"], "/api/v1/providers/openai:refresh"),
        # The server splits on the last colon after URL-decoding: the id's own colon travels encoded.
        (["--provider", "ns:odd id"], "/api/v1/providers/ns%3Aodd%20id:refresh"),
    ],
)
def test_refresh_posts_to_the_scope_route(
    stub: StubApi, capsys: pytest.CaptureFixture[str], argv: list[str], path: str
) -> None:
    stub.route("POST", path, body=RESULT_OK)

    assert run(stub, "refresh", *argv) == cli.EXIT_OK

    assert [(s.method, s.path) for s in stub.seen] == [("POST", path)]
    out = capsys.readouterr().out
    assert "revision 8: 1 changed, 1 unchanged, 0 failed" in out
    assert "+ gpt-5" in out and "- gpt-3" in out and "~ gpt-4o" in out


def test_refresh_with_a_failed_provider_exits_1(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("POST", "/api/v1/providers:refresh", body=RESULT_FAILED)

    assert run(stub, "refresh") == cli.EXIT_FAILED
    assert "FAILED anthropic: the provider answered HTTP 529" in capsys.readouterr().out


def test_refresh_json_prints_the_refresh_result(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("POST", "/api/v1/providers:refresh", body=RESULT_FAILED)

    assert run(stub, "refresh", "--json") == cli.EXIT_FAILED
    assert json.loads(capsys.readouterr().out) == RESULT_FAILED


def test_refresh_waits_out_a_409_then_succeeds(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    busy = {"error": {"code": "refresh_in_progress", "message": "another refresh is running; retry in 1 s"}}
    stub.route("POST", "/api/v1/providers:refresh", status=409, body=busy, headers={"Retry-After": "0"})
    stub.route("POST", "/api/v1/providers:refresh", body=RESULT_OK)

    assert run(stub, "refresh") == cli.EXIT_OK
    assert len(stub.seen) == 2
    assert "another refresh is running" in capsys.readouterr().err


def test_refresh_gives_up_on_409_after_wait(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    busy = {"error": {"code": "refresh_in_progress", "message": "another refresh is running; retry in 5 s"}}
    stub.route("POST", "/api/v1/providers:refresh", status=409, body=busy, headers={"Retry-After": "5"})

    assert run(stub, "refresh", "--wait", "0") == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "another refresh is running" in err and "--wait" in err
    assert len(stub.seen) == 1


def test_refresh_provider_and_oauth_are_exclusive(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(stub, "refresh", "--provider", "x", "--oauth") == cli.EXIT_USAGE
    assert "not allowed with" in capsys.readouterr().err
    assert stub.seen == []


# ---------------------------------------------------------------------------------------------------------
# options, environment and exit codes


def test_url_and_token_come_from_the_environment(
    stub: StubApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.route("GET", "/api/v1/providers", body=PROVIDERS)
    monkeypatch.setenv(cli.URL_ENV, stub.url)
    monkeypatch.setenv(cli.TOKEN_ENV, TOKEN)

    assert cli.main(["providers", "--json"]) == 0
    assert stub.seen[0].authorization == f"Bearer {TOKEN}"


def test_options_after_the_command_override_the_environment(
    stub: StubApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.route("GET", "/api/v1/providers", body=PROVIDERS)
    monkeypatch.setenv(cli.URL_ENV, f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv(cli.TOKEN_ENV, "wrong")

    assert cli.main(["providers", "--url", stub.url, "--token", TOKEN]) == 0


def test_missing_token_is_a_config_error(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--url", stub.url, "providers"]) == cli.EXIT_USAGE
    assert cli.TOKEN_ENV in capsys.readouterr().err
    assert stub.seen == []


def test_wrong_token_exits_2_with_the_server_message(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--url", stub.url, "--token", "wrong", "providers"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "missing or invalid bearer token" in err and "HTTP 401" in err
    assert "wrong" not in err.replace("missing or invalid", "")


def test_bad_url_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--url", "ftp://example", "--token", TOKEN, "providers"]) == cli.EXIT_USAGE
    assert "http(s) URL" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["bogus"], ["models", "--nope"], ["watch", "--count", "0"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_unreachable_service_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    assert cli.main(["--url", url, "--token", TOKEN, "providers"]) == cli.EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "cannot reach the service" in err and url in err


def test_server_error_exits_1_and_gateway_errors_exit_3(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/providers", status=500,
               body={"error": {"code": "internal_error", "message": "internal error; see the service logs"}})
    assert run(stub, "providers") == cli.EXIT_FAILED
    assert "internal error; see the service logs" in capsys.readouterr().err

    stub.replace("GET", "/api/v1/providers", status=503, body={"message": "Service Unavailable"})
    assert run(stub, "providers") == cli.EXIT_UNREACHABLE


def test_non_json_answer_is_reported(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/providers", body=b"<html>not the api</html>")

    assert run(stub, "providers") == cli.EXIT_FAILED
    assert "not JSON" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["chalicelib.cli", "catalog_cli"])
def test_module_entry_point_runs_as_a_subprocess(stub: StubApi, module: str) -> None:
    stub.route("GET", "/api/v1/models", body=MODELS)
    env = {**os.environ, cli.URL_ENV: stub.url, cli.TOKEN_ENV: TOKEN}

    ok = subprocess.run([sys.executable, "-m", module, "models", "--json"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["revision"] == 7

    usage = subprocess.run([sys.executable, "-m", module, "refresh", "--provider"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2
    assert "expected one argument" in usage.stderr
    assert f"usage: python -m {module} refresh" in usage.stderr


# ---------------------------------------------------------------------------------------------------------
# tick (in-process service call; the service is faked here, the stack test runs the real one)


class FakeService:
    def __init__(self, outcome: Any = None, error: BaseException | None = None):
        self.outcome = outcome
        self.error = error
        self.triggers: list[str] = []

    def tick(self, trigger: str = "scheduled") -> Any:
        self.triggers.append(trigger)
        if self.error:
            raise self.error
        return self.outcome


@pytest.fixture
def fake_service(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeService]:
    def install(**kwargs: Any) -> FakeService:
        service = FakeService(**kwargs)
        monkeypatch.setattr(commands, "tick_service", lambda: service)
        return service

    return install


def test_tick_that_ran_prints_the_result(fake_service: Callable[..., FakeService],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    service = fake_service(outcome={"ran": True, "reason": "interval elapsed", "result": RESULT_OK})

    assert cli.main(["tick"]) == cli.EXIT_OK
    assert service.triggers == ["cli"]
    out = capsys.readouterr().out
    assert "refreshed: interval elapsed" in out and "+ gpt-5" in out


def test_tick_not_due_exits_0(fake_service: Callable[..., FakeService], capsys: pytest.CaptureFixture[str]) -> None:
    fake_service(outcome={"ran": False, "reason": "next refresh in 5000 ms", "result": None})

    assert cli.main(["tick"]) == cli.EXIT_OK
    assert "not due: next refresh in 5000 ms" in capsys.readouterr().out


def test_tick_with_failures_exits_1_and_prints_json(fake_service: Callable[..., FakeService],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    outcome = {"ran": True, "reason": "refresh_on_start", "result": RESULT_FAILED}
    fake_service(outcome=outcome)

    assert cli.main(["tick", "--json"]) == cli.EXIT_FAILED
    assert json.loads(capsys.readouterr().out) == outcome


def test_tick_config_error_exits_2(fake_service: Callable[..., FakeService],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.errors import ConfigError

    fake_service(error=ConfigError("/etc/catalog.toml: providers[0].kind: unknown kind 'x'"))

    assert cli.main(["tick"]) == cli.EXIT_USAGE
    assert "providers[0].kind: unknown kind 'x'" in capsys.readouterr().err


def test_tick_unreachable_dynamodb_exits_3(fake_service: Callable[..., FakeService],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from botocore.exceptions import EndpointConnectionError

    fake_service(error=EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))

    assert cli.main(["tick"]) == cli.EXIT_UNREACHABLE
    assert "cannot reach DynamoDB" in capsys.readouterr().err


def test_tick_with_a_broken_config_file_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[[providers]]\nid = 'a'\nkind = 'nope'\nbase_url = 'https://x'\n")
    env = {**os.environ, "MODEL_CATALOG_CONFIG": str(config), "MODEL_CATALOG_DYNAMODB_ENDPOINT": "http://127.0.0.1:1"}

    completed = subprocess.run([sys.executable, "-m", "chalicelib.cli", "tick"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=60)

    assert completed.returncode == cli.EXIT_USAGE, completed.stderr
    assert str(config) in completed.stderr and "unknown kind 'nope'" in completed.stderr


# ---------------------------------------------------------------------------------------------------------
# watch against a scripted WebSocket server


@dataclass
class StubWs:
    url: str
    subscribes: list[dict[str, Any]]
    tokens: list[str | None]


def event(seq: int, epoch: str = "e1", added: list[str] | None = None, revision: int | None = None) -> dict[str, Any]:
    return {
        "type": "event.model_catalog.changed", "seq": seq, "epoch": epoch, "timestamp": "2026-01-01T00:00:00Z",
        "payload": {"revision": revision or 100 + seq,
                    "changed": [{"provider_id": "reg", "provider_name": "Registry", "added": added or [f"m{seq}"],
                                 "removed": [], "updated": []}],
                    "unchanged": [], "failed": []},
    }


@pytest.fixture
def ws_script() -> Iterator[Callable[..., StubWs]]:
    """``start(*connections)``: each connection is a list of messages to send after the subscribe frame
    (the string "close" ends that connection early)."""
    from websockets.datastructures import Headers
    from websockets.http11 import Response
    from websockets.sync.server import serve

    servers = []

    def start(*connections: list[Any], accept_token: str = TOKEN) -> StubWs:
        scripts = list(connections)
        state = StubWs(url="", subscribes=[], tokens=[])

        def process_request(connection: Any, request: Any) -> Any:
            token = parse_qs(urlsplit(request.path).query).get("token", [None])[0]
            state.tokens.append(token)
            if token != accept_token:
                return Response(401, "Unauthorized", Headers(), b"")
            return None

        def handler(connection: Any) -> None:
            script = scripts.pop(0) if scripts else []
            state.subscribes.append(json.loads(connection.recv(timeout=10)))
            for message in script:
                if message == "close":
                    return
                connection.send(json.dumps(message))
            try:
                while True:  # stay open (answer pings) until the client leaves
                    if json.loads(connection.recv(timeout=30)).get("action") == "ping":
                        connection.send(json.dumps({"type": "pong"}))
            except Exception:  # the client went away
                return

        server = serve(handler, "127.0.0.1", 0, process_request=process_request)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        state.url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
        return state

    yield start
    for server in servers:
        server.shutdown()


def test_watch_prints_diffs_resumes_after_reconnect_and_resyncs_on_a_gap(
    stub: StubApi, ws_script: Callable[..., StubWs], capsys: pytest.CaptureFixture[str]
) -> None:
    stub.route("GET", "/api/v1/models", body=MODELS)
    ws = ws_script(
        [{"type": "subscribed", "seq": 4, "epoch": "e1", "revision": 104}, event(5, added=["brand-new"]), "close"],
        [
            {"type": "subscribed", "seq": 6, "epoch": "e1", "revision": 106},
            event(5),  # replay overlap: already printed, must not print twice
            event(6),
            event(9),  # seq jumped: events 7 and 8 were missed → refetch
        ],
    )
    stub.route("GET", "/api/v1/client-config", body={"ws_url": ws.url, "api_prefix": "/api/v1"})

    assert run(stub, "watch", "--count", "3") == cli.EXIT_OK

    captured = capsys.readouterr()
    assert ws.subscribes == [
        {"action": "subscribe", "since": None, "epoch": None},
        {"action": "subscribe", "since": 5, "epoch": "e1"},
    ]
    assert ws.tokens == [TOKEN, TOKEN]
    out = captured.out
    assert out.count("#5 catalog changed") == 1
    assert "    + brand-new" in out
    assert out.index("#5 ") < out.index("#6 ") < out.index("#9 ")
    assert "catalog refetched: revision 7, 2 models from 1 providers" in out
    assert "events were missed before #9" in captured.err
    assert "reconnecting" in captured.err
    assert ("GET", "/api/v1/models") in [(s.method, s.path) for s in stub.seen]


def test_watch_resync_required_refetches_and_json_lines(
    stub: StubApi, ws_script: Callable[..., StubWs], capsys: pytest.CaptureFixture[str]
) -> None:
    stub.route("GET", "/api/v1/models", body=MODELS)
    ws = ws_script(
        [{"type": "subscribed", "seq": 1, "epoch": "e1", "revision": 1}, event(2, added=["x"]), "close"],
        # The server restarted with a new epoch: the resume cannot be served.
        [{"type": "subscribed", "seq": 0, "epoch": "e2", "revision": 3},
         {"type": "resync_required", "seq": 0, "epoch": "e2"},
         event(1, epoch="e2", added=["after-resync"])],
    )

    assert run(stub, "watch", "--ws-url", ws.url, "--count", "2", "--json") == cli.EXIT_OK

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["type"] for line in lines] == ["event.model_catalog.changed", "resync",
                                                "event.model_catalog.changed"]
    assert lines[1] == {"type": "resync", "revision": 7, "models": 2, "providers": 1}
    assert lines[2]["payload"]["changed"][0]["added"] == ["after-resync"]
    assert ws.subscribes[1] == {"action": "subscribe", "since": 2, "epoch": "e1"}
    assert all(s.path != "/api/v1/client-config" for s in stub.seen)  # --ws-url skips the lookup


def test_watch_refused_token_exits_2(stub: StubApi, ws_script: Callable[..., StubWs],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    ws = ws_script(accept_token="something-else")
    stub.route("GET", "/api/v1/client-config", body={"ws_url": ws.url, "api_prefix": "/api/v1"})

    assert run(stub, "watch", "--count", "1") == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "refused the token" in err
    assert TOKEN not in err


def test_watch_unreachable_service_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    assert cli.main(["--url", url, "--token", TOKEN, "watch", "--count", "1"]) == cli.EXIT_UNREACHABLE


# ---------------------------------------------------------------------------------------------------------
# end to end: the CLI as a subprocess against the local stack (`python -m devstack`)

INTERVAL_MS = 6000  # long enough that a loaded machine's CLI start-up (~1 s each) never spans it
DEPLOYMENT_ID = "cli-e2e-deployment"


def registry_document(*model_keys: str) -> dict[str, Any]:
    models = {key: {"id": key, "name": key, "limit": {"context": 32_000, "output": 4_000},
                    "cost": {"input": 1, "output": 2}} for key in model_keys}
    return {"acme": {"id": "acme", "name": "Acme", "models": models}}


@dataclass
class Live:
    stack: Any
    fake: Any
    config: Path
    keys: list[str]

    def client_env(self, **extra: str) -> dict[str, str]:
        from tests.stack import isolated_env

        return isolated_env({cli.URL_ENV: self.stack.http_url, cli.TOKEN_ENV: self.stack.token, **extra})

    def tick_env(self, **extra: str) -> dict[str, str]:
        """What an operator's cron job would set: the service's settings and AWS access, no URL or token."""
        from tests.stack import isolated_env

        return isolated_env({
            "MODEL_CATALOG_CONFIG": str(self.config),
            "MODEL_CATALOG_ALLOW_PRIVATE_URLS": "1",
            "MODEL_CATALOG_DYNAMODB_ENDPOINT": self.stack.dynamodb_endpoint,
            "MODEL_CATALOG_WS_MANAGEMENT_ENDPOINT": self.stack.management_endpoint,
            "MODEL_CATALOG_DEPLOYMENT_ID": DEPLOYMENT_ID,
            "MODEL_CATALOG_LOCAL_KEY_FILE": str(self.stack.state_dir / "oauth.key"),
            **extra,
        })

    def run(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chalicelib.cli", *argv], cwd=REPO,
                              env=env or self.client_env(), capture_output=True, text=True, timeout=120)

    def publish(self, *added: str) -> None:
        self.keys.extend(added)
        self.fake.route("GET", "/api.json", json=registry_document(*self.keys))

    def refresh_from_outside(self) -> dict[str, Any]:
        response = self.stack.post("/api/v1/providers/registry:refresh")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from tests.fakes.provider_server import FakeProviderServer
    from tests.stack import LocalStack

    tmp = tmp_path_factory.mktemp("cli-stack")
    keys = ["one", "two"]
    with FakeProviderServer() as fake:
        fake.route("GET", "/api.json", json=registry_document(*keys))
        fake.route("GET", "/flaky/v1/models", status=401, json={"error": {"message": "bad key"}})
        config = tmp / "catalog.toml"
        config.write_text(
            f"[model_catalog]\nrefresh_interval_ms = {INTERVAL_MS}\nrefresh_on_start = false\n\n"
            '[[providers]]\nid = "registry"\nname = "Acme registry"\nkind = "registry"\n'
            f'url = "{fake.url}/api.json"\n\n'
            f'[[providers]]\nid = "flaky"\nkind = "openai"\nbase_url = "{fake.url}/flaky/v1"\n'
        )
        # The stack's own scheduler stays quiet (tick_seconds=3600): only the CLI's `tick` drives the schedule.
        with LocalStack(tmp, config=config, env={"MODEL_CATALOG_DEPLOYMENT_ID": DEPLOYMENT_ID}) as stack:
            current = Live(stack, fake, config, keys)
            current.refresh_from_outside()  # every test starts from a filled catalog, whatever ran before
            yield current


@pytest.mark.stack
def test_stack_refresh_providers_models_and_status(live: Live) -> None:
    live.publish("cli-added")
    one = live.run("refresh", "--provider", "registry")
    assert one.returncode == cli.EXIT_OK, one.stderr
    assert "+ acme/cli-added" in one.stdout

    everything = live.run("refresh")
    assert everything.returncode == cli.EXIT_FAILED, everything.stderr
    assert "FAILED flaky:" in everything.stdout and "unchanged: registry" in everything.stdout

    providers = live.run("providers")
    assert providers.returncode == 0, providers.stderr
    flaky = next(line for line in providers.stdout.splitlines() if line.startswith("flaky"))
    assert "401" in flaky  # its last error names what went wrong
    registry = next(line for line in providers.stdout.splitlines() if line.startswith("registry"))
    assert registry.split()[registry.split().index("registry") + 1 :][:4] == ["Acme", "registry", "registry",
                                                                              str(len(live.keys))]

    models = live.run("models", "--provider", "registry", "--json")
    assert models.returncode == 0, models.stderr
    assert {m["id"] for m in json.loads(models.stdout)["models"]} == {f"acme/{k}" for k in live.keys}
    table = live.run("models")
    assert any(line.split()[:2] == ["registry", "acme/cli-added"] for line in table.stdout.splitlines())

    status = live.run("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["refresh_interval_ms"] == INTERVAL_MS


@pytest.mark.stack
def test_stack_usage_and_auth_errors(live: Live) -> None:
    unknown = live.run("refresh", "--provider", "nope")
    assert unknown.returncode == cli.EXIT_USAGE
    assert "no provider with id 'nope'" in unknown.stderr

    wrong = live.run("providers", env=live.client_env(**{cli.TOKEN_ENV: "not-the-token"}))
    assert wrong.returncode == cli.EXIT_USAGE
    assert "HTTP 401" in wrong.stderr


class _Lines:
    """Collects a subprocess pipe's lines on a thread; ``wait_for`` blocks until one contains a text."""

    def __init__(self, stream: Any):
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, count: int = 1, timeout: float = 30) -> None:
        with self._changed:
            found = self._changed.wait_for(lambda: sum(text in line for line in self.lines) >= count, timeout)
        assert found, f"never saw {text!r} ({count}x) in:\n" + "\n".join(self.lines)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _watch(live: Live, *argv: str) -> tuple[subprocess.Popen[str], _Lines, _Lines]:
    process = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "watch", *argv], cwd=REPO,
                               env=live.client_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, _Lines(process.stdout), _Lines(process.stderr)


@pytest.mark.stack
def test_stack_watch_prints_the_diff_of_an_outside_refresh(live: Live) -> None:
    process, out, err = _watch(live, "--count", "1")
    try:
        err.wait_for("subscribed:")
        live.publish("watched-1")
        live.refresh_from_outside()
        assert process.wait(timeout=30) == cli.EXIT_OK, err.text
    finally:
        process.kill()
    assert "catalog changed" in out.text
    assert "  registry (Acme registry): 1 added, 0 removed, 0 updated" in out.text
    assert "    + acme/watched-1" in out.text


@pytest.mark.stack
def test_stack_watch_resumes_after_the_connection_drops(live: Live) -> None:
    process, out, err = _watch(live, "--count", "2", "--json")
    try:
        err.wait_for("subscribed:")
        live.publish("before-drop")
        live.refresh_from_outside()
        out.wait_for("acme/before-drop")
        for connection_id in live.stack.connection_ids():
            live.stack.drop_connection(connection_id)  # the TCP connection vanishes, no close frame
        live.publish("after-drop")
        live.refresh_from_outside()
        assert process.wait(timeout=60) == cli.EXIT_OK, err.text
    finally:
        process.kill()
    events = [json.loads(line) for line in out.lines]
    assert [e["payload"]["changed"][0]["added"] for e in events] == [["acme/before-drop"], ["acme/after-drop"]]
    assert events[1]["seq"] == events[0]["seq"] + 1
    assert "reconnecting" in err.text and "resubscribed:" in err.text


def _tick(live: Live, **env: str) -> tuple[dict[str, Any], int, float, float]:
    started = time.monotonic()
    completed = live.run("tick", "--json", env=live.tick_env(**env))
    assert completed.returncode in (cli.EXIT_OK, cli.EXIT_FAILED), completed.stderr
    return json.loads(completed.stdout), completed.returncode, started, time.monotonic()


@pytest.mark.stack
def test_stack_tick_honours_the_due_time(live: Live) -> None:
    first, code, first_started, _ = _tick(live)
    if first["ran"]:  # the stack's start-up tick anchored the interval long enough ago: this one was due
        first, code, first_started, _ = _tick(live)
    assert first["ran"] is False and code == cli.EXIT_OK, first
    # Either the interval starts now (nothing on record) or a countdown from an earlier tick runs.
    match = re.search(r"next refresh in (\d+) ms", first["reason"])
    wait_ms = int(match.group(1)) if match else INTERVAL_MS
    assert match or "interval starts now" in first["reason"], first["reason"]

    live.publish("ticked")
    deadline = time.monotonic() + INTERVAL_MS / 1000 + 30
    outcome, code, _, ended = _tick(live)
    while not outcome["ran"] and time.monotonic() < deadline:
        assert "next refresh in" in outcome["reason"], outcome
        time.sleep(0.2)
        outcome, code, _, ended = _tick(live)
    assert outcome["ran"] is True, outcome
    # Not early: the due-check that ran came at least the announced wait after the first check.
    assert ended - first_started >= wait_ms / 1000
    assert "interval elapsed" in outcome["reason"]
    assert code == cli.EXIT_FAILED  # the result carries the flaky provider's failure
    registry_change = next(c for c in outcome["result"]["changed"] if c["provider_id"] == "registry")
    assert "acme/ticked" in registry_change["added"]

    again, code, _, _ = _tick(live)
    assert again["ran"] is False and code == cli.EXIT_OK, (again, outcome)
    remaining = int(re.search(r"next refresh in (\d+) ms", again["reason"]).group(1))
    assert 0 < remaining <= INTERVAL_MS

    # The scheduled run also reached the service: GET /models has the new model.
    models = live.stack.get("/api/v1/models", params={"provider_id": "registry"}).json()["models"]
    assert "acme/ticked" in {m["id"] for m in models}


@pytest.mark.stack
def test_stack_tick_refreshes_once_for_a_new_deployment_with_refresh_on_start(live: Live) -> None:
    new_deployment = {"MODEL_CATALOG_DEPLOYMENT_ID": "cli-e2e-next", "MODEL_CATALOG_REFRESH_ON_START": "1",
                      "MODEL_CATALOG_REFRESH_INTERVAL_MS": "0"}

    started, _, _, _ = _tick(live, **new_deployment)
    assert started["ran"] is True and "refresh_on_start" in started["reason"], started

    repeat, code, _, _ = _tick(live, **new_deployment)
    assert repeat["ran"] is False and code == cli.EXIT_OK, repeat
    assert "disabled" in repeat["reason"]


@pytest.mark.stack
def test_stack_tick_without_dynamodb_exits_3(live: Live) -> None:
    completed = live.run("tick", env=live.tick_env(MODEL_CATALOG_DYNAMODB_ENDPOINT=f"http://127.0.0.1:{closed_port()}"))
    assert completed.returncode == cli.EXIT_UNREACHABLE, completed.stderr
    assert "cannot reach DynamoDB" in completed.stderr
