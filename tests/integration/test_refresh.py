"""The refresh engine against in-process moto, with a fake fetcher (the provider adapters' fake)."""

from __future__ import annotations

import time

import pytest

from chalicelib.core.domain import Model, models_fingerprint
from chalicelib.core.events import build_event_message
from chalicelib.core.manifest import Manifest
from chalicelib.core.state import RefreshState
from chalicelib.errors import LockLost, ProviderError, ProviderNotFound, RefreshInProgress
from chalicelib.refresh import RefreshEngine
from chalicelib.service import CatalogService
from chalicelib.storage.catalog import CatalogStore
from chalicelib.storage.commit import CatalogCommit
from chalicelib.storage.journal import EventJournal
from chalicelib.storage.lock import LeaseLock
from chalicelib.storage.state import RefreshStateStore, encode_state
from tests.fakes.engine import CatalogWrites, FakeFetcher, RecordingPublisher

CONFIG = """
[model_catalog]
refresh_interval_ms = 3600000

[[providers]]
id = "alpha"
name = "Alpha AI"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[providers]]
id = "beta"
kind = "anthropic"
base_url = "http://127.0.0.1:9/v1"

[[providers]]
id = "gamma"
kind = "managed_oauth"
base_url = "http://127.0.0.1:9/v1"
token_url = "http://127.0.0.1:9/token"
client_id = "cli"
refresh_token_env = "GAMMA_REFRESH_TOKEN"
"""

@pytest.fixture
def world(dynamodb_client, make_settings):
    settings = make_settings(CONFIG)
    return build_world(dynamodb_client, settings)


def build_world(client, settings, clock=time.time):
    fetcher = FakeFetcher()
    publisher = RecordingPublisher()
    store = CatalogStore(client, settings.tables.catalog)
    lock = LeaseLock(client, settings.tables.locks, clock=clock)
    commit = CatalogCommit(client, lock, store, EventJournal(client, settings.tables.events))
    engine = RefreshEngine(config=settings.config, deployment_id=settings.deployment_id, catalog=store, lock=lock,
                           commit=commit, fetcher_factory=fetcher, publisher=publisher, clock=clock)
    service = CatalogService(config=settings.config, deployment_id=settings.deployment_id, store=store,
                             state=RefreshStateStore(lock), engine=engine, clock=clock)
    return type("World", (), dict(settings=settings, fetcher=fetcher, publisher=publisher, store=store,
                                  lock=lock, commit=commit, engine=engine, service=service, client=client))


def test_first_refresh_adds_everything_and_emits_one_event(world) -> None:
    world.fetcher.set("alpha", "a2", "a1")
    world.fetcher.set("beta", "b1")
    world.fetcher.catalog["gamma"] = ProviderError("GAMMA_REFRESH_TOKEN is not set")
    result = world.service.refresh("all")
    assert result["revision"] == 1
    assert result["changed"] == [
        {"provider_id": "alpha", "provider_name": "Alpha AI", "added": ["a1", "a2"], "removed": [], "updated": [],
         "changes": []},
        {"provider_id": "beta", "provider_name": "beta", "added": ["b1"], "removed": [], "updated": [], "changes": []},
    ]
    assert result["unchanged"] == []
    assert result["failed"] == [{"provider_id": "gamma", "reason": "GAMMA_REFRESH_TOKEN is not set"}]
    models = world.service.list_models()
    assert models["revision"] == 1
    assert [(m["provider_id"], m["id"]) for m in models["models"]] == [("alpha", "a1"), ("alpha", "a2"), ("beta", "b1")]
    assert [m["seq"] for m in world.publisher.messages] == [1]
    assert world.publisher.messages[0]["payload"] == result
    # The event went to the journal in the same commit (outbox).
    epoch = world.store.read_manifest().epoch
    assert [e["seq"] for e in EventJournal(world.client, world.settings.tables.events).replay(epoch, 0)] == [1]


def test_unchanged_refresh_writes_nothing_to_the_catalog_and_emits_nothing(world) -> None:
    world.fetcher.set("alpha", "a1")
    world.fetcher.set("beta", "b1")
    world.fetcher.set("gamma", "g1")
    world.service.refresh("all")
    writes = CatalogWrites(world.client, world.settings.tables.catalog)
    result = world.service.refresh("all")
    assert result == {"revision": 1, "changed": [], "unchanged": ["alpha", "beta", "gamma"], "failed": []}
    assert writes.count == 0
    assert len(world.publisher.messages) == 1
    providers = {p["id"]: p for p in world.service.list_providers()["providers"]}
    assert providers["alpha"]["last_refreshed_at"] is not None and providers["alpha"]["model_count"] == 1
    world.fetcher.set("alpha", "a2")
    world.service.refresh("all")
    assert writes.count >= 2  # negative control: a change writes its chunks and flips the manifest, and is counted


