"""The web page in headless Chromium, against the local stack (`python -m devstack`, as `make run`) and against a
scripted backend (the real page and assets, a stub API and a stub WebSocket server).

Against the stack: a fake models.dev-style registry (a handful of models, one deprecated with a retirement date from
an override) and a bulk registry of 1,100 models. The page signs in from ``/#token=…``, a model added by a refresh
started outside the page appears within 2 s without a reload, a `read` token sees everything but the refresh
buttons, each filter shows what the API answers for it, the list loads page by page as it scrolls, and a price or
context change reads in the live log exactly as the CLI prints it.

Against the scripted backend: the protocol paths a real stack cannot be steered into on demand — resubscribe and
catch up through ``GET /changes``, ``resync_required`` and gaps in ``seq``, ``409`` + ``Retry-After``, ``401``,
``304`` revalidation, the webhooks panel, and a catalog of 50,000 models.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from catalog_cli.format import describe_change, format_changes
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
VIEWPORT = {"width": 1280, "height": 800}
ROW_HEIGHT = 48  # --row-h in app.css
MAX_DOM_ROWS = 80  # the visible rows (about 12 at 1280×800) plus the overscan above and below
BULK_MODELS = 1100  # more than two pages of 500

pytestmark = [
    pytest.mark.browser,
    unless_installed(CHROMIUM, "Debian's chromium (make test installs it with infra/ensure-chromium.sh as root)"),
]


# Per-key model fields of the fake registry (models.dev shape); anything else gets the defaults below.
REGISTRY_SPECS: dict[str, dict[str, Any]] = {
    "alpha-1": {"cost": {"input": 3, "output": 15, "cache_read": 0.3}},
    "beta-2": {"limit": {"context": 32_000, "output": 8_000}, "modalities": {"input": ["text"], "output": ["text"]}},
    "think-3": {"reasoning": True, "limit": {"context": 1_000_000, "output": 64_000}},
    "legacy-0": {"status": "deprecated", "limit": {"context": 16_000, "output": 4_000}, "tool_call": False},
}


def registry_model(key: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    model = {
        "id": key,
        "name": key.replace("-", " ").title() if key.isascii() and key.replace("-", "").isalnum() else None,
        "tool_call": True,
        "reasoning": False,
        "modalities": {"input": ["text", "image"], "output": ["text"]},
        "limit": {"context": 200_000, "output": 32_000},
        "cost": {"input": 3, "output": 15},
    }
    model.update(spec or {})
    return model


def registry_document(*model_keys: str, specs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A models.dev-style api.json with one lab, ``acme``: catalog ids are ``acme/<key>``."""
    specs = REGISTRY_SPECS if specs is None else specs
    models = {key: registry_model(key, specs.get(key)) for key in model_keys}
    return {"acme": {"id": "acme", "name": "Acme AI", "env": [], "npm": "@ai-sdk/openai-compatible",
                     "doc": "https://example.invalid", "models": models}}


def bulk_document(count: int) -> dict[str, Any]:
    """A second registry, ``zbulk`` (after ``registry`` in the service's order): ``zz/m-0000`` … small models."""
    models = {
        f"m-{index:04d}": {"id": f"m-{index:04d}", "name": f"Bulk {index}", "limit": {"context": 4_096, "output": 1_024},
                           "modalities": {"input": ["text"], "output": ["text"]}}
        for index in range(count)
    }
    return {"zz": {"id": "zz", "name": "ZZ", "env": [], "models": models}}


