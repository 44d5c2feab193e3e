"""The exports read by the real clients, against the running local stack (docs/reference.md §11), and tokens over
the real HTTP and WebSocket edges (§7): revocation, restart, nothing in plain text in the state directory.

- opencode (npm ``opencode-ai``, installed into tests/node_modules by ``make test``): ``opencode models --refresh``
  with ``OPENCODE_MODELS_URL=<base>/api/v1/feeds/<read token>/models.dev`` and an isolated HOME. Its only route
  out is loopback: HTTP(S)_PROXY point at a closed port, with NO_PROXY for 127.0.0.1.
- LiteLLM: ``register_model(<litellm.json>)``, then ``get_model_info`` and ``cost_per_token`` (in a subprocess, with
  ``LITELLM_LOCAL_MODEL_COST_MAP=True`` set before the import).
- The OpenAI SDK: ``OpenAI(base_url=<base>/api/v1/export/openai, api_key=<read token>).models.list()``.

The catalog comes from a fake provider server on 127.0.0.1 playing real wire formats (an OpenAI-compatible API, an
OpenRouter API with prices, a models.dev registry).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import REPO, unless_installed
from tests.fakes.provider_server import FakeProviderServer, fixture_json
from tests.stack import LocalStack, closed_port, isolated_env

pytestmark = pytest.mark.stack

ADMIN = "export-clients-admin-token-0123456789"
OPENCODE = REPO / "tests" / "node_modules" / ".bin" / "opencode"


@pytest.fixture(scope="module")
def providers():
    with FakeProviderServer() as server:
        server.route("GET", "/openai/v1/models", json=fixture_json("openai_models.json"))
        server.route("GET", "/openrouter/api/v1/models", json=fixture_json("openrouter_models.json"))
        server.route("GET", "/registry/api.json", json=fixture_json("models_dev_api.json"))
        yield server


@pytest.fixture(scope="module")
def stack(providers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export-clients")
    config = tmp / "catalog.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [model_catalog]
            refresh_on_start = false

            [[providers]]
            id = "acme-llm"
            name = "Acme LLM"
            kind = "openai"
            base_url = "{providers.url}/openai/v1"

            [[providers]]
            id = "openrouter"
            name = "OpenRouter"
            kind = "openrouter"
            base_url = "{providers.url}/openrouter/api/v1"
            api_key_env = "OPENROUTER_API_KEY"

            [[providers]]
            id = "models.dev"
            kind = "registry"
            url = "{providers.url}/registry/api.json"
            """
        )
    )
    with LocalStack(tmp, config=config, token=ADMIN, env={"OPENROUTER_API_KEY": "sk-or-test"}) as running:
        refreshed = running.post("/api/v1/providers:refresh")
        assert refreshed.status_code == 200 and not refreshed.json()["failed"], refreshed.text
        yield running


def issue(stack: LocalStack, scope: str, name: str | None = None) -> dict[str, Any]:
    response = stack.post("/api/v1/tokens", json={"name": name or f"{scope} token", "scope": scope})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def read_token(stack) -> str:
    return issue(stack, "read", "export clients")["token"]


@pytest.fixture(scope="module")
def catalog(stack) -> list[dict[str, Any]]:
    models = stack.get("/api/v1/models").json()["models"]
    assert len({m["provider_id"] for m in models}) == 3 and len(models) > 10
    return models


def ids(models: list[dict[str, Any]]) -> set[str]:
    return {f"{m['provider_id']}/{m['id']}" for m in models}


# -- opencode -------------------------------------------------------------------------------------------------
def run_opencode(home: Path, models_url: str, key_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_STATE_HOME": str(home / "state"),
        "OPENCODE_MODELS_URL": models_url,
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "HTTP_PROXY": dead_proxy,
        "HTTPS_PROXY": dead_proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        **key_env,
    }
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(OPENCODE), "models", "--refresh"], cwd=home, env=env, capture_output=True,
                          text=True, timeout=120)


def listed(result: subprocess.CompletedProcess[str]) -> set[str]:
    return {line.strip() for line in result.stdout.splitlines() if "/" in line and " " not in line.strip()}


