"""Reading without a socket (docs/reference.md §8) through ``chalice.test.Client`` on moto: conditional GET on
``/models`` and ``/providers``, the filters, ``/changes`` over the real journal, ``/changes.atom`` read by
feedparser. The same end to end through the local stack: tests/e2e/test_feeds_e2e.py."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import boto3
import feedparser
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib.settings import TableNames, settings_from_env
from devstack.tables import create_tables
from tests.conftest import wired
from tests.fakes.provider_server import FakeProviderServer
from tests.fakes.registry_documents import RegistryModels

TOKEN = "read-api-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Api:
    """The app through chalice's test client, with the registry it refreshes from."""

    def __init__(self, http: Any, server: FakeProviderServer, container: Any):
        self.http = http
        self.server = server
        self.container = container
        self.registry = RegistryModels()

    def get(self, path: str, **headers: str) -> Any:
        return self.http.get(path, headers={**AUTH, **headers})

    def json(self, path: str) -> Any:
        response = self.get(path)
        assert response.status_code == 200, response.body
        return json.loads(response.body)

    def serve(self) -> None:
        self.server.route("GET", "/api.json", json=self.registry.document())

    def refresh(self) -> dict[str, Any]:
        response = self.http.post("/api/v1/providers:refresh", headers=AUTH)
        assert response.status_code == 200, response.body
        return json.loads(response.body)

    def change(self, **models: dict[str, Any]) -> dict[str, Any]:
        for key, fields in models.items():
            self.registry.put(key, **fields)
        self.serve()
        result = self.refresh()
        assert result["changed"], result
        return result


@pytest.fixture
def api(tmp_path, monkeypatch):
    with FakeProviderServer() as server:
        config = tmp_path / "catalog.toml"
        config.write_text(textwrap.dedent(f"""
            [model_catalog]
            refresh_on_start = false
            lock_wait_ms = 300

            [[providers]]
            id = "demo"
            name = "Demo <&> Registry"
            kind = "registry"
            url = "{server.url}/api.json"
        """))
        monkeypatch.setenv("MODEL_CATALOG_CONFIG", str(config))
        monkeypatch.setenv("MODEL_CATALOG_API_TOKEN", TOKEN)
        monkeypatch.setenv("MODEL_CATALOG_ALLOW_PRIVATE_URLS", "1")
        monkeypatch.setenv("MODEL_CATALOG_LOCAL_KEY_FILE", str(tmp_path / "oauth.key"))
        with mock_aws():
            dynamodb = boto3.client("dynamodb", region_name="us-east-1")
            create_tables(dynamodb, TableNames())
            import app

            with app.runtime.use(wired(settings_from_env(), dynamodb)) as container, \
                    Client(app.app, project_dir=str(tmp_path)) as client:
                api = Api(client.http, server, container)
                api.change(alpha=dict(context=200_000, tools=True, vision=True),
                           beta=dict(context=32_000, reasoning=True, name="Beta Reasoner"),
                           gamma=dict(context=None, tools=True, status="deprecated"))
                yield api


def error_code(response: Any) -> str:
    body = json.loads(response.body)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]["code"]


