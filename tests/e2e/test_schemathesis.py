"""Schemathesis against the running local stack: every operation of ``GET /api/v1/openapi.json``, fuzzed from
the document itself, answers without a 5xx and exactly as documented (status code, content type, headers, body
schema, 401 without the token, 405 with ``Allow`` for undeclared methods, 4xx for invalid input).

The stack's providers are a fake provider server on 127.0.0.1 playing real wire formats (tests/fixtures), so the
refresh operations run fast and offline. The run is bounded and reproducible: at most ``MAX_EXAMPLES`` generated
cases per operation (plus schemathesis's coverage cases), derandomized, no example database. A failure prints
the request to replay with curl.

Two cases random inputs rarely reach are checked explicitly: walking pages with ``next_cursor``, and the ``409``
with ``Retry-After`` of a refresh that waited too long. The negative control runs this file's fuzz test against a
server that answers 500 or a wrong body, and expects it to fail.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    unsupported_method,
)
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fakes.provider_server import FakeProviderServer, fixture_json
from tests.stack import REPO, LocalStack

pytestmark = pytest.mark.stack

MAX_EXAMPLES = 25
TOKEN = "schemathesis-token-0123456789"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
]
# chalice's local server is Python's http.server, which answers 501 to methods it has no handler for (TRACE,
# QUERY); API Gateway never forwards those either. Every other method gets the app's own 405 + Allow.
UNEXPECTED_METHODS = {"get", "put", "post", "delete", "options", "patch"}
SLOW_PROVIDER_PATH = "/openai/v1/models"


def load_schema(base_url: str, token: str) -> Any:
    """The document as the service serves it, set up to call that service with the bearer token."""
    loaded = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json", timeout=30)
    loaded.config.update(base_url=base_url, headers={"Authorization": f"Bearer {token}"})
    loaded.config.phases.coverage.unexpected_methods = set(UNEXPECTED_METHODS)
    return loaded


# A generated webhook URL could name any host; the service would POST to it once an event came. Every created
# endpoint points at a closed loopback port instead (the URL rules themselves are tested in test_webhooks*.py).
SAFE_WEBHOOK_URL = "http://127.0.0.1:9/hook"


def call_and_validate(case: Any) -> Any:
    if isinstance(getattr(case, "body", None), dict) and isinstance(case.body.get("url"), str):
        case.body["url"] = SAFE_WEBHOOK_URL
    # Generated cases carry the schema's configured headers; hand-made ones (`operation.Case()`) do not.
    auth = case.operation.schema.config.headers or {}
    return case.call_and_validate(headers=dict(auth), checks=CHECKS, timeout=60)


@pytest.fixture(scope="module")
def providers():
    with FakeProviderServer() as server:
        server.route("GET", SLOW_PROVIDER_PATH, json=fixture_json("openai_models.json"))
        server.route("GET", "/openrouter/api/v1/models", json=fixture_json("openrouter_models.json"))
        server.route("GET", "/registry/api.json", json=fixture_json("models_dev_api.json"))
        server.route("GET", "/broken/v1/models", status=401, json=fixture_json("errors/openai_401.json"))
        yield server


@pytest.fixture(scope="module")
def stack(providers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schemathesis")
    config = tmp / "catalog.toml"
    # Short lock wait: the 409 test needs one; the fuzz run itself never refreshes concurrently.
    config.write_text(
        textwrap.dedent(
            f"""
            [model_catalog]
            refresh_on_start = false
            lock_wait_ms = 300

            [[providers]]
            id = "openai"
            kind = "openai"
            base_url = "{providers.url}/openai/v1"

            [[providers]]
            id = "openrouter"
            name = "OpenRouter"
            kind = "openrouter"
            base_url = "{providers.url}/openrouter/api/v1"

            [[providers]]
            id = "models.dev"
            kind = "registry"
            url = "{providers.url}/registry/api.json"

            [[providers]]
            id = "broken"
            kind = "openai"
            base_url = "{providers.url}/broken/v1"
            """
        )
    )
    with LocalStack(tmp, config=config, token=TOKEN) as running:
        # A filled catalog (models with pricing, one failed provider) gives the schemas something to bite on.
        first = running.post("/api/v1/providers:refresh")
        assert first.status_code == 200, first.text
        assert first.json()["failed"][0]["provider_id"] == "broken"
        yield running


@pytest.fixture(scope="module")
def api_schema(stack):
    return load_schema(stack.http_url, TOKEN)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case):
    call_and_validate(case)


def test_the_fuzz_run_covers_every_documented_operation(api_schema, stack):
    document = stack.get("/api/v1/openapi.json", token=False).json()
    documented = {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}
    fuzzed = {result.ok().label for result in api_schema.get_all_operations()}
    # schemathesis leaves out the operation that serves the document it was loaded from: checked here instead.
    assert fuzzed == documented - {"GET /api/v1/openapi.json"}
    assert len(fuzzed) == 34  # 12 of section 2, whoami and 3 token routes, 5 exports × (bearer, feed), changes, changes.atom, 6 webhook routes
    served = call_and_validate(api_schema["/api/v1/openapi.json"]["GET"].Case())
    assert served.json() == document


def test_pages_follow_next_cursor_as_documented(api_schema, stack):
    everything = stack.get("/api/v1/models").json()["models"]
    assert len(everything) > 5
    operation = api_schema["/api/v1/models"]["GET"]
    seen, cursor = [], None
    for _ in range(len(everything)):
        query = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = call_and_validate(operation.Case(query=query)).json()
        seen += page["models"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything


def test_a_refresh_that_waits_too_long_answers_409_with_retry_after(api_schema, stack, providers):
    providers.route("GET", SLOW_PROVIDER_PATH, json=fixture_json("openai_models.json"), delay=3)
    asked_before = len(providers.requests(SLOW_PROVIDER_PATH))
    holder: dict[str, Any] = {}
    running = threading.Thread(target=lambda: holder.update(r=stack.post("/api/v1/providers/openai:refresh")))
    try:
        running.start()
        # The refresh holds the catalog lock while the provider takes 3 s to answer (lock_wait_ms is 300).
        _wait_for(lambda: len(providers.requests(SLOW_PROVIDER_PATH)) > asked_before)
        operation = api_schema["/api/v1/providers:refresh"]["POST"]
        response = call_and_validate(operation.Case())
        assert response.status_code == 409
        assert int(response.headers["retry-after"][0]) >= 0
        assert response.json()["error"]["code"] == "refresh_in_progress"
    finally:
        providers.route("GET", SLOW_PROVIDER_PATH, json=fixture_json("openai_models.json"))
        running.join(30)
    assert holder["r"].status_code == 200, holder["r"].text


def _wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


class ServiceDouble(ThreadingHTTPServer):
    """Plays the service for the negative control: the document (only the operations of ``answers``), correct
    auth (401), 405 + ``Allow`` for other methods, and for each path the canned ``(status, body)`` of ``answers``."""

    daemon_threads = True

    def __init__(self, answers: dict[str, tuple[int, Any]]):
        from chalicelib.entrypoints import openapi

        document = openapi.document()
        document["paths"] = {path: document["paths"][path] for path in answers}
        self.answers = {"/api/v1/openapi.json": (200, document), **answers}
        super().__init__(("127.0.0.1", 0), _DoubleHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _DoubleHandler(BaseHTTPRequestHandler):
    server: ServiceDouble

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in self.server.answers:
            return self._send(404, {"error": {"code": "not_found", "message": path}})
        if path != "/api/v1/openapi.json" and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"error": {"code": "unauthorized", "message": "token"}})
        return self._send(*self.server.answers[path])

    def _not_allowed(self) -> None:
        self._send(405, {"error": {"code": "method_not_allowed", "message": self.command}}, {"Allow": "GET"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815


# The fuzz test above, run by pytest in a subprocess against a ServiceDouble in which one operation answers 500,
# one answers a body that violates its schema and one answers correctly (the control of the control).
NEGATIVE_CONTROL = """
import pytest