@unless_installed(OPENCODE, "opencode (make test installs it with infra/ensure-test-clients.sh)")
def test_opencode_lists_every_catalog_model(stack, providers, read_token, catalog, tmp_path) -> None:
    document = stack.get("/api/v1/export/models.dev/api.json").json()
    # The variables opencode must see to show each provider: api_key_env where configured, else a stable name.
    assert {pid: p["env"] for pid, p in document.items()} == {
        "acme-llm": ["ACME_LLM_API_KEY"], "openrouter": ["OPENROUTER_API_KEY"], "models.dev": ["MODELS_DEV_API_KEY"]}
    assert document["acme-llm"]["npm"] == "@ai-sdk/openai-compatible"
    assert document["acme-llm"]["api"] == f"{providers.url}/openai/v1"
    keys = {"ACME_LLM_API_KEY": "x", "OPENROUTER_API_KEY": "x", "MODELS_DEV_API_KEY": "x"}
    url = f"{stack.http_url}/api/v1/feeds/{read_token}/models.dev"
    result = run_opencode(tmp_path / "home", url, keys)
    assert result.returncode == 0, result.stderr
    # opencode hides models marked deprecated (models.dev `status`); every other catalog model is listed.
    expected = ids([m for m in catalog if m.get("status") != "deprecated"])
    assert listed(result) == expected, result.stdout + result.stderr


@unless_installed(OPENCODE, "opencode (make test installs it with infra/ensure-test-clients.sh)")
def test_opencode_gets_nothing_with_an_admin_token_in_the_url_or_without_the_keys(stack, catalog, tmp_path) -> None:
    # Refused, opencode falls back to the models.dev snapshot built into it, which has an `openrouter` of its own:
    # only our two providers it cannot know are looked for.
    keys = {"ACME_LLM_API_KEY": "x", "MODELS_DEV_API_KEY": "x"}
    refused = run_opencode(tmp_path / "admin", f"{stack.http_url}/api/v1/feeds/{ADMIN}/models.dev", keys)
    assert not listed(refused) & ids(catalog)
    read = issue(stack, "read")["token"]
    without_keys = run_opencode(tmp_path / "nokeys", f"{stack.http_url}/api/v1/feeds/{read}/models.dev", {})
    assert not listed(without_keys) & ids(catalog)


# -- LiteLLM --------------------------------------------------------------------------------------------------
LITELLM_SCRIPT = """
import json, os, sys
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no network at import
import httpx
import litellm

litellm.suppress_debug_info = True
url, keys = sys.argv[1], json.loads(sys.argv[2])
document = httpx.get(url, timeout=30).raise_for_status().json()
litellm.register_model(document)
out = {}
for key in keys:
    info = litellm.get_model_info(key)
    provider = document[key]["litellm_provider"]
    cost = litellm.cost_per_token(model=key, custom_llm_provider=provider, prompt_tokens=1_000_000,
                                  completion_tokens=1_000_000)
    out[key] = {"max_input_tokens": info["max_input_tokens"], "max_output_tokens": info["max_output_tokens"],
                "input_cost_per_token": info["input_cost_per_token"],
                "output_cost_per_token": info["output_cost_per_token"],
                "supports_function_calling": info["supports_function_calling"],
                "supports_vision": info["supports_vision"], "cost": cost}
print(json.dumps(out))
"""


