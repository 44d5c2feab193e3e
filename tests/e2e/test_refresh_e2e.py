"""Refresh end to end through `make run`'s stack: a real fake provider over HTTP, the real HTTP API,
the embedded (serialized) DynamoDB."""

from __future__ import annotations

import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fakes.provider_server import FakeProviderServer
from tests.stack import LocalStack

pytestmark = pytest.mark.stack


def openai_body(models: dict[str, int]) -> dict:
    return {"object": "list", "data": [
        {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "fake", "context_window": context}
        for model_id, context in models.items()
    ]}


@pytest.fixture(scope="module")
def provider():
    with FakeProviderServer() as server:
        yield server


@pytest.fixture(scope="module")
def stack(provider, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refresh-e2e")
    config = tmp / "catalog.toml"
    config.write_text(textwrap.dedent(f"""
        [model_catalog]
        refresh_on_start = false
        lock_wait_ms = 15000
        manual_run_deadline_ms = 7000

        [[providers]]
        id = "fake"
        name = "Fake AI"
        kind = "openai"
        base_url = "{provider.url}/v1"

        [[providers]]
        id = "slow"
        kind = "openai"
        base_url = "{provider.url}/slow/v1"
    """))
    provider.route("GET", "/v1/models", json=openai_body({"m-keep": 8000, "m-drop": 4000, "m-ctx": 1000}))
    provider.route("GET", "/slow/v1/models", json=openai_body({"s-1": 1}))
    with LocalStack(tmp, config=config) as running:
        yield running


def refresh(stack: LocalStack, path: str = "/api/v1/providers:refresh") -> dict:
    response = stack.post(path)
    assert response.status_code == 200, response.text
    return response.json()


def test_changes_are_reported_exactly_then_unchanged_without_catalog_writes(stack, provider) -> None:
    first = refresh(stack)
    assert [c["provider_id"] for c in first["changed"]] == ["fake", "slow"]
    assert first["changed"][0]["added"] == ["m-ctx", "m-drop", "m-keep"]

    provider.route("GET", "/v1/models", json=openai_body({"m-keep": 8000, "m-ctx": 2000, "m-new": 32000}))
    second = refresh(stack)
    assert second["changed"] == [{"provider_id": "fake", "provider_name": "Fake AI",
                                  "added": ["m-new"], "removed": ["m-drop"], "updated": ["m-ctx"],
                                  "changes": [{"model_id": "m-ctx", "field": "context_length",
                                               "before": 1000, "after": 2000}]}]
    assert second["unchanged"] == ["slow"] and second["failed"] == []
    assert second["revision"] == first["revision"] + 1
    models = {m["id"]: m for m in stack.get("/api/v1/models?provider_id=fake").json()["models"]}
    assert models["m-ctx"]["context_length"] == 2000 and "m-drop" not in models

    before = stack.dynamodb_write_counts()
    third = refresh(stack)
    assert third == {"revision": second["revision"], "changed": [], "unchanged": ["fake", "slow"], "failed": []}
    after = stack.dynamodb_write_counts()
    catalog_table = "model-catalog-catalog"
    assert after.get(catalog_table, 0) - before.get(catalog_table, 0) == 0
    assert after.get("model-catalog-locks", 0) > before.get("model-catalog-locks", 0), "the counter works"


def test_concurrent_refresh_requests_never_fetch_a_provider_twice_at_once(stack, provider) -> None:
    provider.route("GET", "/slow/v1/models", json=openai_body({"s-1": 1}), delay=0.3)
    calls_before = len(provider.requests("/slow/v1/models"))
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: stack.post("/api/v1/providers:refresh"), range(8)))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert len(provider.requests("/slow/v1/models")) - calls_before == 8
    assert provider.max_in_flight("/slow/v1/models") == 1
    assert provider.max_in_flight("/v1/models") == 1
