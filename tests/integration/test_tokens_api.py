"""Scoped tokens and the exports through the REST edge (chalice.test.Client on moto; docs/reference.md §7, §11).

The scope table is generated from app.py's routes and the scope each declares (``rest.ROUTE_SCOPES``): each route is called with no
token, an unknown one, and a token of each scope, and must answer 401 / 403 ``insufficient_scope`` / its own answer
exactly as its declared scope says. A route missing from ``ALLOWED`` fails the test, so no new route is forgotten.
"""

from __future__ import annotations

import json
import re
import textwrap

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

import app as app_module
from chalicelib.auth import scope_allows
from chalicelib.entrypoints import rest
from chalicelib.settings import TableNames, settings_from_env
from devstack.tables import create_tables
from tests.conftest import wired
from tests.fakes.provider_server import FakeProviderServer, fixture_json

ADMIN = "env-admin-token-0123456789"
CALLERS = ("none", "unknown", "read", "refresh", "admin", "env-admin")
UNKNOWN = "mct_0123456789abcdef_" + "A" * 43
# What a caller allowed on the route gets (the route's own answer, with the fixture's catalog): a route missing here
# fails test_every_declared_route_is_in_the_table.
ALLOWED: dict[tuple[str, str], int] = {
    ("GET", "/"): 200,
    ("GET", "/assets/{name}"): 200,
    ("GET", "/api/v1/health"): 200,
    ("GET", "/api/v1/openapi.json"): 200,
    ("GET", "/api/v1/client-config"): 200,
    ("GET", "/api/v1/providers"): 200,
    ("GET", "/api/v1/models"): 200,
    ("GET", "/api/v1/refresh/status"): 200,
    ("POST", "/api/v1/providers:refresh"): 200,
    ("POST", "/api/v1/providers:refresh_oauth"): 200,
    ("POST", "/api/v1/{resource}"): 200,
    ("POST", "/api/v1/providers/{provider_id}"): 200,
    ("POST", "/api/v1/providers/{provider_id}/refresh"): 200,
    ("GET", "/api/v1/whoami"): 200,
    ("POST", "/api/v1/tokens"): 400,  # the table sends no body: invalid_request, past the scope check
    ("GET", "/api/v1/tokens"): 200,
    ("DELETE", "/api/v1/tokens/{token_id}"): 404,  # an id no token has
    ("GET", "/api/v1/export/models.dev/api.json"): 200,
    ("GET", "/api/v1/export/models.dev"): 200,
    ("GET", "/api/v1/export/litellm.json"): 200,
    ("GET", "/api/v1/export/openai/models"): 200,
    ("GET", "/api/v1/feeds/{token}/models.dev/api.json"): 200,
    ("GET", "/api/v1/feeds/{token}/models.dev"): 200,
    ("GET", "/api/v1/feeds/{token}/litellm.json"): 200,
    ("GET", "/api/v1/feeds/{token}/openai/models"): 200,
    ("GET", "/api/v1/changes"): 200,
    ("GET", "/api/v1/changes.atom"): 200,
    ("GET", "/api/v1/export/changes.atom"): 200,
    ("GET", "/api/v1/feeds/{token}/changes.atom"): 200,
    ("POST", "/api/v1/webhooks"): 400,  # no body: invalid_request, past the scope check
    ("GET", "/api/v1/webhooks"): 200,
    ("GET", "/api/v1/webhooks/{webhook_id}"): 404,  # an id no webhook has
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): 404,
    ("GET", "/api/v1/webhooks/{webhook_id}/attempts"): 404,
    ("POST", "/api/v1/webhooks/{webhook_id}/replay"): 400,  # no body: checked before the id
}
# Every route of app.py (rest.ROUTE_SCOPES may also hold routes other tests declared on apps of their own).
APP_ROUTES = sorted((method, path) for path, methods in app_module.app.routes.items() for method in methods)
PATH_VALUES = {"name": "app.js", "provider_id": "demo", "resource": "providers:refresh", "token_id": "0" * 16,
               "webhook_id": "wh_" + "0" * 20}
