"""Webhooks (docs/reference.md §9) end to end: the local stack (`python -m devstack`) as a subprocess, real HTTP
receivers on 127.0.0.1, a real WebSocket client, signatures verified by the reference ``standardwebhooks`` library.

The stack ticks every 0.3 s (``MODEL_CATALOG_TICK_SECONDS``) and retries on ``webhook_retry_schedule_s = [1, 1]``,
so a retry is due 1 s after its failure and sent by the first tick after that. Catalog changes come from the demo
registry's test hooks (as in test_ws_e2e.py). Each test makes its own endpoints and receivers and deletes its
endpoints at the end, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from websockets.sync.client import connect

from tests.fakes.registry_documents import GrowingRegistry
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.stack import REPO, LocalStack, isolated_env

pytestmark = pytest.mark.stack

TICK_S = 0.3
CONFIG = """
[model_catalog]
refresh_interval_ms = 0
refresh_on_start = false
webhook_retry_schedule_s = [1, 1]

[[providers]]
id = "demo"
name = "Demo registry"
kind = "registry"
url = "${MODEL_CATALOG_DEMO_REGISTRY_URL:-http://127.0.0.1:9/api.json}"
"""


def start_stack(root, config: str = CONFIG, **env: str) -> LocalStack:
    path = root / "catalog.toml"
    path.write_text(textwrap.dedent(config))
    return LocalStack(root, config=path, tick_seconds=TICK_S, env=env)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with start_stack(tmp_path_factory.mktemp("webhooks-e2e")) as running:
        yield running


@pytest.fixture(scope="module")
def registry(stack: LocalStack) -> GrowingRegistry:
    registry = GrowingRegistry()
    registry.add_model(stack)
    assert stack.post("/api/v1/providers:refresh").status_code == 200
    return registry


@pytest.fixture
def hooks(stack: LocalStack) -> Iterator[Any]:
    """``hooks(url, **fields)`` creates an endpoint (deleted after the test) and returns the 201 body."""
    made: list[str] = []

    def create(url: str, **fields: Any) -> dict[str, Any]:
        response = stack.post("/api/v1/webhooks", json={"url": url, **fields})
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
        return response.json()

    yield create
    for webhook_id in made:
        requests.delete(f"{stack.http_url}/api/v1/webhooks/{webhook_id}", headers=stack.auth_headers(), timeout=30)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def refresh(stack: LocalStack) -> dict[str, Any]:
    response = stack.post("/api/v1/providers:refresh")
    assert response.status_code == 200, response.text
    return response.json()


def change(stack: LocalStack, registry: GrowingRegistry) -> tuple[dict[str, Any], float]:
    """A refresh that adds one model; returns its result and when its answer arrived."""
    added = registry.add_model(stack)
    result = refresh(stack)
    assert result["changed"] and added in result["changed"][0]["added"], result
    return result, time.time()


def webhook(stack: LocalStack, webhook_id: str) -> dict[str, Any]:
    response = stack.get(f"/api/v1/webhooks/{webhook_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(check: Any, timeout: float = 10.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def position(stack: LocalStack) -> tuple[int, str]:
    with connect(stack.ws_connect_url, open_timeout=15, proxy=None) as ws:
        ws.send(json.dumps({"action": "subscribe", "since": None, "epoch": None}))
        subscribed = json.loads(ws.recv(timeout=10))
    return subscribed["seq"], subscribed["epoch"]


# --- the message ----------------------------------------------------------------------------------------------


def test_a_change_is_delivered_within_2_s_signed_and_equal_to_the_websocket_event(stack, registry, hooks, receiver):
    created = hooks(receiver.url)
    with connect(stack.ws_connect_url, open_timeout=15, proxy=None, max_size=2**21) as ws:
        ws.send(json.dumps({"action": "subscribe", "since": None, "epoch": None}))
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        result, answered = change(stack, registry)
        event = json.loads(ws.recv(timeout=10))
    (request,) = receiver.wait_for(1, timeout=2.0)  # within 2 s of the refresh's answer (so of its commit)
    assert request.at - answered < 2.0
    body = Webhook(created["secret"]).verify(request.body, request.headers)
    assert body == {"type": "model_catalog.changed", "timestamp": event["timestamp"], "data": event}
    assert event["type"] == "event.model_catalog.changed" and event["payload"] == result
    assert request.headers["webhook-id"] == f"msg_{event['epoch']}_{event['seq']}"
    tampered = request.body.replace(b'"added":["', b'"added":["x', 1)
    assert tampered != request.body
    with pytest.raises(WebhookVerificationError):
        Webhook(created["secret"]).verify(tampered, request.headers)
    assert wait_until(lambda: webhook(stack, created["id"])["deliveries"]["succeeded"] == 1)


def test_no_delivery_for_a_refresh_that_changed_nothing(stack, registry, hooks, receiver):
    hooks(receiver.url)
    change(stack, registry)
    receiver.wait_for(1)
    assert refresh(stack)["changed"] == []
    time.sleep(2.0)  # several ticks: nothing is owed, nothing is sent
    assert len(receiver.requests()) == 1


# --- retries, 410 -------------------------------------------------------------------------------------------


def test_500_then_503_then_200_with_one_webhook_id_on_the_schedule(stack, registry, hooks, receiver):
    receiver.answers = [500, 503]
    created = hooks(receiver.url)
    change(stack, registry)
    requests_ = receiver.wait_for(3, timeout=15)
    assert [r.status for r in requests_] == [500, 503, 200]
    assert len({r.headers["webhook-id"] for r in requests_}) == 1
    for request in requests_:
        Webhook(created["secret"]).verify(request.body, request.headers)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(requests_)]
    # Each retry waits its 1 s delay and goes out with the first tick after it.
    assert all(1.0 <= gap < 1.0 + TICK_S + 1.0 for gap in gaps), gaps
    done = wait_until(lambda: (w := webhook(stack, created["id"]))["deliveries"]["succeeded"] == 1 and w)
    assert done["deliveries"] == {"succeeded": 1, "failed": 0, "pending": 0} and done["last_error"] is None
    attempts = stack.get(f"/api/v1/webhooks/{created['id']}/attempts").json()["attempts"]
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(3, 200), (2, 503), (1, 500)]


def test_410_disables_the_endpoint(stack, registry, hooks, receiver):
    receiver.answers = [410]
    created = hooks(receiver.url)
    change(stack, registry)
    receiver.wait_for(1)
    disabled = wait_until(lambda: (w := webhook(stack, created["id"]))["enabled"] is False and w)
    assert disabled["disabled_reason"] == "the endpoint answered 410 Gone"
    change(stack, registry)
    time.sleep(1.5)
    assert len(receiver.requests()) == 1


# --- the filter, replay -------------------------------------------------------------------------------------


def test_the_provider_filter(stack, registry, hooks, receiver):
    with WebhookReceiver() as other:
        hooks(receiver.url, provider_ids=["demo"])
        hooks(other.url, provider_ids=["someone-else"])
        change(stack, registry)
        receiver.wait_for(1)
        time.sleep(1.0)
        assert other.requests() == []


def test_replay_sends_the_events_again_with_the_same_ids(stack, registry, hooks, receiver):
    created = hooks(receiver.url)
    since, _ = position(stack)
    change(stack, registry)
    change(stack, registry)
    first = receiver.wait_for(2)
    response = stack.post(f"/api/v1/webhooks/{created['id']}/replay", json={"since": since})
    assert response.status_code == 202, response.text
    assert response.json()["replayed"] == 2
    again = receiver.wait_for(4)[2:]
    assert sorted(r.headers["webhook-id"] for r in again) == sorted(r.headers["webhook-id"] for r in first)
    seqs = sorted(Webhook(created["secret"]).verify(r.body, r.headers)["data"]["seq"] for r in again)
    assert seqs == [since + 1, since + 2]


def test_the_cli_manages_webhooks(stack, registry, receiver):
    env = isolated_env({"MODEL_CATALOG_URL": stack.http_url, "MODEL_CATALOG_API_TOKEN": stack.token})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chalicelib.cli", "webhooks", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)

    made = cli("create", receiver.url, "--provider", "demo", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    since, _ = position(stack)
    change(stack, registry)
    receiver.wait_for(1)
    listed = cli("list")
    assert listed.returncode == 0 and created["id"] in listed.stdout and "demo" in listed.stdout
    wait_until(lambda: webhook(stack, created["id"])["deliveries"]["succeeded"] == 1)
    attempts = cli("attempts", created["id"], "--json")
    assert [a["status_code"] for a in json.loads(attempts.stdout)["attempts"]] == [200]
    replayed = cli("replay", created["id"], "--since", str(since))
    assert replayed.returncode == 0 and "1 message(s)" in replayed.stdout
    receiver.wait_for(2)
    assert cli("delete", created["id"]).returncode == 0
    missing = cli("attempts", created["id"])
    assert missing.returncode == 2 and "webhook_not_found" in missing.stderr


# --- durability ---------------------------------------------------------------------------------------------


def test_a_pending_retry_survives_a_restart_of_the_stack(tmp_path):
    config = CONFIG.replace("webhook_retry_schedule_s = [1, 1]", "webhook_retry_schedule_s = [3]")
    with start_stack(tmp_path, config) as stack, WebhookReceiver() as receiver:
        registry = GrowingRegistry()
        receiver.answers = [500]
        created = stack.post("/api/v1/webhooks", json={"url": receiver.url}).json()
        change(stack, registry)
        (first,) = receiver.wait_for(1)
        # The failed attempt is recorded (its retry is due 3 s later), then the stack stops before it.
        wait_until(lambda: webhook(stack, created["id"])["last_error"] == "HTTP 500")
        stack.stop()
        stopped = time.time()
        assert len(receiver.requests()) == 1
        stack.start()
        second = receiver.wait_for(2, timeout=30)[1]
        assert second.at > stopped and second.at - first.at >= 3.0
        assert second.headers["webhook-id"] == first.headers["webhook-id"]
        Webhook(created["secret"]).verify(second.body, second.headers)
        assert wait_until(lambda: webhook(stack, created["id"])["deliveries"]["succeeded"] == 1)


def test_private_urls_are_refused_when_not_allowed(tmp_path):
    config = """
    [model_catalog]
    refresh_on_start = false
    refresh_interval_ms = 0
    """
    with start_stack(tmp_path, config, MODEL_CATALOG_ALLOW_PRIVATE_URLS="0") as stack:
        for url in ("http://127.0.0.1:8080/hook", "https://127.0.0.1/hook", "https://localhost/hook",
                    "https://10.0.0.7/hook", "https://169.254.169.254/latest/meta-data"):
            response = stack.post("/api/v1/webhooks", json={"url": url})
            assert response.status_code == 400, (url, response.text)
            assert response.json()["error"]["code"] == "invalid_webhook_url", url
        assert stack.get("/api/v1/webhooks").json() == {"webhooks": []}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert os.environ["NO_PROXY"]