def test_litellm_reads_our_limits_and_prices(stack, read_token, catalog) -> None:
    priced = [m for m in catalog if m["pricing"] and m["context_length"]][:12]
    assert {m["provider_id"] for m in priced} >= {"openrouter"} and len(priced) >= 5
    keys = sorted(ids(priced))
    url = f"{stack.http_url}/api/v1/feeds/{read_token}/litellm.json"
    result = subprocess.run([sys.executable, "-c", LITELLM_SCRIPT, url, json.dumps(keys)], cwd=REPO,
                            env=isolated_env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    for model in priced:
        info = got[f"{model['provider_id']}/{model['id']}"]
        assert info["max_input_tokens"] == model["context_length"]
        assert info["max_output_tokens"] == model["max_output_tokens"]
        assert info["input_cost_per_token"] == pytest.approx(model["pricing"]["input_per_mtok"] / 1e6)
        assert info["output_cost_per_token"] == pytest.approx(model["pricing"]["output_per_mtok"] / 1e6)
        # A million tokens each way costs the per-million prices.
        assert info["cost"] == pytest.approx([model["pricing"]["input_per_mtok"], model["pricing"]["output_per_mtok"]])
        assert info["supports_function_calling"] == ("tools" in model["capabilities"])


# -- the OpenAI SDK -------------------------------------------------------------------------------------------
def test_the_openai_sdk_lists_every_model(stack, read_token, catalog) -> None:
    from openai import AuthenticationError, OpenAI

    client = OpenAI(base_url=f"{stack.http_url}/api/v1/export/openai", api_key=read_token, max_retries=0)
    models = list(client.models.list())
    assert [m.id for m in models] == sorted(ids(catalog), key=lambda i: tuple(i.split("/", 1)))
    assert {m.owned_by for m in models} == {"acme-llm", "openrouter", "models.dev"}
    wrong = OpenAI(base_url=f"{stack.http_url}/api/v1/export/openai", api_key="mct_" + "0" * 16 + "_" + "A" * 43,
                   max_retries=0)
    with pytest.raises(AuthenticationError):
        wrong.models.list()


# -- tokens over the real edges -------------------------------------------------------------------------------
def ws_status(stack: LocalStack, token: str) -> int:
    try:
        with connect(f"{stack.ws_url}/?token={token}", open_timeout=15, proxy=None) as socket:
            socket.send(json.dumps({"action": "ping"}))
            assert json.loads(socket.recv(timeout=15)) == {"type": "pong"}
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def test_revocation_is_immediate_for_rest_feeds_and_new_websockets(stack) -> None:
    token = issue(stack, "read", "revoked soon")
    assert stack.get("/api/v1/whoami", token=token["token"]).status_code == 200
    assert stack.get(f"/api/v1/feeds/{token['token']}/openai/models", token=False).status_code == 200
    assert ws_status(stack, token["token"]) == 101
    assert stack.delete(f"/api/v1/tokens/{token['id']}").status_code == 204
    assert stack.get("/api/v1/whoami", token=token["token"]).status_code == 401
    assert stack.get(f"/api/v1/feeds/{token['token']}/openai/models", token=False).status_code == 401
    assert ws_status(stack, token["token"]) == 401


def test_a_read_token_cannot_refresh_and_powerful_tokens_stay_out_of_urls(stack) -> None:
    read, refresh = issue(stack, "read")["token"], issue(stack, "refresh")["token"]
    denied = stack.post("/api/v1/providers:refresh", token=read)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "insufficient_scope"
    assert stack.post("/api/v1/providers:refresh", token=refresh).status_code == 200
    for powerful in (refresh, ADMIN):
        response = stack.get(f"/api/v1/feeds/{powerful}/litellm.json", token=False)
        assert response.status_code == 403 and response.json()["error"]["code"] == "token_not_allowed_in_url"


def test_tokens_survive_a_restart_and_the_state_dir_holds_none_in_plain_text(stack) -> None:
    kept = issue(stack, "refresh", "kept across restarts")
    revoked = issue(stack, "read", "revoked before the restart")
    assert stack.delete(f"/api/v1/tokens/{revoked['id']}").status_code == 204
    stack.restart()
    assert stack.get("/api/v1/whoami", token=kept["token"]).json()["token_id"] == kept["id"]
    assert stack.get("/api/v1/whoami", token=revoked["token"]).status_code == 401
    listed_names = {t["name"] for t in stack.get("/api/v1/tokens").json()["tokens"]}
    assert "kept across restarts" in listed_names and "revoked before the restart" not in listed_names

    stack.stop()  # flush the embedded DynamoDB's snapshot to the state dir
    try:
        files = [path for path in stack.state_dir.rglob("*") if path.is_file()]
        contents = b"".join(path.read_bytes() for path in files)
        # Control: the snapshot does hold the tokens' records (so a token would be found if it were there).
        assert kept["id"].encode() in contents and b"kept across restarts" in contents
        for token in (kept, revoked):
            secret = token["token"][len("mct_") + 17 :]
            assert token["token"].encode() not in contents and secret.encode() not in contents
    finally:
        stack.start()


# -- the CLI --------------------------------------------------------------------------------------------------
def test_cli_tokens_create_list_revoke(stack) -> None:
    env = isolated_env({"MODEL_CATALOG_URL": stack.http_url, "MODEL_CATALOG_API_TOKEN": ADMIN})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chalicelib.cli", "tokens", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)

    created = cli("create", "--name", "from the cli", "--scope", "read", "--json")
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert body["scope"] == "read" and body["token"].startswith("mct_")
    table = cli("list")
    assert table.returncode == 0 and body["id"] in table.stdout and "from the cli" in table.stdout
    assert body["token"] not in table.stdout
    assert cli("revoke", body["id"]).returncode == 0
    assert stack.get("/api/v1/whoami", token=body["token"]).status_code == 401
    again = cli("revoke", body["id"])
    assert again.returncode == 2 and "token_not_found" in again.stderr
    bad_scope = cli("create", "--name", "x", "--scope", "owner")
    assert bad_scope.returncode == 2