ROUTE_PATH_VALUES = {("POST", "/api/v1/providers/{provider_id}"): {"provider_id": "demo:refresh"}}


@pytest.fixture
def registry():
    with FakeProviderServer() as server:
        server.route("GET", "/api.json", json=fixture_json("models_dev_api.json"))
        yield server


@pytest.fixture
def api(registry, tmp_path, monkeypatch, clock):
    config = tmp_path / "catalog.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [model_catalog]
            lock_wait_ms = 300

            [[providers]]
            id = "demo"
            name = "Demo registry"
            kind = "registry"
            url = "{registry.url}/api.json"
            """
        )
    )
    monkeypatch.setenv("MODEL_CATALOG_CONFIG", str(config))
    monkeypatch.setenv("MODEL_CATALOG_API_TOKEN", ADMIN)
    monkeypatch.setenv("MODEL_CATALOG_ALLOW_PRIVATE_URLS", "1")
    monkeypatch.setenv("MODEL_CATALOG_LOCAL_KEY_FILE", str(tmp_path / "oauth.key"))
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(dynamodb, TableNames())
        container = wired(settings_from_env(), dynamodb, clock=clock)
        with app_module.runtime.use(container), Client(app_module.app, project_dir=str(tmp_path)) as client:
            client.http.container = container
            client.http.dynamodb = dynamodb
            yield client.http


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def create(api, name: str, scope: str, token: str = ADMIN):
    return api.post("/api/v1/tokens", headers={**bearer(token), "Content-Type": "application/json"},
                    body=json.dumps({"name": name, "scope": scope}))


def issue(api, scope: str) -> str:
    response = create(api, f"{scope} token", scope)
    assert response.status_code == 201, response.body
    return json.loads(response.body)["token"]


def error_code(response) -> str:
    return json.loads(response.body)["error"]["code"]


@pytest.fixture
def tokens(api) -> dict[str, str | None]:
    return {"none": None, "unknown": UNKNOWN, "env-admin": ADMIN,
            **{scope: issue(api, scope) for scope in ("read", "refresh", "admin")}}


def caller_scope(caller: str) -> str | None:
    return {"read": "read", "refresh": "refresh", "admin": "admin", "env-admin": "admin"}.get(caller)


# -- the scope table ---------------------------------------------------------------------------------------------
def test_every_declared_route_is_in_the_table() -> None:
    assert set(APP_ROUTES) <= set(rest.ROUTE_SCOPES), "every route declares its scope"
    assert set(APP_ROUTES) == set(ALLOWED), "add the new route to ALLOWED (with the status it answers)"


def observed(api, tokens, route) -> dict[str, tuple[int, str]]:
    """What each caller gets from ``route``: (status, error code of a 401/403)."""
    method, template = route
    token_param = rest.PATH_TOKEN_ROUTES.get(route)
    outcomes = {}
    for caller in CALLERS:
        presented = tokens[caller]
        values = {**PATH_VALUES, **ROUTE_PATH_VALUES.get(route, {}),
                  **({token_param: presented or "-"} if token_param else {})}
        path = template.format(**values)
        response = api.request(method, path, headers={} if token_param else bearer(presented), body=b"")
        outcomes[caller] = (response.status_code, error_code(response) if response.status_code in (401, 403) else "")
    return outcomes


def expected(route) -> dict[str, tuple[int, str]]:
    """What each caller must get, from the route's declared scope alone."""
    needed = rest.ROUTE_SCOPES[route]
    in_url = route in rest.PATH_TOKEN_ROUTES
    answers = {}
    for caller in CALLERS:
        scope = caller_scope(caller)
        if needed is None:
            answers[caller] = (ALLOWED[route], "")
        elif scope is None:
            answers[caller] = (401, "unauthorized")
        elif in_url and scope != "read":
            answers[caller] = (403, "token_not_allowed_in_url")
        elif not scope_allows(scope, needed):
            answers[caller] = (403, "insufficient_scope")
        else:
            answers[caller] = (ALLOWED[route], "")
    return answers


