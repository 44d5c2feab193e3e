"""The web page with 50,000 models (issues 14 and 17): headless Chromium against a local stack whose one registry
holds the synthetic 50,000-model catalog. Time to the first rows, time to reach the last model by holding End, the
DOM rows and JS heap that takes, and how long a model added by an outside refresh takes to show on the open page."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from tests.bench.common import ScenarioResult, fmt
from tests.bench.data import SyntheticRegistry
from tests.bench.stackctl import BENCH_TOKEN, running_stack
from tests.fakes.provider_server import FakeProviderServer

# Recorded in the page from navigation start: when the first model row is in the DOM.
_PROBE = """
window.__firstRows = null;
new MutationObserver((_, observer) => {
  if (document.querySelector("#models-body tr.model-row .model-id")) {
    window.__firstRows = performance.now();
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });
"""

# Holds End: scrolls to the bottom every frame until the list is complete and its last row is rendered.
_TO_THE_END = """
async (lastId) => {
  const started = performance.now();
  const scroller = document.getElementById("models-scroll");
  const table = document.getElementById("models-table");
  const shown = () => [...document.querySelectorAll("#models-body .model-id")].some((e) => e.textContent === lastId);
  while (!(table.dataset.complete === "true" && shown())) {
    scroller.scrollTop = scroller.scrollHeight;
    await new Promise((resolve) => requestAnimationFrame(resolve));
    if (performance.now() - started > 120000) throw new Error("the end never came: " + JSON.stringify(table.dataset));
  }
  return performance.now() - started;
}
"""

# Resolves with the wall-clock time (ms since the epoch) at which a row with this id appears.
_WHEN_SHOWN = """
(id) => new Promise((resolve) => {
  const body = document.getElementById("models-body");
  const seen = () => [...body.querySelectorAll(".model-id")].some((e) => e.textContent === id);
  if (seen()) return resolve(performance.timeOrigin + performance.now());
  new MutationObserver((_, observer) => {
    if (seen()) { observer.disconnect(); resolve(performance.timeOrigin + performance.now()); }
  }).observe(body, { childList: true, subtree: true });
})
"""


def _chromium_missing() -> str | None:
    from tests.e2e.test_browser import CHROMIUM

    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None if CHROMIUM.exists() else f"{CHROMIUM} is missing"


def run(quick: bool) -> ScenarioResult:
    size = 2_000 if quick else 50_000
    opens = 1 if quick else 3
    updates = 1 if quick else 5
    result = ScenarioResult("web_page", f"The web page with {size:,} models")
    missing = _chromium_missing()
    if missing:
        result.notes.append(f"Not measured: {missing}.")
        return result

    from playwright.sync_api import sync_playwright

    from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS

    result.method = [
        f"One provider of kind `registry` serving the synthetic {size:,}-model `api.json` (the large-registry "
        "scenario's data), filled by one refresh in a fresh stack; headless Chromium at 1280×800 opens "
        "`/#token=…` in a new browser context each time.",
        f"{opens} × first rows: from navigation start to the first model row in the DOM (a MutationObserver in the "
        "page). Then holding End: the page is scrolled to the bottom every frame until the list is complete and the "
        "last model is rendered. DOM rows and the JS heap (`performance.memory`, precise) are read there.",
        f"{updates} × live update: an outside `POST /api/v1/providers:refresh` after the registry added one model and "
        "removed one; the time until the new model's row is on the open page (searched for the new id's vendor, so "
        "the row lands in a loaded list), from the request's start and from its response.",
    ]
    first_rows = result.new_series("first model rows after navigation", "s")
    to_end = result.new_series("holding End until the last model is shown", "s")
    heap = result.new_series("JS heap used at the end of the list", "MB")
    from_request = result.new_series("outside refresh: request start → new row shown", "s")
    from_response = result.new_series("outside refresh: response → new row shown", "s")
    refresh = result.new_series("outside refresh: the request itself", "s")
    dom_rows: list[int] = []
    model_reads: list[int] = []

    registry = SyntheticRegistry(size)
    with FakeProviderServer() as server:
        server.route("GET", "/api.json", body=registry.body(), headers={"Content-Type": "application/json"})
        providers = [{"id": "registry", "name": "Big registry", "kind": "registry", "url": f"{server.url}/api.json"}]
        with running_stack({}, providers) as stack:
            response = stack.post("/api/v1/providers:refresh", timeout=120)
            if response.status_code != 200:
                raise RuntimeError(f"the fill answered {response.status_code}: {response.text[:300]}")
            last_id = stack.get("/api/v1/models?q=" + sorted(registry.document())[-1], timeout=120).json()["models"]
            last_id = sorted(m["id"] for m in last_id)[-1]
            url = f"{stack.http_url}/#token={BENCH_TOKEN}"
            # Chromium puts a Unix socket in $TMPDIR, whose path may not exceed 107 bytes: a long TMPDIR (a test's
            # own) gets a short directory of its own instead.
            short_tmp = tempfile.mkdtemp(prefix="mc-web-", dir="/tmp" if len(tempfile.gettempdir()) > 40 else None)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                     args=[*CHROMIUM_ARGS, "--enable-precise-memory-info"],
                                                     env={**os.environ, "TMPDIR": short_tmp})
                try:
                    for _ in range(opens):
                        context = browser.new_context(viewport={"width": 1280, "height": 800})
                        context.add_init_script(_PROBE)
                        page = context.new_page()
                        reads: list[str] = []
                        page.on("request", lambda r, reads=reads: reads.append(r.url) if "/api/v1/models" in r.url else None)
                        page.goto(url)
                        page.wait_for_function("() => window.__firstRows !== null", timeout=60_000)
                        first_rows.add(page.evaluate("() => window.__firstRows") / 1000)
                        page.wait_for_selector('#conn[data-state="connected"]', timeout=60_000)
                        to_end.add(page.evaluate(_TO_THE_END, last_id) / 1000)
                        dom_rows.append(page.locator("#models-body tr.model-row").count())
                        heap.add(page.evaluate("() => performance.memory.usedJSHeapSize") / 1e6)
                        model_reads.append(len(reads))
                        context.close()
                        result.sample_load()

                    context = browser.new_context(viewport={"width": 1280, "height": 800})
                    page = context.new_page()
                    page.goto(url)
                    page.wait_for_selector('#conn[data-state="connected"]', timeout=60_000)
                    for _ in range(updates):
                        added, _removed = registry.churn(1)
                        new_id = added[0]
                        server.route("GET", "/api.json", body=registry.body(), headers={"Content-Type": "application/json"})
                        # New ids go to a new vendor key, past the loaded end of the whole list: search for that
                        # vendor (a complete list), so the row has a place to land on the open page.
                        vendor = new_id.split("/")[0] + "/"
                        if page.input_value("#search") != vendor:
                            with page.expect_response(lambda r: "/api/v1/models" in r.url and "q=" in r.url):
                                page.fill("#search", vendor)
                        page.wait_for_function("() => document.getElementById('models-table').dataset.complete === 'true'")
                        page.eval_on_selector("#models-scroll", "el => { el.scrollTop = el.scrollHeight; }")
                        page.evaluate(f"(id) => {{ window.__shown = ({_WHEN_SHOWN})(id); }}", new_id)
                        started = time.time()
                        answer = stack.post("/api/v1/providers:refresh", timeout=120)
                        answered = time.time()
                        if answer.status_code != 200:
                            raise RuntimeError(f"the refresh answered {answer.status_code}: {answer.text[:300]}")
                        at = page.evaluate("() => window.__shown") / 1000
                        refresh.add(answered - started)
                        from_request.add(at - started)
                        from_response.add(max(0.0, at - answered))
                        result.sample_load()
                    context.close()
                finally:
                    browser.close()
                    shutil.rmtree(short_tmp, ignore_errors=True)

    result.facts += [
        ("model rows in the DOM at the end of the list (max)", str(max(dom_rows))),
        ("`GET /api/v1/models` reads to reach the end (max)", str(max(model_reads))),
        ("the page's `limit`s", "500 per page; doubling to 5,000 while held at the end"),
    ]
    result.notes.append(
        f"The live update includes the refresh of {size:,} models itself ({fmt(refresh.median)} s median): what the "
        "page adds is the response → row time (the event is pushed at commit, before the response)."
    )
    return result