from tests.e2e.test_schemathesis import TOKEN, ServiceDouble, load_schema
from tests.e2e.test_schemathesis import test_every_operation_answers_as_documented  # noqa: F401


@pytest.fixture(scope="module")
def api_schema():
    service = ServiceDouble({
        "/api/v1/health": (500, {"error": {"code": "internal_error", "message": "internal error"}}),
        # Its conditional-GET headers are right: only the body is wrong.
        "/api/v1/providers": (200, {"providers": [{"id": "openai"}]}, {"ETag": '"e"', "X-Catalog-Revision": "1"}),
        "/api/v1/refresh/status": (200, {"refresh_interval_ms": 0, "refresh_on_start": False,
                                         "last_run": None, "next_due_at": None}),
    })
    try:
        yield load_schema(service.url, TOKEN)
    finally:
        service.close()
"""


def test_negative_control_a_5xx_or_a_wrong_body_fails_the_fuzz_test(tmp_path: Path):
    module = tmp_path / "test_broken_service.py"
    module.write_text(NEGATIVE_CONTROL)
    command = [sys.executable, "-m", "pytest", str(module), "-v", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
               "-W", "ignore::pytest.PytestUnknownMarkWarning"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "[GET /api/v1/health] SUBFAILED" in output, output
    assert "[GET /api/v1/providers] SUBFAILED" in output, output
    assert "[GET /api/v1/refresh/status] SUBPASSED" in output, output
    failures = re.findall(r"- (ST\d+ [^\n]+)", output)
    assert sorted(set(failures)) == ["ST101 Server error", "ST108 Response violates schema"], output