@pytest.mark.parametrize("route", APP_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
def test_route_by_scope(api, tokens, route) -> None:
    assert observed(api, tokens, route) == expected(route)


def test_negative_control_a_middleware_that_ignores_scopes_fails_the_table(api, tokens, monkeypatch) -> None:
    route = ("GET", "/api/v1/tokens")
    want = expected(route)
    monkeypatch.setattr(rest, "scope_allows", lambda held, needed: True)
    got = observed(api, tokens, route)
    assert got != want and got["read"] == (200, "") and want["read"] == (403, "insufficient_scope")


# -- §7 routes ---------------------------------------------------------------------------------------------------
def test_create_list_revoke(api, clock) -> None:
    created = create(api, "cron job", "refresh")
    assert created.status_code == 201
    body = json.loads(created.body)
    assert set(body) == {"id", "name", "scope", "token", "created_at"}
    assert body["name"] == "cron job" and body["scope"] == "refresh"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["created_at"])
    listed = json.loads(api.get("/api/v1/tokens", headers=bearer(ADMIN)).body)["tokens"]
    assert listed == [{"id": body["id"], "name": "cron job", "scope": "refresh", "created_at": body["created_at"],
                       "last_used_at": None}]
    assert body["token"] not in json.dumps(listed)
    whoami = api.get("/api/v1/whoami", headers=bearer(body["token"]))
    assert json.loads(whoami.body) == {"scope": "refresh", "token_id": body["id"], "name": "cron job"}
    assert api.delete(f"/api/v1/tokens/{body['id']}", headers=bearer(ADMIN)).status_code == 204
    assert api.get("/api/v1/whoami", headers=bearer(body["token"])).status_code == 401
    assert json.loads(api.get("/api/v1/tokens", headers=bearer(ADMIN)).body) == {"tokens": []}
    again = api.delete(f"/api/v1/tokens/{body['id']}", headers=bearer(ADMIN))
    assert again.status_code == 404 and error_code(again) == "token_not_found"


def test_whoami_of_the_configured_admin_token(api) -> None:
    body = json.loads(api.get("/api/v1/whoami", headers=bearer(ADMIN)).body)
    assert body == {"scope": "admin", "token_id": None, "name": "MODEL_CATALOG_API_TOKEN"}


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'"read"', b'{"name": "x"}', b'{"scope": "read"}', b'{"name": "", "scope": "read"}',
     b'{"name": "  ", "scope": "read"}', b'{"name": 5, "scope": "read"}', b'{"name": "x", "scope": "owner"}',
     b'{"name": "x", "scope": "READ"}', b'{"name": "x", "scope": "read", "expires": 1}',
     b'{"name": "a\\nb", "scope": "read"}', json.dumps({"name": "x" * 129, "scope": "read"}).encode()],
)
def test_a_bad_body_is_invalid_request(api, body) -> None:
    response = api.post("/api/v1/tokens", headers={**bearer(ADMIN), "Content-Type": "application/json"}, body=body)
    assert response.status_code == 400 and error_code(response) == "invalid_request", response.body
    assert json.loads(api.get("/api/v1/tokens", headers=bearer(ADMIN)).body) == {"tokens": []}


def test_a_known_id_with_another_secret_is_refused(api, tokens) -> None:
    real = tokens["admin"]
    secret_at = len("mct_") + 16 + 1
    forged = real[:secret_at] + ("B" if real[secret_at] != "B" else "C") + real[secret_at + 1 :]
    assert api.get("/api/v1/whoami", headers=bearer(real)).status_code == 200
    assert api.get("/api/v1/whoami", headers=bearer(forged)).status_code == 401