class Catalog:
    """The stack plus its fake registries and a tiny REST client for the test's own calls."""

    def __init__(self, stack: Any, registry: FakeProviderServer, keys: list[str]):
        self.stack = stack
        self.registry = registry
        self.keys = keys
        self.specs = {key: dict(spec) for key, spec in REGISTRY_SPECS.items()}

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack.token}"}

    def publish(self, *added: str) -> None:
        self.keys.extend(added)
        self.registry.route("GET", "/api.json", json=registry_document(*self.keys, specs=self.specs))

    def change(self, key: str, **fields: Any) -> None:
        self.specs[key] = {**self.specs.get(key, {}), **fields}
        self.publish()

    def refresh(self) -> dict[str, Any]:
        response = requests.post(f"{self.stack.http_url}/api/v1/providers:refresh", headers=self.auth, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.stack.http_url}/api/v1{path}", headers=self.auth, params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def model_ids(self, **params: Any) -> list[str]:
        return [model["id"] for model in self.get("/models", **params)["models"]]

    def total(self) -> int:
        return sum(provider["model_count"] for provider in self.get("/providers")["providers"])

    def token(self, scope: str) -> str:
        response = requests.post(f"{self.stack.http_url}/api/v1/tokens", headers=self.auth, timeout=30,
                                 json={"name": f"browser-{scope}", "scope": scope})
        assert response.status_code == 201, response.text
        return response.json()["token"]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    from tests.stack import LocalStack

    keys = ["alpha-1", "beta-2", "think-3", "legacy-0", HOSTILE_KEY]
    with FakeProviderServer() as registry:
        registry.route("GET", "/api.json", json=registry_document(*keys))
        registry.route("GET", "/bulk.json", json=bulk_document(BULK_MODELS))
        tmp = tmp_path_factory.mktemp("browser-stack")
        config = tmp / "catalog.toml"
        config.write_text(
            "[model_catalog]\nrefresh_interval_ms = 0\nrefresh_on_start = false\n\n"
            '[[providers]]\nid = "registry"\nname = "Acme registry"\nkind = "registry"\n'
            f'url = "{registry.url}/api.json"\n\n'
            '[[providers]]\nid = "zbulk"\nname = "Bulk registry"\nkind = "registry"\n'
            f'url = "{registry.url}/bulk.json"\n\n'
            '[[overrides]]\nprovider_id = "registry"\nmodel = "acme/legacy-0"\nretires_at = "2027-01-31"\n'
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


# Records what the page's Content-Security-Policy refused (an inline style or handler would land here).
CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI));
"""


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(CSP_PROBE)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    violations = page.evaluate("() => window.__cspViolations || []")
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert violations == [], f"the page's CSP refused: {violations}"


def model_cell(page: Any, model_id: str) -> Any:
    return page.locator("#models-body .model-id").get_by_text(model_id, exact=True)


def model_row(page: Any, model_id: str) -> Any:
    return page.locator("#models-body tr.model-row").filter(
        has=page.locator(".model-id").get_by_text(model_id, exact=True))


def shown_ids(page: Any) -> list[str]:
    return page.locator("#models-body tr.model-row .model-id").all_inner_texts()


def table_state(page: Any) -> dict[str, str]:
    return page.eval_on_selector("#models-table", "t => ({...t.dataset})")


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def open_signed_in(page: Any, catalog: Catalog, token: str | None = None) -> None:
    from playwright.sync_api import expect

    page.goto(f"{catalog.stack.http_url}/#token={token or catalog.stack.token}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=10_000)


def scroll_to_end(page: Any, attempts: int = 400) -> None:
    """Scrolls the model list down until the last page is loaded (the page reads the next one near the end)."""
    for _ in range(attempts):
        page.eval_on_selector("#models-scroll", "el => { el.scrollTop = el.scrollHeight; }")
        if table_state(page).get("complete") == "true":
            page.eval_on_selector("#models-scroll", "el => { el.scrollTop = el.scrollHeight; }")
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"the list never completed: {table_state(page)}")


@pytest.mark.stack
def test_new_model_from_an_outside_refresh_appears_live(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_signed_in(page, catalog)

    # The token left the address bar (replaceState: no history entry keeps it) but the page stays signed in.
    assert catalog.stack.token not in page.url
    assert urlsplit(page.url).fragment == ""
    assert catalog.stack.token in page.evaluate("() => sessionStorage.getItem('model-catalog.token')")
    expect(model_cell(page, "acme/alpha-1")).to_be_visible()
    expect(page.locator("#stat-models")).to_have_text(f"{catalog.total():,}")
    page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloads

    requested.clear()
    catalog.publish("fresh-4")
    result = catalog.refresh()  # from outside the page, as another user or the scheduler would
    assert result["changed"][0]["added"] == ["acme/fresh-4"]

    expect(model_cell(page, "acme/fresh-4")).to_be_visible(timeout=2000)
    expect(page.locator("#log")).to_contain_text("acme/fresh-4", timeout=2000)
    expect(page.locator("#models-body tr.flash-added")).to_have_count(1)
    assert page.evaluate("() => window.__sameDocument") is True
    # The diff was applied: only the changed provider's rows were read again, never the whole catalog.
    model_reads = [url for url in requested if "/api/v1/models" in url]
    assert model_reads, requested
    assert all("provider_id=registry" in url for url in model_reads), model_reads
    screenshot(page, "web-live-update.png")


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
    expect(page.locator("#whoami")).to_contain_text("admin")

    page.click("#refresh-all")
    expect(page.locator("#refresh-result")).to_contain_text("Revision", timeout=30_000)
    expect(page.locator("#refresh-result")).to_contain_text("2 unchanged")

    catalog.publish("button-5")
    page.locator('#providers-body button[data-provider="registry"]').click()
    expect(page.locator("#refresh-result")).to_contain_text("acme/button-5", timeout=30_000)
    expect(model_cell(page, "acme/button-5")).to_be_visible()


@pytest.mark.stack
def test_a_read_token_sees_live_updates_but_no_refresh_buttons(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    open_signed_in(page, catalog, token=catalog.token("read"))

    expect(page.locator("#whoami")).to_contain_text("read")
    expect(model_cell(page, "acme/alpha-1")).to_be_visible()
    expect(page.locator("#refresh-all")).to_be_hidden()
    expect(page.locator("#refresh-oauth")).to_be_hidden()
    expect(page.locator("#providers-body tr[data-provider-id]")).to_have_count(2)
    assert page.locator("#providers-body button").count() == 0
    expect(page.locator("#read-only-note")).to_be_visible()
    expect(page.locator("#webhooks-card")).to_be_hidden()

    catalog.publish("read-live-7")
    catalog.refresh()
    expect(model_cell(page, "acme/read-live-7")).to_be_visible(timeout=2000)
    expect(page.locator("#log")).to_contain_text("acme/read-live-7")
    screenshot(page, "web-read-token.png")


def apply_filter(page: Any, action: Any, **params: Any) -> None:
    """Runs `action` (which changes a filter) and waits for the page's read of exactly that query."""
    wanted = {name: [str(v) for v in value] if isinstance(value, list) else [str(value)] for name, value in params.items()}

    def answers(response: Any) -> bool:
        parts = urlsplit(response.url)
        query = parse_qs(parts.query)
        query.pop("limit", None)
        return parts.path.endswith("/api/v1/models") and "cursor" not in query and query == wanted

    with page.expect_response(answers, timeout=5000):
        action()