def test_add_remove_and_context_change_are_reported_exactly(world) -> None:
    world.fetcher.set("alpha", "keep", "drop", context=1000)
    world.service.refresh("provider", "alpha")
    world.fetcher.catalog["alpha"] = [
        Model(provider_id="alpha", id="keep", context_length=2000),
        Model(provider_id="alpha", id="new"),
    ]
    result = world.service.refresh("provider", "alpha")
    assert result["changed"] == [
        {"provider_id": "alpha", "provider_name": "Alpha AI", "added": ["new"], "removed": ["drop"], "updated": ["keep"],
         "changes": [{"model_id": "keep", "field": "context_length", "before": 1000, "after": 2000}]}
    ]
    assert [m["seq"] for m in world.publisher.messages] == [1, 2]
    keep = next(m for m in world.service.list_models("alpha")["models"] if m["id"] == "keep")
    assert keep["context_length"] == 2000


def test_failure_keeps_the_last_good_models_and_records_the_reason(world) -> None:
    world.fetcher.set("alpha", "a1", "a2")
    world.service.refresh("provider", "alpha")
    world.fetcher.catalog["alpha"] = ProviderError("the API key was rejected (HTTP 401)")
    result = world.service.refresh("provider", "alpha")
    assert result == {"revision": 1, "changed": [], "unchanged": [],
                      "failed": [{"provider_id": "alpha", "reason": "the API key was rejected (HTTP 401)"}]}
    assert [m["id"] for m in world.service.list_models("alpha")["models"]] == ["a1", "a2"]
    alpha = next(p for p in world.service.list_providers()["providers"] if p["id"] == "alpha")
    assert alpha["last_error"] == "the API key was rejected (HTTP 401)"
    assert len(world.publisher.messages) == 1  # failures alone are no change


def test_empty_answer_is_a_failure_not_a_wipe(world) -> None:
    world.fetcher.set("alpha", "a1", "a2")
    world.service.refresh("provider", "alpha")
    world.fetcher.set("alpha")
    result = world.service.refresh("provider", "alpha")
    assert "empty model list" in result["failed"][0]["reason"]
    assert len(world.service.list_models("alpha")["models"]) == 2


def test_provider_removed_from_config_leaves_at_the_next_full_refresh(world, make_settings) -> None:
    world.fetcher.set("alpha", "a1")
    world.fetcher.set("beta", "b1", "b2")
    world.service.refresh("all")
    smaller = make_settings(CONFIG.split("[[providers]]\nid = \"beta\"")[0])
    other = build_world(world.client, smaller)
    other.fetcher.set("alpha", "a1")
    assert other.service.refresh("provider", "alpha")["changed"] == []  # one-provider scope keeps it
    result = other.service.refresh("all")
    assert result["changed"] == [
        {"provider_id": "beta", "provider_name": "beta", "added": [], "removed": ["b1", "b2"], "updated": [], "changes": []}
    ]
    assert result["unchanged"] == ["alpha"]
    assert [m["provider_id"] for m in other.service.list_models()["models"]] == ["alpha"]
    remaining = world.client.query(
        TableName=smaller.tables.catalog, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "MODELS#beta"}})["Items"]
    assert remaining == []  # its chunks are collected


def test_scopes_and_unknown_provider(world) -> None:
    world.fetcher.set("alpha", "a1")
    world.fetcher.set("gamma", "g1")
    assert world.service.refresh("oauth")["changed"][0]["provider_id"] == "gamma"
    assert world.fetcher.calls == ["gamma"]
    with pytest.raises(ProviderNotFound):
        world.service.refresh("provider", "nope")


def test_providers_are_fetched_concurrently(world) -> None:
    world.fetcher.delay = 0.2
    world.service.refresh("all")
    assert world.fetcher.max_in_flight == 3


def test_the_fetch_threads_are_kept_across_runs(world) -> None:
    world.fetcher.delay = 0.1  # all three at once: three threads
    world.service.refresh("all")
    first = set(world.fetcher.threads)
    world.fetcher.threads.clear()
    world.service.refresh("all")
    assert len(first) == 3 and set(world.fetcher.threads) <= first


def test_a_lease_holder_that_lost_its_lease_cannot_commit(dynamodb_client, make_settings) -> None:
    """Fencing: A is paused past its lease, B takes over; A's late commit fails and writes nothing."""
    settings = make_settings(CONFIG)
    now = [1000.0]
    world = build_world(dynamodb_client, settings, clock=lambda: now[0])
    world.fetcher.set("alpha", "a1")
    lease_a = world.lock.try_acquire("A", lease_ms=1000)
    now[0] += 5  # A's lease expires while it is paused
    lease_b = world.lock.try_acquire("B", lease_ms=1000)
    assert lease_b is not None and lease_b.token == lease_a.token + 1
    manifest = world.store.read_manifest()
    event = build_event_message(1, manifest.epoch, "2026-01-01T00:00:00.000Z", {"revision": 1})
    with pytest.raises(LockLost):
        world.commit.write(lease_a, encode_state(RefreshState()), Manifest(revision=1, epoch=manifest.epoch, seq=1),
                           manifest.revision, event)
    assert world.store.read_manifest().revision == 0
    assert world.lock.release(lease_a) is False
    assert world.lock.release(lease_b) is True