def test_last_used_at_is_written_at_most_once_a_minute(api, clock, monkeypatch) -> None:
    token = issue(api, "read")
    writes: list[str] = []
    store = api.container.tokens._store
    original = store.touch
    monkeypatch.setattr(store, "touch", lambda *a, **k: writes.append(a[1]) or original(*a, **k))
    for _ in range(5):
        assert api.get("/api/v1/whoami", headers=bearer(token)).status_code == 200
    assert len(writes) == 1
    listed = json.loads(api.get("/api/v1/tokens", headers=bearer(ADMIN)).body)["tokens"]
    assert listed[0]["last_used_at"] == writes[0]
    clock.now += 59
    api.get("/api/v1/whoami", headers=bearer(token))
    assert len(writes) == 1
    clock.now += 2
    api.get("/api/v1/whoami", headers=bearer(token))
    assert len(writes) == 2
    listed = json.loads(api.get("/api/v1/tokens", headers=bearer(ADMIN)).body)["tokens"]
    assert listed[0]["last_used_at"] == writes[1] != writes[0]


def test_a_late_touch_does_not_bring_a_revoked_token_back(api) -> None:
    token = issue(api, "read")
    token_id = token.split("_")[1]
    assert api.delete(f"/api/v1/tokens/{token_id}", headers=bearer(ADMIN)).status_code == 204
    store = api.container.tokens._store
    assert store.touch(token_id, "2026-01-01T00:00:00Z", 1.0, 0.0) is False
    assert store.get(token_id) is None


def test_the_table_holds_digests_never_tokens(api, tokens) -> None:
    items = api.dynamodb.scan(TableName=TableNames().catalog)["Items"]
    dumped = repr(items)
    for scope in ("read", "refresh", "admin"):
        secret = tokens[scope][len("mct_") + 17 :]
        assert len(secret) == 43 and secret not in dumped
    stored = [item for item in items if item["pk"]["S"] == "APITOKEN"]
    assert len(stored) == 3 and all(set(item) >= {"salt", "digest"} for item in stored)


# -- tokens in URLs (§11) ----------------------------------------------------------------------------------------
def test_a_feed_takes_only_a_read_token(api, tokens) -> None:
    api.post("/api/v1/providers:refresh", headers=bearer(ADMIN))
    ok = api.get(f"/api/v1/feeds/{tokens['read']}/openai/models")
    assert ok.status_code == 200 and json.loads(ok.body)["data"]
    for powerful in ("refresh", "admin", "env-admin"):
        refused = api.get(f"/api/v1/feeds/{tokens[powerful]}/openai/models")
        assert refused.status_code == 403 and error_code(refused) == "token_not_allowed_in_url"
        assert tokens[powerful] not in refused.body.decode()
    assert api.get(f"/api/v1/feeds/{UNKNOWN}/openai/models").status_code == 401
    # A bearer header does not stand in for the path's token.
    assert api.get(f"/api/v1/feeds/{UNKNOWN}/openai/models", headers=bearer(ADMIN)).status_code == 401


# -- exports: ETag, 304, Cache-Control (§11) ---------------------------------------------------------------------
EXPORT_PATHS = ("models.dev/api.json", "models.dev", "litellm.json", "openai/models")