@pytest.mark.stack
def test_each_filter_narrows_the_table_to_what_the_api_answers(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    open_signed_in(page, catalog)
    everything = catalog.total()
    assert table_state(page)["loaded"] == "500"  # the first page only
    expect(page.locator("#models-count")).to_have_text(f"500 of {everything:,} loaded")

    def expect_api(**params: Any) -> list[str]:
        wanted = catalog.model_ids(**params)
        assert 0 < len(wanted) < everything, params  # the filter narrows, and leaves something
        expect(page.locator("#models-body tr.model-row .model-id")).to_have_text(wanted)
        expect(page.locator("#models-table")).to_have_attribute("data-complete", "true")
        # One provider is a whole list (its total); the other filters narrow it ("N match").
        suffix = "" if set(params) == {"provider_id"} else " match"
        expect(page.locator("#models-count")).to_have_text(f"{len(wanted)}{suffix}")
        return wanted

    apply_filter(page, lambda: page.fill("#search", "ALPHA"), q="ALPHA")
    assert expect_api(q="ALPHA") == ["acme/alpha-1"]
    apply_filter(page, lambda: page.fill("#search", ""))

    apply_filter(page, lambda: page.check('#capability-filter input[value="reasoning"]'), capability="reasoning")
    assert expect_api(capability="reasoning") == ["acme/think-3"]
    apply_filter(page, lambda: page.uncheck('#capability-filter input[value="reasoning"]'))
    apply_filter(page, lambda: page.check('#capability-filter input[value="vision"]'), capability="vision")
    vision = expect_api(capability="vision")
    apply_filter(page, lambda: page.check('#capability-filter input[value="tools"]'), capability=["tools", "vision"])
    assert "acme/legacy-0" not in expect_api(capability=["tools", "vision"]) and "acme/legacy-0" in vision
    apply_filter(page, lambda: page.uncheck('#capability-filter input[value="vision"]'), capability="tools")
    apply_filter(page, lambda: page.uncheck('#capability-filter input[value="tools"]'))

    apply_filter(page, lambda: page.fill("#min-context", "128K"), min_context=128_000)
    assert "acme/beta-2" not in expect_api(min_context=128_000)
    apply_filter(page, lambda: page.fill("#min-context", ""))

    apply_filter(page, lambda: page.select_option("#status-filter", "deprecated"), status="deprecated")
    assert expect_api(status="deprecated") == ["acme/legacy-0"]
    apply_filter(page, lambda: page.select_option("#status-filter", ""))

    apply_filter(page, lambda: page.select_option("#provider-filter", "registry"), provider_id="registry")
    expect_api(provider_id="registry")

    # A value the service refuses: its 400 message is shown, not an empty list without a reason.
    page.fill("#min-context", "-5")
    expect(page.locator("#filter-error")).to_contain_text("min_context", timeout=5000)
    expect(page.locator("#filter-error")).to_contain_text("expected a whole number")
    page.fill("#min-context", "")
    expect(page.locator("#filter-error")).to_be_hidden(timeout=5000)
    screenshot(page, "web-filters.png")


@pytest.mark.stack
def test_deprecated_models_show_a_badge_and_their_retirement_date(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    open_signed_in(page, catalog)

    legacy = model_row(page, "acme/legacy-0")
    expect(legacy.locator(".lifecycle.deprecated")).to_have_text("deprecated")
    expect(legacy.locator(".lifecycle.retires")).to_have_text("retires 2027-01-31")
    active = model_row(page, "acme/alpha-1")
    expect(active).to_be_visible()
    assert active.locator(".lifecycle").count() == 0
    # The row shows what the catalog knows: short context, both prices and the cache price.
    expect(active.locator("td").nth(2)).to_have_text("200K")
    expect(active.locator(".price")).to_contain_text("$3.00 / $15.00")
    expect(active.locator(".price")).to_contain_text("cache $0.30 / —")


@pytest.mark.stack
def test_a_field_change_reads_in_the_live_log_as_the_cli_prints_it(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    open_signed_in(page, catalog)
    row = model_row(page, "acme/alpha-1")
    expect(row.locator("td").nth(2)).to_have_text("200K")

    catalog.change("alpha-1", limit={"context": 128_000, "output": 32_000}, cost={"input": 2.5, "output": 15, "cache_read": 0.3})
    result = catalog.refresh()
    [entry] = [change for change in result["changed"] if change["provider_id"] == "registry"]
    expected = [line.strip() for line in format_changes([entry]) if line.strip().startswith("~ acme/alpha-1")]
    assert expected == ["~ acme/alpha-1: context 200K → 128K; input $3.00 → $2.50"]

    line = page.locator("#log .change-line").filter(has_text="~ acme/alpha-1:")
    expect(line).to_have_text(expected[0], timeout=2000)
    expect(row.locator("td").nth(2)).to_have_text("128K", timeout=2000)  # the row took the new values in place
    expect(row.locator(".price")).to_contain_text("$2.50 / $15.00")
    screenshot(page, "web-field-change.png")


@pytest.mark.stack
def test_the_list_loads_page_by_page_as_it_scrolls(page: Any, catalog: Catalog) -> None:
    from playwright.sync_api import expect

    open_signed_in(page, catalog)
    everything = catalog.model_ids()
    assert len(everything) > 2 * 500
    assert table_state(page)["loaded"] == "500"
    assert shown_ids(page) == everything[: len(shown_ids(page))]  # the service's order

    page.eval_on_selector("#models-scroll", "el => { el.scrollTop = el.scrollHeight; }")
    expect(page.locator("#models-table")).not_to_have_attribute("data-loaded", "500", timeout=5000)
    scroll_to_end(page)

    assert table_state(page)["loaded"] == str(len(everything))
    expect(model_cell(page, everything[-1])).to_be_visible()
    tail = shown_ids(page)
    assert tail == everything[-len(tail):]
    assert page.locator("#models-body tr.model-row").count() <= MAX_DOM_ROWS
    expect(page.locator("#models-count")).to_have_text(f"{len(everything):,}")


@pytest.mark.stack
def test_the_page_resubscribes_after_the_connection_drops(page: Any, catalog: Catalog) -> None:
    """The gateway drops the socket (no close frame); the page reconnects, catches up through GET /changes from
    where it was, and misses nothing."""
    from playwright.sync_api import expect

    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_signed_in(page, catalog)
    page_connections = catalog.stack.connection_ids()
    assert page_connections, "the gateway lists the page's connection"

    for connection_id in page_connections:
        catalog.stack.drop_connection(connection_id)
    expect(page.locator("#conn")).not_to_have_attribute("data-state", "connected", timeout=5_000)
    catalog.publish("while-away-6")
    catalog.refresh()  # happens while the page is disconnected: it must come back through the catch-up

    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=10_000)
    expect(model_cell(page, "acme/while-away-6")).to_be_visible(timeout=5_000)
    expect(page.locator("#log")).to_contain_text("caught up on 1 change")
    assert any("/api/v1/changes?since=" in url for url in requested), requested


# ---------------------------------------------------------------------------------------------------------
# The page's protocol handling against a scripted backend: a stub API that implements what the page uses of
# sections 2, 7, 8 and 9 (filters, keyset pages, ETags, the change feed, whoami, webhooks) over a list of models
# the test controls, and a stub WebSocket server that sends what the test tells it to.

SCRIPTED_TOKEN = "scripted-token"
MODEL_PARAMETERS = {"provider_id", "capability", "min_context", "q", "status", "limit", "cursor"}


def encode_cursor(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    provider_id, model_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    return provider_id, model_id


class ScriptedBackend:
    def __init__(self) -> None:
        self.url = ""
        self.ws_url = ""
        self.models: list[dict[str, Any]] = [self.model("first")]
        self.generation = 0  # bump (or call `changed`) after editing a model in place: the ETags change
        self.revision = 1
        self.epoch = "e1"
        self.seq = 3
        self.journal: list[dict[str, Any]] = []
        self.accepted_token = SCRIPTED_TOKEN
        self.scope: str | None = "admin"  # None: no /whoami (a service from before scoped tokens)
        self.webhooks: list[dict[str, Any]] | None = None  # None: no /webhooks route (404)
        self.refresh_responses: list[tuple[int, Any, dict[str, str]]] = []
        self.requests: list[tuple[str, str]] = []
        self.calls: list[dict[str, Any]] = []
        self.subscribes: list[dict[str, Any]] = []
        self.connections: list[Any] = []
        self.replies: list[dict[str, Any]] | None = None  # the next subscribe's answer; default: the position
        self._lock = threading.Condition()
        self._sorted: tuple[tuple[int, int], list[dict[str, Any]], list[tuple[str, str]]] | None = None

    @staticmethod
    def model(key: str, provider_id: str = "p1", **fields: Any) -> dict[str, Any]:
        return {"provider_id": provider_id, "id": f"m/{key}", "display_name": None, "context_length": 1000,
                "max_output_tokens": None, "capabilities": [], "pricing": None, "status": "active",
                "retires_at": None, "modalities": None, **fields}

    def changed(self) -> None:
        self.generation += 1

    def count(self, method: str, path: str) -> int:
        return sum(1 for seen in self.requests if seen == (method, path))

    def calls_to(self, path: str) -> list[dict[str, Any]]:
        return [call for call in self.calls if call["path"] == path]

    def send(self, message: dict[str, Any]) -> None:
        self.connections[-1].send(json.dumps(message))

    def publish(self, event: dict[str, Any], send: bool = True) -> None:
        """Journals an event (for GET /changes) and, unless `send` is false, pushes it on the open socket."""
        with self._lock:
            self.journal.append(event)
            self.seq = max(self.seq, event["seq"])
        if send:
            self.send(event)

    def wait_subscribes(self, count: int, timeout: float = 10) -> None:
        with self._lock:
            assert self._lock.wait_for(lambda: len(self.subscribes) >= count, timeout), self.subscribes

    def on_subscribe(self, connection: Any, message: dict[str, Any]) -> None:
        with self._lock:
            self.subscribes.append(message)
            replies = self.replies or [{"type": "subscribed", "seq": self.seq, "epoch": self.epoch,
                                        "revision": self.revision}]
            self.replies = None
            self._lock.notify_all()
        for reply in replies:
            connection.send(json.dumps(reply))

    # -- the REST answers ------------------------------------------------------------------------------------
    def _version(self) -> str:
        return f"{self.revision}:{self.generation}:{len(self.models)}"

    def _etag(self, *parts: Any) -> str:
        return '"' + hashlib.sha256(json.dumps([self._version(), *parts], sort_keys=True).encode()).hexdigest()[:32] + '"'

    def sorted_models(self) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        marker = (self.generation, len(self.models))
        if self._sorted is None or self._sorted[0] != marker:
            rows = sorted(self.models, key=lambda m: (m["provider_id"], m["id"]))
            self._sorted = (marker, rows, [(m["provider_id"], m["id"]) for m in rows])
        return self._sorted[1], self._sorted[2]

    def models_answer(self, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        def bad(name: str, message: str) -> tuple[int, Any, dict[str, str]]:
            return 400, {"error": {"code": "invalid_parameter", "message": f"query parameter '{name}': {message}"}}, {}

        for name in query:
            if name not in MODEL_PARAMETERS:
                return bad(name, "not a parameter of this route")
        one = {name: values[0] for name, values in query.items()}
        capabilities = set(query.get("capability", []))
        if "min_context" in one and not one["min_context"].isdigit():
            return bad("min_context", f"expected a whole number from 0 to 1000000000000, got {one['min_context']!r}")
        min_context = int(one["min_context"]) if "min_context" in one else None
        text = one.get("q", "").casefold() or None
        limit = int(one["limit"]) if "limit" in one else None
        rows, keys = self.sorted_models()
        start = bisect.bisect_right(keys, decode_cursor(one["cursor"])) if "cursor" in one else 0

        def keep(m: dict[str, Any]) -> bool:
            return ((one.get("provider_id") in (None, m["provider_id"]))
                    and capabilities <= set(m["capabilities"])
                    and (min_context is None or (m["context_length"] or -1) >= min_context)
                    and one.get("status") in (None, m["status"])
                    and (text is None or text in m["id"].casefold() or text in (m["display_name"] or "").casefold()))

        found: list[dict[str, Any]] = []
        next_cursor = None
        for model in rows[start:]:
            if not keep(model):
                continue
            if limit is not None and len(found) == limit:
                next_cursor = encode_cursor((found[-1]["provider_id"], found[-1]["id"]))
                break
            found.append(model)
        body: dict[str, Any] = {"revision": self.revision, "models": found}
        if limit is not None:
            body["next_cursor"] = next_cursor
        etag = self._etag("models", sorted((k, sorted(v)) for k, v in query.items()))
        return 200, body, {"ETag": etag, "X-Catalog-Revision": str(self.revision)}

    def providers_answer(self) -> tuple[int, Any, dict[str, str]]:
        counts: dict[str, int] = {}
        for model in self.models:
            counts[model["provider_id"]] = counts.get(model["provider_id"], 0) + 1
        providers = [{"id": pid, "name": {"p1": "P one"}.get(pid, pid.upper()), "kind": "openai", "refreshable": True,
                      "model_count": counts.get(pid, 0), "last_refreshed_at": None, "last_error": None}
                     for pid in sorted(set(counts) | {"p1"})]
        return 200, {"providers": providers}, {"ETag": self._etag("providers"), "X-Catalog-Revision": str(self.revision)}

    def changes_answer(self, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        since = int(query["since"][0]) if "since" in query else None
        epoch = query.get("epoch", [self.epoch])[0]
        limit = int(query.get("limit", ["100"])[0])
        position = {"epoch": self.epoch, "seq": self.seq}
        kept = [event for event in self.journal if event["epoch"] == self.epoch]
        oldest = kept[0]["seq"] if kept else self.seq + 1
        if epoch != self.epoch or (since is not None and (since > self.seq or since + 1 < oldest)):
            return 200, {**position, "events": [], "has_more": False, "resync_required": True}, {}
        after = [event for event in kept if since is None or event["seq"] > since]
        return 200, {**position, "events": after[:limit], "has_more": len(after) > limit, "resync_required": False}, {}


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
            self.send_response(status)
            if status == 304:  # no body; the validators only
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                return
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            query = {k: [v for v in vs if v] for k, vs in parse_qs(parts.query, keep_blank_values=True).items()}
            query = {k: vs for k, vs in query.items() if vs}
            backend.requests.append((self.command, path))
            call = {"method": self.command, "path": path, "query": query,
                    "if_none_match": self.headers.get("If-None-Match"), "status": None}
            backend.calls.append(call)
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
            answer: tuple[int, Any, dict[str, str]] | None = None
            if path == "/api/v1/models":
                answer = backend.models_answer(query)
            elif path == "/api/v1/providers":
                answer = backend.providers_answer()
            elif path == "/api/v1/changes":
                answer = backend.changes_answer(query)
            elif path == "/api/v1/whoami" and backend.scope is not None:
                answer = 200, {"scope": backend.scope, "token_id": None, "name": "scripted"}, {}
            elif path == "/api/v1/webhooks" and backend.webhooks is not None:
                answer = 200, {"webhooks": backend.webhooks}, {}
            else:
                body = {
                    "/api/v1/client-config": {"ws_url": backend.ws_url, "api_prefix": "/api/v1"},
                    "/api/v1/refresh/status": {"refresh_interval_ms": 0, "refresh_on_start": False, "last_run": None,
                                               "next_due_at": None},
                }.get(path)
                answer = (200, body, {}) if body else (404, {"error": {"code": "not_found", "message": path}}, {})
            status, body, headers = answer
            etag = headers.get("ETag")
            if status == 200 and etag and self.headers.get("If-None-Match") == etag:
                status = 304
            call["status"] = status
            self._reply(status, body, headers)

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
    ws = serve(ws_handler, "127.0.0.1", 0, max_size=None)
    for server in (http, ws):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    backend.url = f"http://127.0.0.1:{http.server_address[1]}"
    backend.ws_url = f"ws://127.0.0.1:{ws.socket.getsockname()[1]}/"
    yield backend
    ws.shutdown()
    http.shutdown()
    http.server_close()


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _open_scripted(page: Any, backend: ScriptedBackend, first: str = "m/first") -> None:
    from playwright.sync_api import expect

    page.goto(f"{backend.url}/#token={SCRIPTED_TOKEN}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=10_000)
    expect(model_cell(page, first)).to_be_visible()


def change_event(seq: int, epoch: str, key: str = "", provider_id: str = "p1", **lists: Any) -> dict[str, Any]:
    entry = {"provider_id": provider_id, "provider_name": "P one", "added": [f"m/{key}"] if key else [],
             "removed": [], "updated": [], "changes": []}
    entry.update(lists)
    return {"type": "event.model_catalog.changed", "seq": seq, "epoch": epoch, "timestamp": "2026-01-01T00:00:00Z",
            "payload": {"revision": seq, "changed": [entry], "unchanged": [], "failed": []}}


def test_page_reloads_on_a_new_epoch_and_on_gaps_and_ignores_replays(page: Any, scripted: ScriptedBackend) -> None:
    from playwright.sync_api import expect

    _open_scripted(page, scripted)
    assert scripted.subscribes == [{"action": "subscribe", "since": None, "epoch": None}]

    scripted.models.append(scripted.model("second"))
    scripted.publish(change_event(4, "e1", "second"))
    expect(model_cell(page, "m/second")).to_be_visible(timeout=2000)

    # The connection closes; meanwhile the catalog's history started over (a new epoch): the page cannot catch up
    # event by event, so it reads the list again.
    scripted.epoch, scripted.seq, scripted.revision = "e2", 9, 9
    scripted.models.append(scripted.model("while-away"))
    scripted.connections[-1].close()
    scripted.wait_subscribes(2)
    assert scripted.subscribes[1] == {"action": "subscribe", "since": None, "epoch": None}
    expect(model_cell(page, "m/while-away")).to_be_visible(timeout=5000)
    expect(page.locator("#log")).to_contain_text("Missed changes")
    assert scripted.calls_to("/api/v1/changes") == []  # an epoch it no longer has: no catch-up attempted

    # A jump in seq (10 never arrived): the page reloads rather than trusting the diff.
    scripted.models.append(scripted.model("after-gap"))
    scripted.models.append(scripted.model("unannounced"))
    scripted.publish(change_event(11, "e2", "after-gap"))
    expect(model_cell(page, "m/unannounced")).to_be_visible(timeout=2000)
    expect(page.locator("#log")).to_contain_text("Some changes were missed")

    # A replayed event the page has already seen is ignored: only the next new one reads models again.
    page.wait_for_timeout(300)
    loads = scripted.count("GET", "/api/v1/models")
    scripted.send(change_event(11, "e2", "after-gap"))
    scripted.models.append(scripted.model("next"))
    scripted.publish(change_event(12, "e2", "next"))
    expect(model_cell(page, "m/next")).to_be_visible(timeout=2000)
    page.wait_for_timeout(300)
    assert scripted.count("GET", "/api/v1/models") == loads + 1


def test_after_a_reconnect_the_page_catches_up_through_the_change_feed(page: Any, scripted: ScriptedBackend) -> None:
    from playwright.sync_api import expect

    _open_scripted(page, scripted)
    scripted.models.append(scripted.model("pushed"))
    scripted.publish(change_event(4, "e1", "pushed"))
    expect(model_cell(page, "m/pushed")).to_be_visible(timeout=2000)

    # Two events the page never gets pushed (its socket is about to close): only the change feed has them.
    scripted.models.append(scripted.model("missed-5"))
    scripted.publish(change_event(5, "e1", "missed-5"), send=False)
    scripted.models.append(scripted.model("missed-6"))
    scripted.models.remove(next(m for m in scripted.models if m["id"] == "m/first"))
    scripted.publish(change_event(6, "e1", "missed-6", removed=["m/first"]), send=False)
    scripted.connections[-1].close()
    scripted.wait_subscribes(2)

    expect(model_cell(page, "m/missed-5")).to_be_visible(timeout=5000)
    expect(model_cell(page, "m/missed-6")).to_be_visible()
    expect(model_cell(page, "m/first")).to_have_count(0)  # the removal was applied too
    expect(page.locator("#log")).to_contain_text("caught up on 2 changes")
    [catch_up] = scripted.calls_to("/api/v1/changes")
    assert catch_up["query"]["since"] == ["4"] and catch_up["query"]["epoch"] == ["e1"]
    expect(page.locator('#log li.log-event[data-seq="6"]')).to_contain_text("m/missed-6")

    # Pushed again after the catch-up: applied once, in order.
    scripted.models.append(scripted.model("live-7"))
    scripted.publish(change_event(7, "e1", "live-7"))
    expect(model_cell(page, "m/live-7")).to_be_visible(timeout=2000)
    expect(page.locator("#log li.log-event")).to_have_count(4)


def test_a_resync_revalidates_with_the_etags_and_keeps_the_rows_on_304(page: Any, scripted: ScriptedBackend) -> None:
    from playwright.sync_api import expect

    _open_scripted(page, scripted)
    [first_read] = [c for c in scripted.calls_to("/api/v1/models")]
    assert first_read["if_none_match"] is None and first_read["status"] == 200

    # resync_required with nothing changed: the page asks with its ETags and keeps what it has on 304.
    scripted.send({"type": "resync_required", "seq": 3, "epoch": "e1"})
    expect(page.locator("#log")).to_contain_text("Missed changes")
    wait_until(lambda: len(scripted.calls_to("/api/v1/models")) == 2 and scripted.calls_to("/api/v1/models")[-1]["status"])
    expect(model_cell(page, "m/first")).to_be_visible()
    revalidated = scripted.calls_to("/api/v1/models")[-1]
    assert revalidated["if_none_match"] and revalidated["status"] == 304
    # /providers is revalidated alongside (in parallel): its 304 too.
    wait_until(lambda: any(c["if_none_match"] and c["status"] == 304 for c in scripted.calls_to("/api/v1/providers")))
    assert table_state(page)["loaded"] == "1"

    # Negative control: after a change the same question gets 200 and the new rows.
    scripted.models.append(scripted.model("behind-the-etag"))
    scripted.send({"type": "resync_required", "seq": 3, "epoch": "e1"})
    expect(model_cell(page, "m/behind-the-etag")).to_be_visible(timeout=5000)
    last = scripted.calls_to("/api/v1/models")[-1]
    assert last["if_none_match"] == revalidated["if_none_match"] and last["status"] == 200

    # A filter and back: the first query's answer is kept with its ETag, so coming back costs a 304.
    page.select_option("#status-filter", "deprecated")
    expect(page.locator("#models-count")).to_have_text("0 match", timeout=5000)
    expect(page.locator("#models-empty")).to_be_visible()
    page.select_option("#status-filter", "")
    expect(model_cell(page, "m/behind-the-etag")).to_be_visible(timeout=5000)
    back = scripted.calls_to("/api/v1/models")[-1]
    assert "status" not in back["query"] and back["if_none_match"] and back["status"] == 304
    assert table_state(page)["loaded"] == "2"


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


def test_a_refused_scope_says_so(page: Any, scripted: ScriptedBackend) -> None:
    from playwright.sync_api import expect

    scripted.scope = "refresh"
    refused = {"error": {"code": "insufficient_scope",
                         "message": "this route needs a token with the 'refresh' scope (yours: 'read')"}}
    scripted.refresh_responses = [(403, refused, {})]
    _open_scripted(page, scripted)

    page.click("#refresh-all")
    expect(page.locator("#refresh-result")).to_contain_text(
        "Refresh failed: Not allowed with this token: this route needs a token with the 'refresh' scope (yours: 'read')")
    expect(page.locator("#app")).to_be_visible()  # a 403 is not a sign-out


def test_a_revoked_token_sends_the_page_back_to_sign_in(page: Any, scripted: ScriptedBackend) -> None:
    from playwright.sync_api import expect

    _open_scripted(page, scripted)

    scripted.accepted_token = "rotated"
    scripted.publish(change_event(4, "e1", "x"))  # the read that follows gets 401
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


WEBHOOKS = [
    {"id": "wh_1", "url": "https://hooks.example.com/catalog", "description": "Gateway routes",
     "provider_ids": None, "enabled": True, "created_at": "2026-11-30T05:30:00Z",
     "deliveries": {"succeeded": 1234, "failed": 0, "pending": 0}, "last_error": None},
    {"id": "wh_2", "url": "https://billing.example.com/hooks/models", "description": None,
     "provider_ids": ["openai", "anthropic"], "enabled": True, "created_at": "2026-11-30T05:31:00Z",
     "deliveries": {"succeeded": 7, "failed": 2, "pending": 1}, "last_error": "HTTP 503 from the endpoint"},
    {"id": "wh_3", "url": "https://gone.example.com/<b>x</b>", "description": "<script>window.__pwned=1</script>",
     "provider_ids": None, "enabled": False, "created_at": "2026-11-30T05:32:00Z",
     "deliveries": {"succeeded": 3, "failed": 5, "pending": 0}, "last_error": "410 Gone: endpoint disabled"},
]


def test_admins_see_the_webhooks_and_their_health(page: Any, scripted: ScriptedBackend) -> None:
    from playwright.sync_api import expect

    scripted.webhooks = WEBHOOKS
    _open_scripted(page, scripted)

    card = page.locator("#webhooks-card")
    expect(card).to_be_visible()
    expect(page.locator("#webhooks-count")).to_have_text("3")
    healthy, failing, gone = (page.locator(f'#webhooks-body tr[data-webhook-id="{h["id"]}"]') for h in WEBHOOKS)
    expect(healthy.locator("td")).to_have_text(
        ["https://hooks.example.com/catalogGateway routes", "all", "Enabled", "1,234", "0", "0", "—"])
    expect(failing.locator("td")).to_have_text(
        ["https://billing.example.com/hooks/models", "openai, anthropic", "Enabled", "7", "2", "1",
         "HTTP 503 from the endpoint"])
    expect(gone).to_have_attribute("data-enabled", "false")
    expect(gone.locator(".state")).to_have_text("Disabled")
    expect(gone.locator("td").last).to_have_text("410 Gone: endpoint disabled")
    expect(gone).to_contain_text("<script>window.__pwned=1</script>")  # text, never markup
    assert page.evaluate("() => window.__pwned") is None
    screenshot(page, "web-webhooks.png")

    # Health follows the deliveries: read again after a change event.
    scripted.webhooks = [{**WEBHOOKS[1], "deliveries": {"succeeded": 8, "failed": 2, "pending": 0}, "last_error": None}]
    scripted.models.append(scripted.model("second"))
    scripted.publish(change_event(4, "e1", "second"))
    expect(page.locator("#webhooks-count")).to_have_text("1", timeout=6000)
    expect(page.locator("#webhooks-body td").nth(3)).to_have_text("8")


@pytest.mark.parametrize(("scope", "webhooks"), [("read", WEBHOOKS), ("refresh", WEBHOOKS), ("admin", None)])
def test_the_webhooks_panel_is_hidden_unless_admin_and_served(
    page: Any, scripted: ScriptedBackend, scope: str, webhooks: list[dict[str, Any]] | None
) -> None:
    from playwright.sync_api import expect

    scripted.scope = scope
    scripted.webhooks = webhooks
    _open_scripted(page, scripted)

    expect(page.locator("#whoami")).to_contain_text(scope)
    page.wait_for_timeout(500)
    expect(page.locator("#webhooks-card")).to_be_hidden()
    if scope == "admin":  # asked, got 404 (a service without webhooks), and said nothing about it
        assert [c["status"] for c in scripted.calls_to("/api/v1/webhooks")] == [404]
        assert page.locator("#log .log-error").count() == 0
    else:  # never asked
        assert scripted.calls_to("/api/v1/webhooks") == []
    if scope == "read":
        expect(page.locator("#refresh-all")).to_be_hidden()
    else:
        expect(page.locator("#refresh-all")).to_be_visible()


def _phrase_examples() -> list[tuple[str, Any, Any]]:
    """The field-change examples of the CLI's own test (tests/unit/test_cli_changes.py), so page and CLI are held to
    the same cases."""
    from tests.unit import test_cli_changes

    [mark] = [m for m in test_cli_changes.test_each_field_change_reads_as_its_phrases.pytestmark
              if m.name == "parametrize"]
    return [(field, before, after) for field, before, after, _ in mark.args[1]]


def test_field_changes_read_in_the_log_exactly_as_the_cli_prints_them(page: Any, scripted: ScriptedBackend) -> None:
    from playwright.sync_api import expect

    _open_scripted(page, scripted)
    examples = _phrase_examples()
    assert len(examples) >= 20
    ids = [f"m/example-{index:02d}" for index in range(len(examples))]
    changes = [{"model_id": model_id, "field": field, "before": before, "after": after}
               for model_id, (field, before, after) in zip(ids, examples, strict=True)]
    # One model with several changes: one line, phrases joined with "; ".
    ids.append("m/several")
    changes += [{"model_id": "m/several", "field": "context_length", "before": 128_000, "after": 200_000},
                {"model_id": "m/several", "field": "status", "before": "active", "after": "deprecated"}]
    ids.append("m/no-details")  # updated without field changes (as a truncated or older event): the id alone
    event = change_event(4, "e1", updated=ids, changes=changes)
    scripted.publish(event)

    expected = [line.strip() for line in format_changes(event["payload"]["changed"]) if line.strip().startswith("~")]
    assert "~ m/several: context 128K → 200K; deprecated" in expected and "~ m/no-details" in expected
    lines = page.locator('#log li.log-event[data-seq="4"] .change-line')
    expect(lines).to_have_count(len(expected), timeout=2000)
    assert lines.all_inner_texts() == expected

    # And beyond the examples: random values through the page's own formatter, against the CLI's.
    rng = random.Random(20261130)
    cases = [random_change(rng) for _ in range(1500)]
    got = page.evaluate("(cases) => cases.map((c) => window.CatalogFormat.describeChange(c))", cases)
    assert got == [describe_change(case) for case in cases]


def random_change(rng: random.Random) -> dict[str, Any]:
    def price() -> float | None:
        roll = rng.random()
        if roll < 0.1:
            return None
        if roll < 0.4:
            return round(rng.uniform(0, 100), 2)
        if roll < 0.55:  # exact binary ties and classic rounding traps
            return rng.choice([0.125, 0.375, 2.675, 1.005, 0.015, 1e-7, 1.0000001e-7, 123456.5, 0.00012345678, 0.0])
        return rng.uniform(0, 10) * 10 ** rng.randint(-8, 7)

    def tokens() -> int | None:
        roll = rng.random()
        if roll < 0.1:
            return None
        if roll < 0.4:  # exact ties of the short form: 8,250 → 8.2K; 1,125,000 → 1.12M (half to even)
            return rng.choice([8_250, 8_350, 1_005_000, 1_125_000, 999_950, 999_999, 131_072, 131_100, 10**10])
        return rng.randint(0, 10 ** rng.randint(1, 9))

    field = rng.choice(["context_length", "max_output_tokens", "pricing", "capabilities", "modalities", "retires_at"])
    if field in ("context_length", "max_output_tokens"):
        before, after = tokens(), tokens()
        if before is not None and rng.random() < 0.3:
            after = before + rng.randint(1, 40)  # same short form: the exact numbers
    elif field == "pricing":
        def table() -> dict[str, float | None] | None:
            keys = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
            return None if rng.random() < 0.15 else {key: price() for key in keys}
        before, after = table(), table()
        if before and before["input_per_mtok"] and rng.random() < 0.3:
            after = {**before, "input_per_mtok": before["input_per_mtok"] * (1 + 1e-9)}
    elif field == "capabilities":
        vocabulary = ["tools", "vision", "reasoning", "audio", "files"]
        before, after = rng.sample(vocabulary, rng.randint(0, 5)), rng.sample(vocabulary, rng.randint(0, 5))
    elif field == "modalities":
        vocabulary = ["text", "image", "pdf", "audio"]

        def sides() -> dict[str, list[str]] | None:
            if rng.random() < 0.2:
                return None
            return {"input": rng.sample(vocabulary, rng.randint(0, 4)), "output": rng.sample(vocabulary, rng.randint(0, 2))}
        before, after = sides(), sides()
    else:
        before, after = rng.choice([None, "2026-10-23"]), rng.choice([None, "2026-12-31"])
    return {"model_id": "m/x", "field": field, "before": before, "after": after}


def test_lifecycle_badges_and_prices_in_rows(page: Any, scripted: ScriptedBackend) -> None:
    from playwright.sync_api import expect

    scripted.models = [
        scripted.model("active", context_length=131_072, max_output_tokens=16_384, capabilities=["tools", "vision"],
                       pricing={"input_per_mtok": 0.15, "output_per_mtok": 0.6, "cache_read_per_mtok": 0.075,
                                "cache_write_per_mtok": None},
                       modalities={"input": ["text", "image"], "output": ["text"]}),
        scripted.model("retiring", status="deprecated", retires_at="2026-10-23", display_name="Retiring model"),
        scripted.model("deprecated-only", status="deprecated"),
    ]
    _open_scripted(page, scripted, first="m/active")

    active = model_row(page, "m/active")
    expect(active.locator("td")).to_have_text(
        ["p1", "m/active", "131.1K", "16.4K", "toolsvisionin text, image · out text", "$0.15 / $0.60cache $0.075 / —"])
    assert active.locator(".lifecycle").count() == 0
    retiring = model_row(page, "m/retiring")
    expect(retiring.locator(".lifecycle")).to_have_text(["deprecated", "retires 2026-10-23"])
    expect(retiring).to_contain_text("Retiring model")
    expect(model_row(page, "m/deprecated-only").locator(".lifecycle")).to_have_text(["deprecated"])

    # The status filter asks the service; the answer is what is shown.
    page.select_option("#status-filter", "deprecated")
    expect(page.locator("#models-count")).to_have_text("2 match", timeout=5000)
    assert shown_ids(page) == ["m/deprecated-only", "m/retiring"]
    assert scripted.calls_to("/api/v1/models")[-1]["query"]["status"] == ["deprecated"]

    # A change that deprecates a loaded model: the badge appears in place, the log says it in the CLI's words.
    page.select_option("#status-filter", "")
    expect(page.locator("#models-count")).to_have_text("3", timeout=5000)
    active_model = next(m for m in scripted.models if m["id"] == "m/active")
    active_model.update(status="deprecated", retires_at="2027-03-01")
    scripted.changed()
    scripted.publish(change_event(4, "e1", updated=["m/active"], changes=[
        {"model_id": "m/active", "field": "status", "before": "active", "after": "deprecated"},
        {"model_id": "m/active", "field": "retires_at", "before": None, "after": "2027-03-01"}]))
    expect(active.locator(".lifecycle")).to_have_text(["deprecated", "retires 2027-03-01"], timeout=2000)
    expect(page.locator("#log .change-line").first).to_have_text("~ m/active: deprecated; retires 2027-03-01")
    screenshot(page, "web-lifecycle.png")


FIFTY_THOUSAND = 50_000


def test_fifty_thousand_models_stay_a_few_dozen_rows_in_the_dom(page: Any, scripted: ScriptedBackend) -> None:
    """Structural facts rather than timings (those are `make bench`'s): the page reads one page, renders what is in
    view, reaches the last model by scrolling, holds a bounded number of rows, and a live change still lands."""
    from playwright.sync_api import expect

    scripted.models = [
        scripted.model(f"{index:05d}", provider_id="bulk", context_length=8_192 + index,
                       capabilities=["tools"] if index % 2 else [], display_name=f"Model number {index}")
        for index in range(FIFTY_THOUSAND)
    ]
    _open_scripted(page, scripted, first="m/00000")

    expect(page.locator("#stat-models")).to_have_text("50,000")
    assert table_state(page)["loaded"] == "500"
    assert page.locator("#models-body tr.model-row").count() <= MAX_DOM_ROWS
    heights = page.eval_on_selector_all("#models-body tr.model-row", "rows => rows.map(r => r.getBoundingClientRect().height)")
    assert set(heights) == {ROW_HEIGHT}, set(heights)  # a fixed row height: positions are computed, never measured
    [first_read] = scripted.calls_to("/api/v1/models")
    assert first_read["query"]["limit"] == ["500"]

    scroll_to_end(page)
    state = table_state(page)
    assert state["loaded"] == str(FIFTY_THOUSAND)
    expect(model_cell(page, "m/49999")).to_be_visible()
    assert page.locator("#models-body tr.model-row").count() <= MAX_DOM_ROWS
    assert int(state["resident"]) <= 10_000  # far pages were let go
    reads = scripted.calls_to("/api/v1/models")
    assert len(reads) <= 20, len(reads)  # pages grow while the reader stays at the end: 500, 1,000 … 5,000
    assert max(int(c["query"]["limit"][0]) for c in reads) == 5000
    expect(page.locator("#models-count")).to_have_text("50,000")
    screenshot(page, "web-50k-end.png")

    # Back to the top: the first pages were dropped, so they are read again from their cursors.
    page.eval_on_selector("#models-scroll", "el => { el.scrollTop = 0; }")
    expect(model_cell(page, "m/00000")).to_be_visible(timeout=5000)
    assert shown_ids(page)[:3] == ["m/00000", "m/00001", "m/00002"]

    # A live change at the top: only that range is read again, with the provider named.
    before = len(scripted.calls_to("/api/v1/models"))
    scripted.models.append(scripted.model("00000-new", provider_id="bulk"))
    scripted.publish(change_event(4, "e1", "00000-new", provider_id="bulk"))
    expect(model_cell(page, "m/00000-new")).to_be_visible(timeout=2000)
    later = scripted.calls_to("/api/v1/models")[before:]
    assert len(later) == 1 and later[0]["query"]["provider_id"] == ["bulk"], later

    # A search goes to the service: the answer is small, and complete.
    page.fill("#search", "number 4999")
    expect(page.locator("#models-count")).to_have_text("11 match", timeout=5000)
    assert shown_ids(page) == ["m/04999"] + [f"m/{n}" for n in range(49990, 50000)]
