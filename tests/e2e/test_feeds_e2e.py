"""Reading without a socket (docs/reference.md §8) end to end through the local stack (`python -m devstack`): the
change feed against a real WebSocket client, Atom read by feedparser over HTTP, conditional GET, every filter and
paging of ``GET /api/v1/models``, and the CLI.

One stack serves the module (under ``-n 2`` each worker may start its own); every test reads its own starting
position, so the tests do not depend on each other's order. The demo registry is the only provider; tests change
what it serves (only ever adding or changing models, so the shrink guard never trips) and refresh.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import feedparser
import pytest

import catalog_cli as cli
from chalicelib.core.domain import CAPABILITIES
from chalicelib.settings import TableNames
from tests.e2e.test_ws_e2e import Client, ws_connect
from tests.fakes.registry_documents import RegistryModels
from tests.stack import REPO, LocalStack, isolated_env

pytestmark = pytest.mark.stack

PROVIDER_NAME = 'Demo <&> "Registry"'  # user data that must be escaped in every format
CONFIG = f"""
[model_catalog]
refresh_interval_ms = 0
refresh_on_start = false

[[providers]]
id = "demo"
name = '{PROVIDER_NAME}'
kind = "registry"
url = "${{MODEL_CATALOG_DEMO_REGISTRY_URL:-http://127.0.0.1:9/api.json}}"
"""
HOSTILE_KEY = '<b>&"x"'


class Catalog:
    """What the demo registry serves, and refreshes through the REST API."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.registry = RegistryModels()
        self._names = itertools.count(1)

    def refresh(self) -> dict[str, Any]:
        response = self.stack.post("/api/v1/providers:refresh")
        assert response.status_code == 200, response.text
        return response.json()

    def change(self, **fields: Any) -> dict[str, Any]:
        """Add one new model (with ``fields``) and refresh: one event."""
        added = self.registry.put(f"model-{next(self._names):04d}", **fields)
        self.stack.set_registry(self.registry.document())
        result = self.refresh()
        assert result["changed"] and added in result["changed"][0]["added"], result
        return result

    def change_big(self, count: int = 1_500) -> dict[str, Any]:
        """Add ``count`` models with long ids: a change whose event is over the WebSocket limit."""
        batch = next(self._names)
        for index in range(count):
            self.registry.put(f"bulk-{batch:04d}-{index:05d}-" + "x" * 90)
        self.stack.set_registry(self.registry.document())
        return self.refresh()

    def models(self, query: str = "") -> list[dict[str, Any]]:
        response = self.stack.get("/api/v1/models" + query)
        assert response.status_code == 200, response.text
        return response.json()["models"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("feeds-e2e")
    config = root / "catalog.toml"
    config.write_text(textwrap.dedent(CONFIG))
    with LocalStack(root, config=config) as running:
        yield running


@pytest.fixture(scope="module")
def catalog(stack: LocalStack) -> Catalog:
    catalog = Catalog(stack)
    catalog.registry.put("alpha", name="Alpha Vision", context=200_000, tools=True, vision=True)
    catalog.registry.put("beta", name="Beta Reasoner", context=32_000, reasoning=True, tools=True)
    catalog.registry.put("gamma", name="Gamma Legacy", context=None, tools=True, status="deprecated")
    catalog.registry.put("delta", name=None, context=4_096)
    catalog.registry.put(HOSTILE_KEY, name="<script>alert(1)</script>", context=8_192, vision=True)
    catalog.stack.set_registry(catalog.registry.document())
    catalog.refresh()
    return catalog


@pytest.fixture
def ws(stack: LocalStack) -> Iterator[Any]:
    with contextlib.ExitStack() as opened:
        yield lambda: Client(opened.enter_context(ws_connect(stack.ws_connect_url)))


def feed(stack: LocalStack, query: str) -> dict[str, Any]:
    response = stack.get("/api/v1/changes" + query)
    assert response.status_code == 200, response.text
    return response.json()


# --- the change feed --------------------------------------------------------------------------------------


def test_the_feed_equals_the_websocket_events_payload_for_payload(stack, catalog, ws) -> None:
    client = ws()
    position, _ = client.subscribe()
    results = [catalog.change(tools=True), catalog.change_big(), catalog.change(context=1_000)]
    pushed = [client.next_event() for _ in results]
    assert [event["seq"] for event in pushed] == [position["seq"] + n for n in (1, 2, 3)]
    assert pushed[1].get("truncated") is True and "truncated" not in pushed[0]  # over the 128 KB message limit
    assert [pushed[0]["payload"], pushed[2]["payload"]] == [results[0], results[2]]

    pulled = feed(stack, f"?since={position['seq']}&epoch={position['epoch']}")
    assert pulled["events"] == pushed  # the same messages, the truncated one included
    assert (pulled["epoch"], pulled["seq"], pulled["has_more"], pulled["resync_required"]) == (
        position["epoch"], position["seq"] + 3, False, False)
    # ... and what subscribe replays to a client that was away.
    _, replayed = ws().subscribe(since=position["seq"], epoch=position["epoch"])
    assert replayed == pulled["events"]


def test_paging_with_limit(stack, catalog) -> None:
    start = feed(stack, "?limit=1")
    since, epoch = start["seq"], start["epoch"]
    for _ in range(3):
        catalog.change()
    everything = feed(stack, f"?since={since}&epoch={epoch}")["events"]
    assert len(everything) == 3
    walked, cursor, pages = [], since, []
    while True:
        page = feed(stack, f"?since={cursor}&epoch={epoch}&limit=2")
        pages.append((len(page["events"]), page["has_more"]))
        walked += page["events"]
        if not page["has_more"]:
            break
        cursor = page["events"][-1]["seq"]
    assert pages == [(2, True), (1, False)] and walked == everything
    newest = feed(stack, "?limit=2")
    assert newest["events"] == everything[-2:] and newest["has_more"] is False


def test_a_wrong_epoch_or_a_future_seq_requires_a_resync(stack, catalog) -> None:
    now = feed(stack, "?limit=1")
    expected = {"epoch": now["epoch"], "seq": now["seq"], "events": [], "has_more": False, "resync_required": True}
    assert feed(stack, f"?since=0&epoch=not-{now['epoch']}") == expected
    assert feed(stack, f"?epoch=not-{now['epoch']}") == expected
    assert feed(stack, f"?since={now['seq'] + 5}&epoch={now['epoch']}") == expected


def test_a_since_older_than_the_journal_keeps_requires_a_resync(stack, catalog) -> None:
    start = feed(stack, "?limit=1")
    since, epoch = start["seq"], start["epoch"]
    catalog.change()
    catalog.change()
    # What the journal's trim + DynamoDB TTL do to an old event: it is gone.
    stack.dynamodb_client().delete_item(
        TableName=TableNames().events, Key={"epoch": {"S": epoch}, "seq": {"N": str(since + 1)}})
    assert feed(stack, f"?since={since}&epoch={epoch}")["resync_required"] is True
    kept = feed(stack, f"?since={since + 1}&epoch={epoch}")
    assert [e["seq"] for e in kept["events"]] == [since + 2] and kept["resync_required"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/changes?since=1", "/api/v1/changes?since=-1&epoch=e", "/api/v1/changes?limit=0",
        "/api/v1/changes?limit=501", "/api/v1/changes?limit=ten", "/api/v1/changes?sinse=1",
        "/api/v1/models?capability=telepathy", "/api/v1/models?min_context=-1", "/api/v1/models?status=gone",
        "/api/v1/models?limit=0", "/api/v1/models?limit=5001", "/api/v1/models?cursor=not-ours",
        "/api/v1/models?provider_id=nobody", "/api/v1/models?limit=1&limit=2", "/api/v1/models?capabilty=tools",
    ],
)
def test_bad_parameters_answer_400_invalid_parameter(stack, catalog, path) -> None:
    response = stack.get(path)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_parameter"


