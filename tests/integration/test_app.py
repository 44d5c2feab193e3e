"""The REST edge through chalice.test.Client: auth, error envelope, routes, status codes (docs/reference.md §2)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib.settings import TableNames, settings_from_env
from devstack.tables import create_tables
from tests.conftest import REPO, wired
from tests.fakes.provider_server import FakeProviderServer, fixture_json

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def registry():
    with FakeProviderServer() as server:
        server.route("GET", "/api.json", json=fixture_json("models_dev_api.json"))
        yield server


@pytest.fixture
def client(registry, tmp_path, monkeypatch):
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

            [[providers]]
            id = "openai"
            kind = "openai"
            api_key_env = "OPENAI_API_KEY"
            """
        )
    )
    monkeypatch.setenv("MODEL_CATALOG_CONFIG", str(config))
    monkeypatch.setenv("MODEL_CATALOG_API_TOKEN", TOKEN)
    monkeypatch.setenv("MODEL_CATALOG_ALLOW_PRIVATE_URLS", "1")
    monkeypatch.setenv("MODEL_CATALOG_LOCAL_KEY_FILE", str(tmp_path / "oauth.key"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(dynamodb, TableNames())
        import app

        # An empty project dir: the deploy stages' env vars (.chalice/config.json) must not leak into tests.
        with app.runtime.use(wired(settings_from_env(), dynamodb)) as container, \
                Client(app.app, project_dir=str(tmp_path)) as test_client:
            test_client.http.container = container
            yield test_client.http


def error_of(response) -> dict:
    body = json.loads(response.body)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


def test_health_is_open(client) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200 and json.loads(response.body) == {"status": "ok"}


@pytest.mark.parametrize(
    "path", ["/api/v1/providers", "/api/v1/models", "/api/v1/refresh/status", "/api/v1/client-config"]
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_every_other_route_needs_the_token(client, path, headers) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


def test_post_routes_need_the_token(client) -> None:
    assert client.post("/api/v1/providers:refresh").status_code == 401
    assert client.post("/api/v1/providers/demo/refresh").status_code == 401


def test_empty_catalog_reads(client) -> None:
    providers = json.loads(client.get("/api/v1/providers", headers=AUTH).body)["providers"]
    assert [p["id"] for p in providers] == ["demo", "openai"]
    assert providers[0] == {"id": "demo", "name": "Demo registry", "kind": "registry", "refreshable": True,
                            "model_count": 0, "last_refreshed_at": None, "last_error": None}
    assert json.loads(client.get("/api/v1/models", headers=AUTH).body) == {"revision": 0, "models": []}
    status = json.loads(client.get("/api/v1/refresh/status", headers=AUTH).body)
    assert status["refresh_interval_ms"] == 21_600_000 and status["refresh_on_start"] is True
    assert status["last_run"] is None and status["next_due_at"] is not None


def test_refresh_all_reports_changes_and_a_missing_key(client) -> None:
    response = client.post("/api/v1/providers:refresh", headers=AUTH)
    assert response.status_code == 200
    result = json.loads(response.body)
    assert result["revision"] == 1
    assert [c["provider_id"] for c in result["changed"]] == ["demo"]
    assert "anthropic/claude-opus-4-6" in result["changed"][0]["added"]
    assert result["failed"] == [{"provider_id": "openai", "reason": "OPENAI_API_KEY is not set"}]
    models = json.loads(client.get("/api/v1/models?provider_id=demo", headers=AUTH).body)
    assert models["revision"] == 1 and len(models["models"]) == len(result["changed"][0]["added"])
    model = models["models"][0]
    assert set(model) == {"provider_id", "id", "display_name", "context_length", "max_output_tokens",
                          "capabilities", "pricing", "status", "retires_at", "modalities"}
    again = json.loads(client.post("/api/v1/providers:refresh", headers=AUTH).body)
    assert again["changed"] == [] and again["unchanged"] == ["demo"]
    status = json.loads(client.get("/api/v1/refresh/status", headers=AUTH).body)
    assert status["last_run"] == again


@pytest.mark.parametrize(
    "path", ["/api/v1/providers/demo:refresh", "/api/v1/providers/demo%3Arefresh", "/api/v1/providers/demo/refresh"]
)
def test_one_provider_routes(client, path) -> None:
    response = client.post(path, headers=AUTH)
    assert response.status_code == 200, response.body
    result = json.loads(response.body)
    assert [c["provider_id"] for c in result["changed"]] == ["demo"] and result["failed"] == []


def test_oauth_scope_with_no_oauth_providers_is_empty(client) -> None:
    result = json.loads(client.post("/api/v1/providers:refresh_oauth", headers=AUTH).body)
    assert result == {"revision": 0, "changed": [], "unchanged": [], "failed": []}


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/providers/nope:refresh", 404, "provider_not_found"),
        ("/api/v1/providers/nope/refresh", 404, "provider_not_found"),
        ("/api/v1/providers:explode", 400, "unknown_action"),
        ("/api/v1/providers%3Aexplode", 400, "unknown_action"),
        ("/api/v1/providers/demo:explode", 400, "unknown_action"),
        ("/api/v1/providers/demo", 400, "unknown_action"),
        ("/api/v1/gadgets:refresh", 404, "not_found"),
    ],
)
def test_error_routes(client, path, status, code) -> None:
    response = client.post(path, headers=AUTH)
    assert response.status_code == status
    assert error_of(response)["code"] == code


def test_models_filter_and_pagination_errors(client) -> None:
    # docs/reference.md §8: an unknown or bad value of any parameter, provider_id included, is 400 invalid_parameter.
    assert error_of(client.get("/api/v1/models?provider_id=nope", headers=AUTH))["code"] == "invalid_parameter"
    assert error_of(client.get("/api/v1/models?limit=zero", headers=AUTH))["code"] == "invalid_parameter"
    assert error_of(client.get("/api/v1/models?limit=5&cursor=%25%25", headers=AUTH))["code"] == "invalid_parameter"


def test_a_refresh_that_finds_one_running_waits_then_gets_409(client) -> None:
    lease = client.container.lock.try_acquire("someone-else", lease_ms=20_000)
    response = client.post("/api/v1/providers:refresh", headers=AUTH)
    assert response.status_code == 409
    assert error_of(response)["code"] == "refresh_in_progress"
    assert 1 <= int(response.headers["Retry-After"]) <= 21
    client.container.lock.release(lease)
    assert client.post("/api/v1/providers:refresh", headers=AUTH).status_code == 200


def test_import_app_creates_no_client_and_touches_no_network() -> None:
    probe = textwrap.dedent(
        """
        import socket, botocore.session, boto3
        def refuse(*a, **k): raise AssertionError("network or AWS client at import time")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        botocore.session.Session.create_client = refuse
        boto3.client = refuse
        import app
        assert app.app.app_name == "model-catalog"
        print("clean import")
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "clean import" in result.stdout


def test_a_config_error_shows_no_config_details_to_callers(tmp_path, monkeypatch, logs) -> None:
    """The token cannot even be checked without a config: whoever asks gets a generic 500, the log the details."""
    import app
    from chalicelib.errors import ConfigError

    config = tmp_path / "secret-dir" / "catalog.toml"
    config.parent.mkdir()
    config.write_text('[[providers]]\nid = "x"\nkind = "openai"\nbase_url = "${INTERNAL_LLM_URL}/v1"\n')
    environ = {"MODEL_CATALOG_CONFIG": str(config), "MODEL_CATALOG_API_TOKEN": TOKEN}
    with pytest.raises(ConfigError) as broken:  # what the service would say: path, key, variable
        settings_from_env(environ)
    assert "secret-dir" in str(broken.value) and "INTERNAL_LLM_URL" in str(broken.value)

    monkeypatch.setattr(app.runtime, "_container", None)
    monkeypatch.setattr(app.runtime, "_build", lambda: wired(settings_from_env(environ), None))
    with Client(app.app, project_dir=str(tmp_path)) as test_client:
        for headers in ({}, AUTH):
            response = test_client.http.get("/api/v1/providers", headers=headers)
            assert response.status_code == 500
            error = error_of(response)
            assert error["code"] == "config_error"
            assert "secret-dir" not in response.body.decode() and "INTERNAL_LLM_URL" not in response.body.decode()
            assert error["message"].startswith("the service configuration cannot be used; the details are in the")
    logged = [json.loads(line) for line in logs if '"config error"' in line]
    assert logged and all("INTERNAL_LLM_URL" in line["error"] for line in logged)
    assert f"(reference {logged[-1]['reference']})" in error["message"]  # the log line an operator looks up