# --- conditional GET --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/models", "/api/v1/models?capability=tools&limit=1", "/api/v1/providers"])
def test_an_unchanged_catalog_answers_304_without_a_body(api, path) -> None:
    first = api.get(path)
    etag = first.headers["ETag"]
    assert first.status_code == 200 and etag.startswith('"') and not etag.startswith("W/")
    assert first.headers["X-Catalog-Revision"] == str(json.loads(api.get("/api/v1/models").body)["revision"])
    again = api.get(path, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.body in (b"", "")
    assert again.headers["ETag"] == etag and again.headers["X-Catalog-Revision"] == first.headers["X-Catalog-Revision"]
    assert api.get(path, **{"If-None-Match": '"something-else"'}).status_code == 200
    assert api.get(path, **{"If-None-Match": f'"other", {etag}'}).status_code == 304


def test_a_change_gives_a_new_etag(api) -> None:
    before = api.get("/api/v1/models")
    providers_before = api.get("/api/v1/providers")
    api.change(delta=dict(context=1_000))
    after = api.get("/api/v1/models", **{"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"]
    assert int(after.headers["X-Catalog-Revision"]) == int(before.headers["X-Catalog-Revision"]) + 1
    assert "acme/delta" in [m["id"] for m in json.loads(after.body)["models"]]
    providers = api.get("/api/v1/providers", **{"If-None-Match": providers_before.headers["ETag"]})
    assert providers.status_code == 200 and providers.headers["ETag"] != providers_before.headers["ETag"]


def test_a_status_only_change_changes_providers_but_not_models(api) -> None:
    models = api.get("/api/v1/models")
    providers = api.get("/api/v1/providers")
    api.server.route("GET", "/api.json", status=503, json={"error": "down"})
    result = api.refresh()
    assert result["changed"] == [] and result["failed"][0]["provider_id"] == "demo"
    # The revision stays, the providers' body does not: a new ETag there, a 304 still for the models.
    now = api.get("/api/v1/providers", **{"If-None-Match": providers.headers["ETag"]})
    assert now.status_code == 200 and now.headers["ETag"] != providers.headers["ETag"]
    assert now.headers["X-Catalog-Revision"] == providers.headers["X-Catalog-Revision"]
    assert json.loads(now.body)["providers"][0]["last_error"]
    assert api.get("/api/v1/models", **{"If-None-Match": models.headers["ETag"]}).status_code == 304


def test_each_query_has_its_own_etag(api) -> None:
    etags = {api.get(path).headers["ETag"] for path in (
        "/api/v1/models", "/api/v1/models?limit=1", "/api/v1/models?limit=2", "/api/v1/models?capability=tools",
        "/api/v1/models?q=alpha", "/api/v1/models?status=active", "/api/v1/models?min_context=1",
        "/api/v1/models?provider_id=demo",
    )}
    assert len(etags) == 8
    # Equivalent spellings are one query: order of repeated values, empty values.
    assert api.get("/api/v1/models?capability=tools&capability=vision").headers["ETag"] == \
        api.get("/api/v1/models?capability=vision&capability=tools&q=").headers["ETag"]


def test_a_304_reads_no_model(api, monkeypatch) -> None:
    etag = api.get("/api/v1/models").headers["ETag"]

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a revalidation must not read the models")

    monkeypatch.setattr(api.container.catalog, "read_provider_models", refuse)
    assert api.get("/api/v1/models", **{"If-None-Match": etag}).status_code == 304
    assert api.get("/api/v1/models").status_code == 500  # the negative control: a full answer does read them


# --- filters ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["acme/alpha", "acme/beta", "acme/gamma"]),
        ("?capability=tools", ["acme/alpha", "acme/gamma"]),
        ("?capability=tools&capability=vision", ["acme/alpha"]),
        ("?min_context=32000", ["acme/alpha", "acme/beta"]),
        ("?min_context=32001", ["acme/alpha"]),
        ("?q=REASONER", ["acme/beta"]),
        ("?q=gam", ["acme/gamma"]),
        ("?provider_id=demo&limit=5", ["acme/alpha", "acme/beta", "acme/gamma"]),
    ],
)
def test_filters(api, query, expected) -> None:
    assert [m["id"] for m in api.json("/api/v1/models" + query)["models"]] == expected


def test_status_filter_partitions_the_catalog(api) -> None:
    # Whether the registry's "deprecated" reaches the model is the adapter's business; the filter must agree
    # with each model's own status (a model without one is active).
    everything = api.json("/api/v1/models")["models"]
    for status in ("active", "deprecated"):
        listed = api.json(f"/api/v1/models?status={status}")["models"]
        assert listed == [m for m in everything if (m.get("status") or "active") == status]


