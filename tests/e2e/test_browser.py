"""The web page in headless Chromium against the local stack (`python -m devstack`, as `make run`).

A fake models.dev-style registry is the only provider. The page signs in from ``/#token=…``, shows the
catalog, and a model added by a refresh started outside the page appears within 2 s without a reload.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import unless_installed
from tests.fakes.provider_server import FakeProviderServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HOSTILE_KEY = '<img src=x onerror="window.__pwned=1">'

pytestmark = [
    pytest.mark.browser,
    unless_installed(CHROMIUM, "Debian's chromium (make test installs it with infra/ensure-chromium.sh as root)"),
]


def registry_document(*model_keys: str) -> dict[str, Any]:
    """A models.dev-style api.json with one lab, ``acme``: catalog ids are ``acme/<key>``."""
    models = {
        key: {
            "id": key,
            "name": key.replace("-", " ").title() if key.isascii() and key.replace("-", "").isalnum() else None,
            "tool_call": True,
            "reasoning": key.startswith("think"),
            "modalities": {"input": ["text", "image"], "output": ["text"]},
            "limit": {"context": 200_000, "output": 32_000},
            "cost": {"input": 3, "output": 15},
        }
        for key in model_keys
    }
    return {"acme": {"id": "acme", "name": "Acme AI", "env": [], "npm": "@ai-sdk/openai-compatible",
                     "doc": "https://example.invalid", "models": models}}


class Catalog:
    """The stack plus its fake registry and a tiny REST client for the test's own calls."""

    def __init__(self, stack: Any, registry: FakeProviderServer, keys: list[str]):
        self.stack = stack
        self.registry = registry
        self.keys = keys

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack.token}"}

    def publish(self, *added: str) -> None:
        self.keys.extend(added)
        self.registry.route("GET", "/api.json", json=registry_document(*self.keys))

    def refresh(self) -> dict[str, Any]:
        response = requests.post(f"{self.stack.http_url}/api/v1/providers:refresh", headers=self.auth, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    from tests.stack import LocalStack

    keys = ["alpha-1", "beta-2", "think-3", HOSTILE_KEY]
    with FakeProviderServer() as registry:
        registry.route("GET", "/api.json", json=registry_document(*keys))
        tmp = tmp_path_factory.mktemp("browser-stack")
        config = tmp / "catalog.toml"
        config.write_text(
            "[model_catalog]\nrefresh_interval_ms = 0\nrefresh_on_start = false\n\n"
            '[[providers]]\nid = "registry"\nname = "Acme registry"\nkind = "registry"\n'
            f'url = "{registry.url}/api.json"\n'
        )
        with LocalStack(tmp, config=config) as stack:
            current = Catalog(stack, registry, keys)
            current.refresh()
            yield current


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def model_cell(page: Any, model_id: str) -> Any:
    return page.locator("#models-body .model-id").get_by_text(model_id, exact=True)


def open_signed_in(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    page.goto(f"{catalog.stack.http_url}/#token={catalog.stack.token}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=10_000)


@pytest.mark.stack
def test_new_model_from_an_outside_refresh_appears_live(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    open_signed_in(page, catalog)

    # The token left the address bar (replaceState: no history entry keeps it) but the page stays signed in.
    assert catalog.stack.token not in page.url
    assert urlsplit(page.url).fragment == ""
    assert catalog.stack.token in page.evaluate("() => sessionStorage.getItem('model-catalog.token')")
    expect(model_cell(page, "acme/alpha-1")).to_be_visible()
    expect(page.locator("#stat-models")).to_have_text(str(len(catalog.keys)))
    page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloads

    catalog.publish("fresh-4")
    result = catalog.refresh()  # from outside the page, as another user or the scheduler would
    assert result["changed"][0]["added"] == ["acme/fresh-4"]

    expect(model_cell(page, "acme/fresh-4")).to_be_visible(timeout=2000)
    expect(page.locator("#log")).to_contain_text("acme/fresh-4", timeout=2000)
    expect(page.locator("#models-body tr.flash-added")).to_have_count(1)
    assert page.evaluate("() => window.__sameDocument") is True
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-live-update.png"), full_page=True)


@pytest.mark.stack
def test_provider_data_is_shown_as_text_never_markup(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    open_signed_in(page, catalog)

    expect(model_cell(page, f"acme/{HOSTILE_KEY}")).to_be_visible()
    assert page.locator("#models-body img").count() == 0
    assert page.evaluate("() => window.__pwned") is None


@pytest.mark.stack
def test_without_a_token_the_page_asks_and_rejects_a_wrong_one(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    page.goto(f"{catalog.stack.http_url}/")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()

    page.fill("#token-input", "not-the-token")
    page.click("#signin button[type=submit]")
    expect(page.locator("#signin-error")).to_contain_text("not accepted")
    assert page.evaluate("() => sessionStorage.length") == 0

    page.fill("#token-input", catalog.stack.token)
    page.click("#signin button[type=submit]")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=10_000)
    expect(model_cell(page, "acme/alpha-1")).to_be_visible()

    page.reload()  # the token is kept for the tab's session
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=10_000)
    expect(page.locator("#signin")).to_be_hidden()


@pytest.mark.stack
def test_a_stale_token_in_the_session_asks_again(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    page.goto(f"{catalog.stack.http_url}/#token=expired-token")
    expect(page.locator("#signin-error")).to_contain_text("not accepted")
    assert "expired-token" not in page.url


@pytest.mark.stack
def test_refresh_buttons_show_the_refresh_result(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    open_signed_in(page, catalog)

    page.click("#refresh-all")
    expect(page.locator("#refresh-result")).to_contain_text("Revision", timeout=30_000)
    expect(page.locator("#refresh-result")).to_contain_text("1 unchanged")

    catalog.publish("button-5")
    page.locator('#providers-body button[data-provider="registry"]').click()
    expect(page.locator("#refresh-result")).to_contain_text("acme/button-5", timeout=30_000)
    expect(model_cell(page, "acme/button-5")).to_be_visible()


@pytest.mark.stack
def test_search_and_sort(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    open_signed_in(page, catalog)

    page.fill("#search", "think")
    expect(page.locator("#models-body tr")).to_have_count(1)
    expect(model_cell(page, "acme/think-3")).to_be_visible()

    page.fill("#search", "")
    page.click('#models-table button[data-sort="id"]')
    page.click('#models-table button[data-sort="id"]')  # descending
    expect(page.locator('#models-table th[aria-sort="descending"]')).to_have_text("Model")
    ids = page.locator("#models-body .model-id").all_inner_texts()
    assert ids == sorted(ids, reverse=True)


@pytest.mark.stack
def test_the_page_resubscribes_after_the_connection_drops(page: Any, catalog: Catalog) -> None:
    """The gateway drops the socket (no close frame); the page reconnects with since/epoch and misses nothing."""
    from playwright.sync_api import expect

    open_signed_in(page, catalog)
    page_connections = catalog.stack.connection_ids()
    assert page_connections, "the gateway lists the page's connection"

    for connection_id in page_connections:
        catalog.stack.drop_connection(connection_id)
    expect(page.locator("#conn")).not_to_have_attribute("data-state", "connected", timeout=5_000)
    catalog.publish("while-away-6")
    catalog.refresh()  # happens while the page is disconnected: it must come back through the replay

    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=10_000)
    expect(model_cell(page, "acme/while-away-6")).to_be_visible(timeout=5_000)


# ---------------------------------------------------------------------------------------------------------
# The page's protocol handling against a scripted backend (the real page and assets, a stub API and a stub
# WebSocket server): resubscribe with since/epoch, resync_required, seq gaps, 409 + Retry-After, 401.

SCRIPTED_TOKEN = "scripted-token"


class ScriptedBackend:
    def __init__(self) -> None:
        self.url = ""
        self.ws_url = ""
        self.models: list[dict[str, Any]] = [self.model("first")]
        self.revision = 1
        self.accepted_token = SCRIPTED_TOKEN
        self.refresh_responses: list[tuple[int, Any, dict[str, str]]] = []
        self.requests: list[tuple[str, str]] = []
        self.subscribes: list[dict[str, Any]] = []
        self.connections: list[Any] = []
        self.replies: list[dict[str, Any]] = [{"type": "subscribed", "seq": 3, "epoch": "e1", "revision": 1}]
        self._lock = threading.Condition()

    @staticmethod
    def model(key: str) -> dict[str, Any]:
        return {"provider_id": "p1", "id": f"m/{key}", "display_name": None, "context_length": 1000,
                "max_output_tokens": None, "capabilities": [], "pricing": None}

    def count(self, method: str, path: str) -> int:
        return sum(1 for seen in self.requests if seen == (method, path))

    def send(self, message: dict[str, Any]) -> None:
        self.connections[-1].send(json.dumps(message))

    def wait_subscribes(self, count: int, timeout: float = 10) -> None:
        with self._lock:
            assert self._lock.wait_for(lambda: len(self.subscribes) >= count, timeout), self.subscribes

    def on_subscribe(self, connection: Any, message: dict[str, Any]) -> None:
        with self._lock:
            self.subscribes.append(message)
            replies, self.replies = self.replies, [{"type": "subscribed", "seq": 0, "epoch": "e1", "revision": 1}]
            self._lock.notify_all()
        for reply in replies:
            connection.send(json.dumps(reply))


@pytest.fixture
def scripted() -> Iterator[ScriptedBackend]:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from websockets.sync.server import serve

    from chalicelib.entrypoints import webpage as web

    backend = ScriptedBackend()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _serve(self) -> None:
            path = urlsplit(self.path).path
            backend.requests.append((self.command, path))
            if path == "/stage" or path.startswith("/stage/"):  # API Gateway's stage prefix, as deployed
                path = path.removeprefix("/stage") or "/"
            if path == "/" or path.startswith("/assets/"):
                response = web.index() if path == "/" else web.asset(path.removeprefix("/assets/"))
                self._reply(response.status_code, response.body, response.headers)
                return
            if self.headers.get("Authorization") != f"Bearer {backend.accepted_token}":
                self._reply(401, {"error": {"code": "unauthorized", "message": "missing or invalid bearer token"}})
                return
            if self.command == "POST" and backend.refresh_responses:
                self._reply(*backend.refresh_responses.pop(0))
                return
            body = {
                "/api/v1/client-config": {"ws_url": backend.ws_url, "api_prefix": "/api/v1"},
                "/api/v1/providers": {"providers": [{"id": "p1", "name": "P one", "kind": "openai",
                                                     "refreshable": True, "model_count": len(backend.models),
                                                     "last_refreshed_at": None, "last_error": None}]},
                "/api/v1/models": {"revision": backend.revision, "models": backend.models},
                "/api/v1/refresh/status": {"refresh_interval_ms": 0, "refresh_on_start": False, "last_run": None,
                                           "next_due_at": None},
            }.get(path)
            self._reply(200 if body else 404, body or {"error": {"code": "not_found", "message": path}})

        do_GET = _serve  # noqa: N815
        do_POST = _serve  # noqa: N815

    def ws_handler(connection: Any) -> None:
        backend.connections.append(connection)
        for raw in connection:
            message = json.loads(raw)
            if message.get("action") == "subscribe":
                backend.on_subscribe(connection, message)
            elif message.get("action") == "ping":
                connection.send(json.dumps({"type": "pong"}))

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ws = serve(ws_handler, "127.0.0.1", 0)
    for server in (http, ws):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    backend.url = f"http://127.0.0.1:{http.server_address[1]}"
    backend.ws_url = f"ws://127.0.0.1:{ws.socket.getsockname()[1]}/"
    yield backend
    ws.shutdown()
    http.shutdown()
    http.server_close()


def _open_scripted(page: Any, backend: ScriptedBackend) -> None:
    from playwright.sync_api import expect

    page.goto(f"{backend.url}/#token={SCRIPTED_TOKEN}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=10_000)
    expect(model_cell(page, "m/first")).to_be_visible()


def change_event(seq: int, epoch: str, key: str) -> dict[str, Any]:
    return {"type": "event.model_catalog.changed", "seq": seq, "epoch": epoch, "timestamp": "2026-01-01T00:00:00Z",
            "payload": {"revision": seq, "changed": [{"provider_id": "p1", "provider_name": "P one",
                                                      "added": [f"m/{key}"], "removed": [], "updated": []}],
                        "unchanged": [], "failed": []}}


def test_page_resumes_with_since_and_reloads_on_resync_and_gaps(page: Any, scripted: ScriptedBackend) -> None:
    from playwright.sync_api import expect

    _open_scripted(page, scripted)
    assert scripted.subscribes == [{"action": "subscribe", "since": None, "epoch": None}]

    scripted.models.append(scripted.model("second"))
    scripted.send(change_event(4, "e1", "second"))
    expect(model_cell(page, "m/second")).to_be_visible(timeout=2000)

    # The connection closes: the page reconnects and resumes after the last event it saw.
    scripted.replies = [{"type": "subscribed", "seq": 9, "epoch": "e2", "revision": 9},
                        {"type": "resync_required", "seq": 9, "epoch": "e2"}]
    scripted.models.append(scripted.model("while-away"))
    scripted.connections[-1].close()
    scripted.wait_subscribes(2)
    assert scripted.subscribes[1] == {"action": "subscribe", "since": 4, "epoch": "e1"}
    expect(model_cell(page, "m/while-away")).to_be_visible(timeout=5000)  # resync → everything reloaded
    expect(page.locator("#log")).to_contain_text("Missed changes")

    # A jump in seq (10 never arrived): the page reloads everything rather than trusting the diff.
    scripted.models.append(scripted.model("after-gap"))
    scripted.models.append(scripted.model("unannounced"))
    scripted.send(change_event(11, "e2", "after-gap"))
    expect(model_cell(page, "m/unannounced")).to_be_visible(timeout=2000)
    expect(page.locator("#log")).to_contain_text("Some changes were missed")

    # A replayed event the page has already seen is ignored: only the next new one causes a reload.
    loads = scripted.count("GET", "/api/v1/models")
    scripted.send(change_event(11, "e2", "after-gap"))
    scripted.models.append(scripted.model("next"))
    scripted.send(change_event(12, "e2", "next"))
    expect(model_cell(page, "m/next")).to_be_visible(timeout=2000)
    assert scripted.count("GET", "/api/v1/models") == loads + 1


def test_refresh_button_waits_out_409_with_retry_after(page: Any, scripted: ScriptedBackend) -> None:
    from playwright.sync_api import expect

    busy = {"error": {"code": "refresh_in_progress", "message": "another refresh is running; retry in 1 s"}}
    result = {"revision": 2, "changed": [], "unchanged": ["p1"], "failed": []}
    scripted.refresh_responses = [(409, busy, {"Retry-After": "1"}), (200, result, {})]
    _open_scripted(page, scripted)

    page.click("#refresh-all")
    expect(page.locator("#refresh-result")).to_contain_text("retrying in 1 s")
    expect(page.locator("#refresh-result")).to_contain_text("Revision 2 · 0 changed · 1 unchanged", timeout=5000)
    assert scripted.count("POST", "/api/v1/providers:refresh") == 2


def test_a_revoked_token_sends_the_page_back_to_sign_in(page: Any, scripted: ScriptedBackend) -> None:
    from playwright.sync_api import expect

    _open_scripted(page, scripted)

    scripted.accepted_token = "rotated"
    scripted.send(change_event(4, "e1", "x"))  # the reload that follows gets 401
    expect(page.locator("#signin")).to_be_visible(timeout=5000)
    expect(page.locator("#signin-error")).to_contain_text("not accepted")
    assert page.evaluate("() => sessionStorage.getItem('model-catalog.token')") is None


def test_page_works_under_an_api_gateway_stage_path(page: Any, scripted: ScriptedBackend) -> None:
    """Deployed, the page lives at https://<api>/<stage> (often typed without the trailing slash)."""
    from playwright.sync_api import expect

    page.goto(f"{scripted.url}/stage#token={SCRIPTED_TOKEN}")

    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=10_000)
    expect(model_cell(page, "m/first")).to_be_visible()
    assert urlsplit(page.url).path == "/stage/"
    assert SCRIPTED_TOKEN not in page.url
    assert ("GET", "/stage/api/v1/models") in scripted.requests
    # (Chromium's preload scanner may fetch assets relative to "/stage" before the redirect; API calls never.)
    assert [path for _, path in scripted.requests if "/api/v1/" in path and not path.startswith("/stage/")] == []