# --- Atom -------------------------------------------------------------------------------------------------


def test_atom_read_by_feedparser(stack, catalog) -> None:
    catalog.change(name="Fresh <Model>")
    url = stack.http_url + "/api/v1/changes.atom"
    parsed = feedparser.parse(url, request_headers=stack.auth_headers())
    assert parsed.status == 200 and parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.headers["content-type"].startswith("application/atom+xml")
    newest = feed(stack, "?limit=50")["events"][::-1]
    assert [entry.id for entry in parsed.entries] == [
        f"urn:model-catalog:{event['epoch']}:{event['seq']}" for event in newest]
    assert [entry.updated for entry in parsed.entries] == [event["timestamp"] for event in newest]
    assert parsed.feed.links[0].href == url
    first = parsed.entries[0]
    added = newest[0]["payload"]["changed"][0]["added"]
    assert first.title == f"{PROVIDER_NAME}: 1 added"
    assert f"<code>{added[0]}</code>" in first.content[0].value
    # A feed reader's revalidation: feedparser sends the ETag back and gets 304 until the next change.
    again = feedparser.parse(url, request_headers=stack.auth_headers(), etag=parsed.etag)
    assert again.status == 304 and again.entries == []
    catalog.change()
    changed = feedparser.parse(url, request_headers=stack.auth_headers(), etag=parsed.etag)
    assert changed.status == 200 and changed.entries[0].id != first.id