def test_a_paged_walk_equals_the_unpaged_list(api) -> None:
    for query in ("", "&capability=tools", "&q=a"):
        unpaged = api.json("/api/v1/models?" + query.lstrip("&"))["models"]
        walked, cursor = [], None
        for _ in range(10):
            page = api.json(f"/api/v1/models?limit=1{query}" + (f"&cursor={cursor}" if cursor else ""))
            walked += page["models"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert walked == unpaged


@pytest.mark.parametrize(
    "query",
    [
        "provider_id=nope", "capability=telepathy", "capability=tools,vision", "min_context=-1", "min_context=big",
        "status=retired", "limit=0", "limit=5001", "limit=1&limit=2", "cursor=nonsense", "q=" + "x" * 201,
        "capabilty=tools", "page=2",
    ],
)
def test_bad_model_parameters_answer_400_invalid_parameter(api, query) -> None:
    response = api.get("/api/v1/models?" + query)
    assert response.status_code == 400 and error_code(response) == "invalid_parameter"


def test_limit_up_to_5000(api) -> None:
    assert len(api.json("/api/v1/models?limit=5000")["models"]) == 3


# --- /changes ---------------------------------------------------------------------------------------------


def test_changes_are_the_journal_events(api) -> None:
    first = api.json("/api/v1/changes")
    assert first["resync_required"] is False and first["has_more"] is False
    (event,) = first["events"]
    assert (event["type"], event["seq"], event["epoch"]) == ("event.model_catalog.changed", 1, first["epoch"])
    assert event == api.container.journal.replay(first["epoch"], 0)[0]
    results = [api.change(**{f"m{index}": {}}) for index in range(3)]
    after = api.json(f"/api/v1/changes?since=1&epoch={first['epoch']}")
    assert [e["payload"] for e in after["events"]] == results and after["seq"] == 4
    paged = api.json(f"/api/v1/changes?since=1&epoch={first['epoch']}&limit=2")
    assert [e["seq"] for e in paged["events"]] == [2, 3] and paged["has_more"] is True
    wrong = api.json("/api/v1/changes?since=1&epoch=not-the-epoch")
    assert wrong == {"epoch": first["epoch"], "seq": 4, "events": [], "has_more": False, "resync_required": True}


@pytest.mark.parametrize(
    "query", ["since=1", "since=-1&epoch=e", "since=one&epoch=e", "limit=0", "limit=501", "limit=", "cursor=x",
              "epoch=a&epoch=b"],
)
def test_bad_changes_parameters_answer_400_invalid_parameter(api, query) -> None:
    response = api.get("/api/v1/changes?" + query)
    if query == "limit=":  # an empty value counts as absent
        assert response.status_code == 200
        return
    assert response.status_code == 400 and error_code(response) == "invalid_parameter"


# --- /changes.atom ----------------------------------------------------------------------------------------


def test_the_atom_feed(api) -> None:
    api.change(delta=dict(), epsilon=dict())
    response = api.get("/api/v1/changes.atom", Host="catalog.example:8443")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(response.body)
    assert parsed.bozo == 0 and parsed.version == "atom10"
    epoch = api.json("/api/v1/changes")["epoch"]
    assert [entry.id for entry in parsed.entries] == [f"urn:model-catalog:{epoch}:{seq}" for seq in (2, 1)]
    assert parsed.entries[0].title == "Demo <&> Registry: 2 added"
    assert parsed.feed.links[0].href == "http://catalog.example:8443/api/v1/changes.atom"
    # Its ETag is the journal's position: a 304 until the next event.
    etag = response.headers["ETag"]
    assert api.get("/api/v1/changes.atom", **{"If-None-Match": etag, "Host": "catalog.example:8443"}).status_code == 304
    api.change(zeta=dict())
    assert api.get("/api/v1/changes.atom", **{"If-None-Match": etag, "Host": "catalog.example:8443"}).status_code == 200


def test_journal_read_pages_in_both_directions(api) -> None:
    for index in range(4):
        api.change(**{f"n{index}": {}})
    journal = api.container.journal
    epoch = api.json("/api/v1/changes")["epoch"]
    assert [seq for seq, _ in journal.read(epoch, 2, 4)] == [2, 3, 4]
    assert [seq for seq, _ in journal.read(epoch, 1, 5, newest_first=True, page_size=2)] == [5, 4, 3, 2, 1]
    assert [m["seq"] for _, m in journal.read(epoch, 3, 3)] == [3]
    assert list(journal.read(epoch, 4, 3)) == [] and list(journal.read("other", 1, 5)) == []


# --- an unpaged answer too large for one response -------------------------------------------------------------


def test_an_unpaged_answer_too_large_for_one_response_asks_for_pages(api, monkeypatch) -> None:
    """Past the budget (5 MB; here made small) an unpaged GET /models answers 400 page_required, decided from the
    manifest's chunk sizes without reading a model; pages and a filtered answer that fits still work."""
    whole = api.get("/api/v1/models")
    size = len(whole.body)
    monkeypatch.setattr("chalicelib.service.UNPAGED_BUDGET_BYTES", size - 100)
    monkeypatch.setattr(api.container.catalog, "read_provider_models",
                        lambda *a: pytest.fail("a model was read to refuse an unpaged answer"))
    refused = api.get("/api/v1/models")
    assert refused.status_code == 400 and error_code(refused) == "page_required"
    message = json.loads(refused.body)["error"]["message"]
    assert "3 models" in message and "add limit (at most 5,000) and follow next_cursor" in message
    monkeypatch.undo()
    monkeypatch.setattr("chalicelib.service.UNPAGED_BUDGET_BYTES", size - 100)
    paged = api.json("/api/v1/models?limit=2")
    assert len(paged["models"]) == 2 and paged["next_cursor"]
    assert [m["id"] for m in api.json("/api/v1/models?capability=vision")["models"]] == ["acme/alpha"]
    monkeypatch.setattr("chalicelib.service.UNPAGED_BUDGET_BYTES", size + 100)
    assert api.get("/api/v1/models").status_code == 200  # the negative control: under the budget it answers


def test_the_size_estimate_from_the_manifest_is_close_to_the_answer(api) -> None:
    from chalicelib.service import unpaged_bytes

    body = api.get("/api/v1/models").body
    estimate = unpaged_bytes(api.container.catalog.read_manifest())
    assert abs(estimate - len(body)) < 0.05 * len(body) + 50, (estimate, len(body))