@pytest.mark.parametrize("path", EXPORT_PATHS)
def test_an_export_revalidates_with_its_etag(api, registry, path, monkeypatch) -> None:
    assert api.post("/api/v1/providers:refresh", headers=bearer(ADMIN)).status_code == 200
    first = api.get(f"/api/v1/export/{path}", headers=bearer(ADMIN))
    assert first.status_code == 200 and first.headers["Content-Type"] == "application/json"
    etag = first.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert first.headers["Cache-Control"] == "private, max-age=60"
    revision = first.headers["X-Catalog-Revision"]
    assert revision == str(json.loads(api.get("/api/v1/models", headers=bearer(ADMIN)).body)["revision"])

    # A 304 is decided from the manifest alone: not one model chunk is read.
    store = api.container.catalog
    monkeypatch.setattr(store, "read_provider_models", lambda *a: pytest.fail("read a model chunk for a 304"))
    again = api.get(f"/api/v1/export/{path}", headers={**bearer(ADMIN), "If-None-Match": etag})
    assert again.status_code == 304 and again.body == b"" and again.headers["ETag"] == etag
    monkeypatch.undo()

    # The registry changes a model: a new ETag, and the old one gets the new body.
    document = fixture_json("models_dev_api.json")
    provider = next(iter(document.values()))
    model = next(iter(provider["models"].values()))
    model["limit"]["context"] = 123_457
    registry.route("GET", "/api.json", json=document)
    assert api.post("/api/v1/providers:refresh", headers=bearer(ADMIN)).status_code == 200
    changed = api.get(f"/api/v1/export/{path}", headers={**bearer(ADMIN), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert int(changed.headers["X-Catalog-Revision"]) == int(revision) + 1
    if path != "openai/models":  # the OpenAI list has no limits
        assert "123457" in changed.body.decode()


def test_the_etag_follows_the_providers_config_too(api, registry) -> None:
    api.post("/api/v1/providers:refresh", headers=bearer(ADMIN))
    manifest, version = api.container.service.catalog_version()
    from chalicelib.catalog_config import ProviderConfig
    from chalicelib.core.version import catalog_version

    config = api.container.settings.config
    renamed = ProviderConfig(id="demo", name="Renamed", kind="registry", url=registry.url + "/api.json")
    other = config.model_copy(update={"providers": (renamed, *config.providers[1:])})
    code = api.container.settings.deployment_id
    assert catalog_version(manifest, other, code=code) != version
    assert catalog_version(manifest, config, code=code) == version


def test_every_catalog_model_is_in_every_export(api) -> None:
    api.post("/api/v1/providers:refresh", headers=bearer(ADMIN))
    models = json.loads(api.get("/api/v1/models", headers=bearer(ADMIN)).body)["models"]
    ids = sorted(f"{m['provider_id']}/{m['id']}" for m in models)
    assert len(ids) > 5
    dev = json.loads(api.get("/api/v1/export/models.dev/api.json", headers=bearer(ADMIN)).body)
    assert sorted(f"{pid}/{mid}" for pid, p in dev.items() for mid in p["models"]) == ids
    assert sorted(json.loads(api.get("/api/v1/export/litellm.json", headers=bearer(ADMIN)).body)) == ids
    listed = json.loads(api.get("/api/v1/export/openai/models", headers=bearer(ADMIN)).body)["data"]
    assert [m["id"] for m in listed] == ids


def test_an_export_too_large_for_one_response_is_a_clear_error(api, monkeypatch) -> None:
    import chalicelib.service as service_module

    api.post("/api/v1/providers:refresh", headers=bearer(ADMIN))
    monkeypatch.setattr(service_module, "EXPORT_BUDGET_BYTES", 1000)
    response = api.get("/api/v1/export/litellm.json", headers=bearer(ADMIN))
    assert response.status_code == 500 and error_code(response) == "export_too_large"
    assert "6 MB" in json.loads(response.body)["error"]["message"]


# -- faults ------------------------------------------------------------------------------------------------------
def test_an_unreadable_token_store_is_503_not_401(api, tokens, monkeypatch) -> None:
    def unreachable(token_id):
        raise RuntimeError("DynamoDB is unreachable")

    monkeypatch.setattr(api.container.tokens._store, "get", unreachable)
    response = api.get("/api/v1/providers", headers=bearer(tokens["read"]))
    assert response.status_code == 503 and error_code(response) == "token_unavailable"
    assert api.get("/api/v1/providers", headers=bearer(ADMIN)).status_code == 200  # needs no store


def test_a_failed_last_used_write_does_not_fail_the_request(api, tokens, monkeypatch) -> None:
    def unwritable(*args, **kwargs):
        raise RuntimeError("throttled")

    monkeypatch.setattr(api.container.tokens._store, "touch", unwritable)
    assert api.get("/api/v1/whoami", headers=bearer(tokens["read"])).status_code == 200
