"""The CLI against small stub servers of its own: argument parsing, output formats, exit codes 0/1/2/3,
and `watch`'s resume/resync logic over a scripted WebSocket. Fast; no local stack needed
The end-to-end runs against the local stack are at the bottom (marked ``stack``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import catalog_cli as cli
from catalog_cli import commands, watch
from tests.stack import closed_port

REPO = Path(__file__).resolve().parents[2]
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

    assert stub.seen[-1].query == {"provider_id": ["openai"], "limit": ["5000"]}
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


HOSTILE = "gpt\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\r"  # clear screen, set title, C1 CSI, bidi override, CR


def test_provider_text_cannot_drive_the_terminal(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    providers = {"providers": [{**PROVIDERS["providers"][0], "name": HOSTILE, "last_error": "bad " + HOSTILE}]}
    stub.route("GET", "/api/v1/providers", body=providers)
    stub.route("GET", "/api/v1/models", body={"revision": 1, "models": [
        {"provider_id": "openai", "id": HOSTILE, "display_name": HOSTILE, "context_length": None,
         "max_output_tokens": None, "capabilities": [], "pricing": None}]})
    stub.route("POST", "/api/v1/providers:refresh", body={
        "revision": 2, "changed": [{"provider_id": "openai", "provider_name": HOSTILE, "added": [HOSTILE],
                                    "removed": [], "updated": []}],
        "unchanged": [], "failed": [{"provider_id": "x", "reason": HOSTILE}]})
    for argv in (["providers"], ["models"], ["refresh"]):
        run(stub, *argv)
        out = capsys.readouterr().out
        assert not any(ch in out for ch in "\x1b\x07\x9b\u202e\r"), (argv, out)
        assert "gpt\\x1b[2J" in out and "\\u202eevil" in out  # shown, not obeyed


def test_negative_control_the_hostile_text_really_holds_control_characters() -> None:
    assert not HOSTILE.isprintable()
    from catalog_cli.format import safe

    assert safe("plain model-id café") == "plain model-id café"


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


def test_watch_prints_diffs_resumes_after_reconnect_and_reads_missed_events_from_the_feed(
    stub: StubApi, ws_script: Callable[..., StubWs], capsys: pytest.CaptureFixture[str]
) -> None:
    stub.route("GET", "/api/v1/changes", body={"epoch": "e1", "seq": 9, "events": [event(7), event(8)],
                                               "has_more": False, "resync_required": False})
    ws = ws_script(
        [{"type": "subscribed", "seq": 4, "epoch": "e1", "revision": 104}, event(5, added=["brand-new"]), "close"],
        [
            {"type": "subscribed", "seq": 6, "epoch": "e1", "revision": 106},
            event(5),  # replay overlap: already printed, must not print twice
            event(6),
            event(9),  # seq jumped: events 7 and 8 were missed → read from the change feed, not the catalog
        ],
    )
    stub.route("GET", "/api/v1/client-config", body={"ws_url": ws.url, "api_prefix": "/api/v1"})

    assert run(stub, "watch", "--count", "5") == cli.EXIT_OK

    captured = capsys.readouterr()
    assert ws.subscribes == [
        {"action": "subscribe", "since": None, "epoch": None},
        {"action": "subscribe", "since": 5, "epoch": "e1"},
    ]
    assert ws.tokens == [TOKEN, TOKEN]
    out = captured.out
    assert out.count("#5 catalog changed") == 1
    assert "    + brand-new" in out
    assert out.index("#5 ") < out.index("#6 ") < out.index("#7 ") < out.index("#8 ") < out.index("#9 ")
    assert "read 2 missed events from the change feed" in captured.err and "reconnecting" in captured.err
    feed = [s for s in stub.seen if s.path == "/api/v1/changes"]
    assert [(s.query["since"], s.query["epoch"]) for s in feed] == [(["6"], ["e1"])]
    assert all(s.path != "/api/v1/models" for s in stub.seen)  # nothing downloaded the catalog


def test_watch_resyncs_page_by_page_when_the_feed_no_longer_has_the_missed_events(
    stub: StubApi, ws_script: Callable[..., StubWs], capsys: pytest.CaptureFixture[str]
) -> None:
    stub.route("GET", "/api/v1/changes", body={"epoch": "e1", "seq": 9, "events": [], "has_more": False,
                                               "resync_required": True})
    first, second = MODELS["models"]
    stub.route("GET", "/api/v1/models", body={"revision": 7, "models": [first], "next_cursor": "c1"})
    stub.route("GET", "/api/v1/models", body={"revision": 7, "models": [second], "next_cursor": None})
    ws = ws_script([{"type": "subscribed", "seq": 4, "epoch": "e1", "revision": 104}, event(5), event(9)])

    assert run(stub, "watch", "--ws-url", ws.url, "--count", "2") == cli.EXIT_OK

    captured = capsys.readouterr()
    assert "events were missed before #9" in captured.err
    assert "catalog refetched: revision 7, 2 models from 1 providers" in captured.out
    assert [s.query.get("cursor") for s in stub.seen if s.path == "/api/v1/models"] == [None, ["c1"]]


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
# watch keeps its copy of the catalog current from the events


def watcher_on(stub: StubApi, as_json: bool = False) -> tuple[watch.Watcher, Any, Any]:
    import io

    from catalog_cli.client import ApiClient

    out, err = io.StringIO(), io.StringIO()
    watcher = watch.Watcher(ApiClient(stub.url, TOKEN), "ws://unused", TOKEN, out, err, as_json=as_json)
    watcher.since, watcher.epoch = 1, "e1"
    return watcher, out, err


def change_event(seq: int, change: dict[str, Any], truncated: bool = False) -> dict[str, Any]:
    message = event(seq)
    message["payload"]["changed"] = [{"provider_id": "openai", "provider_name": "OpenAI", "added": [], "removed": [],
                                      "updated": [], "changes": [], **change}]
    if truncated:
        message["truncated"] = message["payload"]["truncated"] = True
    return message


def test_watch_applies_each_events_diff_to_its_copy_reading_only_providers_with_added_models(stub: StubApi) -> None:
    watcher, _out, _err = watcher_on(stub)
    watcher.catalog = watch.LocalCatalog(7, [dict(m) for m in MODELS["models"]])
    watcher._handle(change_event(2, {"removed": ["whisper-1"], "updated": ["gpt-4o"], "changes": [
        {"model_id": "gpt-4o", "field": "context_length", "before": 128000, "after": 200000}]}))
    assert stub.seen == []  # removals and field changes come with the event: nothing is read
    assert watcher.catalog.providers == {"openai": {"gpt-4o": {**MODELS["models"][0], "context_length": 200000}}}
    added = {"provider_id": "openai", "id": "o3", "display_name": "o3", "context_length": 200000,
             "max_output_tokens": None, "capabilities": ["reasoning"], "pricing": None}
    stub.route("GET", "/api/v1/models", body={"revision": 103, "models": [
        {**MODELS["models"][0], "context_length": 200000}, added], "next_cursor": None})
    watcher._handle(change_event(3, {"added": ["o3"]}))
    assert [(s.path, s.query) for s in stub.seen] == [("/api/v1/models", {"provider_id": ["openai"], "limit": ["5000"]})]
    assert sorted(watcher.catalog.providers["openai"]) == ["gpt-4o", "o3"] and watcher.catalog.revision == 103


def test_a_truncated_event_is_completed_by_reading_only_the_providers_it_names(stub: StubApi) -> None:
    stub.route("GET", "/api/v1/models", body=MODELS)
    watcher, out, _err = watcher_on(stub)
    watcher._handle(change_event(2, {"added_count": 9_000}, truncated=True))  # the ids were cut to fit
    assert [s.query.get("provider_id") for s in stub.seen] == [["openai"]]
    assert "read the changed providers again: openai: 2 models" in out.getvalue()
    watcher_json, out_json, _ = watcher_on(stub, as_json=True)
    watcher_json._handle(change_event(2, {"added_count": 9_000}, truncated=True))
    assert json.loads(out_json.getvalue().splitlines()[-1]) == {"type": "providers_read", "revision": 102,
                                                                 "models": {"openai": 2}}