def test_atom_escapes_user_data(stack, catalog) -> None:
    context = catalog.registry.models[HOSTILE_KEY]["limit"]["context"] + 1  # an update; the name stays
    catalog.registry.put(HOSTILE_KEY, name="<script>alert(1)</script>", context=context, vision=True)
    catalog.stack.set_registry(catalog.registry.document())
    result = catalog.refresh()
    assert result["changed"][0]["updated"] == [f"acme/{HOSTILE_KEY}"]
    response = stack.get("/api/v1/changes.atom")
    assert response.status_code == 200
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0
    entry = parsed.entries[0]
    assert entry.title == f"{PROVIDER_NAME}: 1 updated"
    assert "<code>acme/&lt;b&gt;&amp;&quot;x&quot;</code>" in entry.content[0].value
    assert "<b>" not in entry.content[0].value


# --- conditional GET --------------------------------------------------------------------------------------


def test_304_on_an_unchanged_catalog_and_a_new_etag_after_a_change(stack, catalog) -> None:
    models = stack.get("/api/v1/models")
    etag, revision = models.headers["ETag"], models.headers["X-Catalog-Revision"]
    assert models.status_code == 200 and int(revision) == models.json()["revision"]
    unchanged = catalog.refresh()
    assert unchanged["changed"] == []
    cached = stack.get("/api/v1/models", headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["ETag"] == etag and cached.headers["X-Catalog-Revision"] == revision
    catalog.change()
    fresh = stack.get("/api/v1/models", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["ETag"] != etag
    assert int(fresh.headers["X-Catalog-Revision"]) == int(revision) + 1


def test_a_status_only_change_gives_providers_a_new_etag(stack, catalog) -> None:
    providers = stack.get("/api/v1/providers")
    models = stack.get("/api/v1/models")
    etag = providers.headers["ETag"]
    assert stack.get("/api/v1/providers", headers={"If-None-Match": etag}).status_code == 304
    stack.fail_registry(503)  # the provider starts failing: its status changes, the catalog does not
    try:
        result = catalog.refresh()
    finally:
        stack.fail_registry(0)
    assert result["changed"] == [] and result["failed"][0]["provider_id"] == "demo"
    failing = stack.get("/api/v1/providers", headers={"If-None-Match": etag})
    assert failing.status_code == 200 and failing.headers["ETag"] != etag
    assert failing.headers["X-Catalog-Revision"] == providers.headers["X-Catalog-Revision"]
    assert failing.json()["providers"][0]["last_error"]
    assert stack.get("/api/v1/models", headers={"If-None-Match": models.headers["ETag"]}).status_code == 304
    catalog.refresh()  # succeeds again: the status changes back, so does the ETag
    recovered = stack.get("/api/v1/providers", headers={"If-None-Match": failing.headers["ETag"]})
    assert recovered.status_code == 200 and recovered.json()["providers"][0]["last_error"] is None


# --- filters and paging -----------------------------------------------------------------------------------


def expected(models: list[dict[str, Any]], *, capabilities: tuple[str, ...] = (), min_context: int | None = None,
             q: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """The filters of §8 written out once more, over the unpaged list."""
    def keep(model: dict[str, Any]) -> bool:
        if not set(capabilities) <= set(model["capabilities"]):
            return False
        if min_context is not None and (model["context_length"] is None or model["context_length"] < min_context):
            return False
        if q is not None and q.casefold() not in model["id"].casefold() \
                and q.casefold() not in (model["display_name"] or "").casefold():
            return False
        return status is None or (model.get("status") or "active") == status

    return [model for model in models if keep(model)]


@pytest.mark.parametrize(
    ("query", "filters", "must_include"),
    [
        ("?capability=tools", {"capabilities": ("tools",)}, ["acme/alpha", "acme/beta", "acme/gamma"]),
        ("?capability=tools&capability=vision", {"capabilities": ("tools", "vision")}, ["acme/alpha"]),
        ("?capability=reasoning", {"capabilities": ("reasoning",)}, ["acme/beta"]),
        ("?min_context=32000", {"min_context": 32_000}, ["acme/alpha", "acme/beta"]),
        ("?min_context=200001", {"min_context": 200_001}, []),
        ("?q=VISION", {"q": "VISION"}, ["acme/alpha"]),
        ("?q=script", {"q": "script"}, [f"acme/{HOSTILE_KEY}"]),
        ("?q=%3Cb%3E", {"q": "<b>"}, [f"acme/{HOSTILE_KEY}"]),
        ("?status=active", {"status": "active"}, ["acme/alpha", "acme/beta"]),
        ("?status=deprecated", {"status": "deprecated"}, []),
        ("?capability=tools&min_context=1&q=a&status=active", {"capabilities": ("tools",), "min_context": 1, "q": "a",
                                                               "status": "active"}, ["acme/alpha", "acme/beta"]),
    ],
)
def test_every_filter(stack, catalog, query, filters, must_include) -> None:
    everything = catalog.models()
    listed = catalog.models(query)
    assert listed == expected(everything, **filters)
    assert set(must_include) <= {model["id"] for model in listed}
    assert catalog.models(f"?provider_id=demo{query.replace('?', '&')}") == listed


def test_provider_id_and_every_capability_name(stack, catalog) -> None:
    everything = catalog.models()
    assert catalog.models("?provider_id=demo") == everything
    for capability in CAPABILITIES:
        assert catalog.models(f"?capability={capability}") == expected(everything, capabilities=(capability,))


@pytest.mark.parametrize(("query", "limit"), [("", 97), ("&capability=vision", 1), ("&q=A", 2),
                                              ("&min_context=8192&capability=tools", 1)])
def test_a_paged_walk_equals_the_unpaged_list(stack, catalog, query, limit) -> None:
    unpaged = catalog.models("?" + query.lstrip("&"))
    walked, cursor = [], None
    for _ in range(len(unpaged) + 1):
        response = stack.get(f"/api/v1/models?limit={limit}{query}", params={"cursor": cursor} if cursor else None)
        assert response.status_code == 200, response.text
        page = response.json()
        walked += page["models"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["models"]) == limit
    assert walked == unpaged and unpaged


# --- the CLI ----------------------------------------------------------------------------------------------


def run_cli(stack: LocalStack, *argv: str) -> subprocess.CompletedProcess[str]:
    env = isolated_env({cli.URL_ENV: stack.http_url, cli.TOKEN_ENV: stack.token})
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_changes_and_model_filters(stack, catalog) -> None:
    start = feed(stack, "?limit=1")
    result = catalog.change(tools=True, vision=True, context=500_000)
    pulled = run_cli(stack, "changes", "--since", str(start["seq"]), "--epoch", start["epoch"], "--json")
    assert pulled.returncode == cli.EXIT_OK, pulled.stderr
    body = json.loads(pulled.stdout)
    assert [event["payload"] for event in body["events"]] == [result]
    assert (body["seq"], body["has_more"], body["resync_required"]) == (start["seq"] + 1, False, False)

    human = run_cli(stack, "changes", "--since", str(start["seq"]))
    assert human.returncode == cli.EXIT_OK, human.stderr
    (added,) = result["changed"][0]["added"]
    assert f"    + {added}" in human.stdout
    assert f"next: changes --since {start['seq'] + 1} --epoch {start['epoch']}" in human.stdout

    models = run_cli(stack, "models", "--capability", "tools", "--capability", "vision", "--min-context", "300000",
                     "--json")
    assert models.returncode == cli.EXIT_OK, models.stderr
    assert [m["id"] for m in json.loads(models.stdout)["models"]] == [added]
    bad = run_cli(stack, "models", "--capability", "telepathy")
    assert bad.returncode == cli.EXIT_USAGE and "telepathy" in bad.stderr