def test_a_run_killed_midway_is_recovered_after_the_lease(dynamodb_client, make_settings) -> None:
    settings = make_settings(CONFIG)
    now = [1000.0]
    world = build_world(dynamodb_client, settings, clock=lambda: now[0])
    dead = world.lock.try_acquire("dead-lambda", lease_ms=60_000)
    world.store.write_generation("alpha", "r00000001-t1", [{"id": "orphan"}])  # then the process died
    world.fetcher.set("alpha", "a1")
    with pytest.raises(RefreshInProgress) as busy:
        world.engine.run("all", wait_ms=1)
    assert busy.value.retry_after_s >= 1
    now[0] += 61  # the dead holder's lease expires
    result = world.engine.run("all", wait_ms=1)
    assert result.changed[0].added == ["a1"]
    assert [m["id"] for m in world.service.list_models("alpha")["models"]] == ["a1"]
    sks = [i["sk"]["S"] for i in dynamodb_client.query(
        TableName=settings.tables.catalog, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "MODELS#alpha"}})["Items"]]
    assert all(not sk.startswith("r00000001-t1#") for sk in sks), "the orphaned generation is collected"
    assert world.lock.release(dead) is False


def test_twenty_thousand_models_stay_under_the_item_limit(world) -> None:
    world.fetcher.catalog["alpha"] = [
        Model(provider_id="alpha", id=f"org-{i:05d}/model-with-a-longish-name-{i}", display_name=f"Model {i}",
              context_length=128_000, max_output_tokens=8192, capabilities=("tools", "vision"))
        for i in range(20_000)
    ]
    result = world.service.refresh("provider", "alpha")
    assert len(result["changed"][0]["added"]) == 20_000
    items = world.client.scan(TableName=world.settings.tables.catalog)["Items"]
    biggest = max(len(i.get("body", i.get("providers", {})).get("B", b"")) for i in items)
    assert biggest < 400_000
    assert sum(1 for i in items if i["pk"]["S"] == "MODELS#alpha") > 1  # it really was chunked
    read, cursor = 0, None
    while True:  # 5.1 MB of JSON: more than one unpaged answer may carry (page_required), so page by page
        page = world.service.list_models("alpha", limit=5_000, cursor=cursor)
        read, cursor = read + len(page["models"]), page["next_cursor"]
        if cursor is None:
            break
    assert read == 20_000


def test_models_pagination_walks_the_catalog_once(world) -> None:
    world.fetcher.set("alpha", *[f"a{i}" for i in range(5)])
    world.fetcher.set("beta", *[f"b{i}" for i in range(4)])
    world.service.refresh("all")
    seen, cursor = [], None
    while True:
        page = world.service.list_models(limit=2, cursor=cursor)
        seen += [(m["provider_id"], m["id"]) for m in page["models"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [(m["provider_id"], m["id"]) for m in world.service.list_models()["models"]]
    assert len(seen) == 9


def test_tick_refreshes_on_start_once_then_by_interval(dynamodb_client, make_settings) -> None:
    settings = make_settings(CONFIG)
    now = [1_000_000.0]
    world = build_world(dynamodb_client, settings, clock=lambda: now[0])
    world.fetcher.set("alpha", "a1")
    first = world.service.tick()
    assert first["ran"] is True and "refresh_on_start" in first["reason"]
    assert world.service.tick()["ran"] is False  # duplicate delivery of the same event is harmless
    now[0] += 3599
    assert world.service.tick()["ran"] is False
    now[0] += 1
    assert world.service.tick()["ran"] is True
    status = world.service.refresh_status()
    assert status["refresh_interval_ms"] == 3_600_000 and status["last_run"]["revision"] == 1
    assert status["next_due_at"] is not None


def test_manifest_fingerprint_matches_stored_models(world) -> None:
    world.fetcher.set("alpha", "x", "y")
    world.service.refresh("provider", "alpha")
    manifest, catalog = world.store.read_catalog()
    assert manifest.providers["alpha"].fingerprint == models_fingerprint(catalog["alpha"])


def test_a_huge_last_run_is_stored_truncated_on_the_lock_item(world) -> None:
    # 60,000 models in one run, split over two providers (one provider may list at most 50,000).
    for provider_id in ("alpha", "beta"):
        world.fetcher.catalog[provider_id] = [
            Model(provider_id=provider_id, id=f"m-{i:06d}-{'x' * 40}") for i in range(30_000)
        ]
    world.fetcher.catalog["gamma"] = ProviderError("GAMMA_REFRESH_TOKEN is not set")
    result = world.service.refresh("all")
    assert [len(c["added"]) for c in result["changed"]] == [30_000, 30_000]  # the response itself is whole
    item = world.client.get_item(TableName=world.settings.tables.locks, Key={"pk": {"S": "refresh#catalog"}})["Item"]
    assert len(item["state"]["B"]) <= 110_000
    last_run = world.service.refresh_status()["last_run"]
    assert last_run["truncated"] is True and last_run["revision"] == result["revision"]
    assert [c["provider_id"] for c in last_run["changed"]] == ["alpha", "beta"]
