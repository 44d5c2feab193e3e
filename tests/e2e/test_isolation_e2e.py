"""One provider's bad answer cannot fail the others, through `make run`'s stack (docs/reference.md §2, issue 12):
a provider sending a model with a ~600 KB display name (incompressible, so its chunk would pass DynamoDB's 400 KB
item limit) beside a healthy one. The scheduled tick at start and a manual refresh both answer, commit the healthy
provider's change, and fail the bad one with a reason naming the limit."""

from __future__ import annotations

import base64
import os
import textwrap
import time

import pytest

from tests.fakes.provider_server import FakeProviderServer
from tests.stack import LocalStack

pytestmark = pytest.mark.stack

HUGE_NAME = base64.b64encode(os.urandom(450_000)).decode()  # 600,000 characters that do not compress
LIMIT_REASON = "display_name is 600,000 characters long, over the limit of 256"


def openai_body(*ids: str, huge: bool = False) -> dict:
    data = [{"id": model_id, "object": "model", "owned_by": "fake"} for model_id in ids]
    if huge:
        data.append({"id": "huge", "object": "model", "owned_by": "fake", "display_name": HUGE_NAME})
    return {"object": "list", "data": data}


@pytest.fixture(scope="module")
def provider():
    with FakeProviderServer() as server:
        server.route("GET", "/good/v1/models", json=openai_body("g-1", "g-2"))
        server.route("GET", "/bad/v1/models", json=openai_body("b-1", huge=True))
        yield server


@pytest.fixture(scope="module")
def stack(provider, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("isolation-e2e")
    config = tmp / "catalog.toml"
    config.write_text(textwrap.dedent(f"""
        [model_catalog]
        refresh_on_start = true

        [[providers]]
        id = "good"
        kind = "openai"
        base_url = "{provider.url}/good/v1"

        [[providers]]
        id = "bad"
        kind = "openai"
        base_url = "{provider.url}/bad/v1"
    """))
    with LocalStack(tmp, config=config) as running:
        yield running


def last_run(stack: LocalStack, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = stack.get("/api/v1/refresh/status")
        assert status.status_code == 200, status.text
        if status.json()["last_run"] is not None:
            return status.json()["last_run"]
        time.sleep(0.2)
    raise AssertionError("the scheduled tick at start did not run")


def test_the_scheduled_tick_commits_the_healthy_provider_and_fails_the_bad_one(stack) -> None:
    run = last_run(stack)
    assert [c["provider_id"] for c in run["changed"]] == ["good"]
    assert run["changed"][0]["added"] == ["g-1", "g-2"]
    assert [f["provider_id"] for f in run["failed"]] == ["bad"]
    assert LIMIT_REASON in run["failed"][0]["reason"]
    models = stack.get("/api/v1/models").json()["models"]
    assert [(m["provider_id"], m["id"]) for m in models] == [("good", "g-1"), ("good", "g-2")]


def test_a_manual_refresh_answers_200_commits_the_healthy_change_and_names_the_limit(stack, provider) -> None:
    last_run(stack)
    provider.route("GET", "/good/v1/models", json=openai_body("g-1", "g-2", "g-3"))
    response = stack.post("/api/v1/providers:refresh")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["changed"] == [
        {"provider_id": "good", "provider_name": "good", "added": ["g-3"], "removed": [], "updated": [], "changes": []}
    ]
    assert result["failed"] == [{"provider_id": "bad", "reason": (
        f"1 of 2 models breaks the model field limits: model 'huge': {LIMIT_REASON}; keeping the last good list")}]
    assert [m["id"] for m in stack.get("/api/v1/models").json()["models"]] == ["g-1", "g-2", "g-3"]
    providers = {p["id"]: p for p in stack.get("/api/v1/providers").json()["providers"]}
    assert LIMIT_REASON in providers["bad"]["last_error"] and providers["good"]["last_error"] is None
    # Once the provider fixes its answer, it is refreshed like any other.
    provider.route("GET", "/bad/v1/models", json=openai_body("b-1"))
    fixed = stack.post("/api/v1/providers:refresh").json()
    assert fixed["changed"][0]["provider_id"] == "bad" and fixed["failed"] == []
