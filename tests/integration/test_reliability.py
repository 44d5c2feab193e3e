"""The runtime's reliability guarantees against moto (docs/reference.md, README "Reliability"):

- a catalog or journal table restored from a backup starts a new event epoch on the next commit, instead of
  failing every refresh (409) or reusing an ``(epoch, seq)``; resuming clients get ``resync_required``;
- a provider whose stored chunks are missing or unreadable does not hide the others, is reported, and is written
  again by the next refresh even though its models did not change;
- garbage collection is fenced: a run whose lease moved on deletes nothing a newer run committed;
- DynamoDB refusing one provider's data fails that provider only.

Each guarantee has a negative control that shows the unguarded behaviour.
"""

from __future__ import annotations

import json
import types
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.core.events import build_event_message
from chalicelib.core.manifest import Manifest
from chalicelib.core.state import RefreshState
from chalicelib.errors import SeqCollision
from chalicelib.storage import codec
from chalicelib.storage.catalog import CatalogStore
from chalicelib.storage.journal import EventJournal
from chalicelib.storage.state import encode_state
from tests.conftest import wired
from tests.fakes.engine import FakeFetcher
from tests.integration.test_websocket_handlers import ws_event

CONFIG = """
[model_catalog]
refresh_on_start = false

[[providers]]
id = "alpha"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[providers]]
id = "beta"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
"""


def build(client: Any, settings: Any, now: list[float]) -> Any:
    """One process of the service (a Lambda): its own store cache, engine and WebSocket handlers."""
    fetcher = FakeFetcher()
    frames: list[tuple[str, dict]] = []
    container = wired(settings, client, fetcher_factory=fetcher, clock=lambda: now[0],
                      send=lambda connection_id, text: frames.append((connection_id, json.loads(text))))
    return types.SimpleNamespace(container=container, fetcher=fetcher, frames=frames, service=container.service,
                                 engine=container.engine, store=container.catalog, client=client, settings=settings)


@pytest.fixture
def world(dynamodb_client, make_settings):
    now = [1_700_000_000.0]
    world = build(dynamodb_client, make_settings(CONFIG), now)
    world.now = now
    world.fresh = lambda: build(dynamodb_client, world.settings, now)  # another (cold) process on the same tables
    return world


def refresh(world: Any, **lists: list[str]) -> dict[str, Any]:
    for provider_id, ids in lists.items():
        world.fetcher.set(provider_id, *ids)
    return world.service.refresh("all")


def table_items(world: Any, table: str) -> list[dict[str, Any]]:
    return world.client.scan(TableName=table, ConsistentRead=True)["Items"]


def restore(world: Any, table: str, backup: list[dict[str, Any]]) -> None:
    """What point-in-time recovery does to one table: its items become the backup's, the other tables stay."""
    key_names = ("pk", "sk") if table != world.settings.tables.events else ("epoch", "seq")
    for item in table_items(world, table):
        world.client.delete_item(TableName=table, Key={name: item[name] for name in key_names if name in item})
    for item in backup:
        world.client.put_item(TableName=table, Item=item)


def journal(world: Any, epoch: str) -> dict[int, dict[str, Any]]:
    """Every event the journal holds for ``epoch``, by seq (gaps included)."""
    items = world.client.query(
        TableName=world.settings.tables.events, KeyConditionExpression="epoch = :epoch",
        ExpressionAttributeValues={":epoch": {"S": epoch}}, ConsistentRead=True,
    )["Items"]
    return {int(item["seq"]["N"]): codec.unpack(item["body"]["B"]) for item in items}


def subscribe(world: Any, since: int, epoch: str) -> list[dict[str, Any]]:
    world.frames.clear()
    body = json.dumps({"action": "subscribe", "since": since, "epoch": epoch})
    world.container.websocket.on_message(ws_event("$default", "conn-1", body=body))
    return [frame for _, frame in world.frames]


def commit_at(world: Any, seq: int) -> None:
    """What the engine did before epochs rotated: journal the next event at the manifest's seq + 1, come what may."""
    store, lock = world.store, world.container.lock
    manifest = store.read_manifest()
    lease = lock.try_acquire("old-engine", 60_000)
    assert lease is not None
    try:
        event = build_event_message(seq, manifest.epoch, "2026-01-01T00:00:00.000Z", {"revision": manifest.revision + 1})
        new = Manifest(revision=manifest.revision + 1, epoch=manifest.epoch, seq=seq, providers=manifest.providers)
        world.engine._commit.write(lease, encode_state(RefreshState()), new, manifest.revision, event)
    finally:
        lock.release(lease)


# -- restored tables: a new epoch, never a wedge or a reused cursor -------------------------------------------------


def history(world: Any) -> tuple[str, list[dict[str, Any]]]:
    """Three changes (seq 1..3); returns the epoch and a backup of the catalog table taken after the first."""
    refresh(world, alpha=["a1"], beta=["b1"])
    backup = table_items(world, world.settings.tables.catalog)
    refresh(world, alpha=["a1", "a2"])
    refresh(world, alpha=["a1", "a2", "a3"])
    epoch = world.store.read_manifest().epoch
    assert sorted(journal(world, epoch)) == [1, 2, 3]
    return epoch, backup


def test_a_catalog_restored_from_a_backup_starts_a_new_epoch_on_the_next_commit(world) -> None:
    epoch, backup = history(world)
    restore(world, world.settings.tables.catalog, backup)  # the manifest is back at seq 1; the journal is at 3
    reader = world.fresh()
    assert reader.store.read_manifest().seq == 1

    result = refresh(reader, alpha=["a1", "a4"], beta=["b1"])
    assert result["changed"][0]["added"] == ["a4"] and result["revision"] == 2  # diffed against the restored list
    manifest = reader.store.read_manifest()
    assert manifest.epoch != epoch and manifest.seq == 1
    assert journal(reader, manifest.epoch)[1]["payload"] == result  # seq 1 of the new epoch is this change
    assert sorted(journal(reader, epoch)) == [1, 2, 3]  # the old epoch's events are untouched
    # A client that saw seq 3 of the old epoch resumes: it must refetch, not be told nothing is missing.
    frames = subscribe(reader, since=3, epoch=epoch)
    assert frames[0] == {"type": "subscribed", "seq": 1, "epoch": manifest.epoch, "revision": 2}
    assert frames[1] == {"type": "resync_required", "seq": 1, "epoch": manifest.epoch}


def test_negative_control_continuing_the_epoch_after_a_catalog_restore_is_refused_every_time(world) -> None:
    _, backup = history(world)
    restore(world, world.settings.tables.catalog, backup)
    for _ in range(2):  # what wedged version 1: every refresh found its seq already journaled (409)
        with pytest.raises(SeqCollision):
            commit_at(world.fresh(), seq=2)


def test_a_restored_catalog_whose_next_seq_expired_from_the_journal_still_starts_a_new_epoch(world) -> None:
    epoch, backup = history(world)
    restore(world, world.settings.tables.catalog, backup)
    # TTL already removed seq 2 (the journal keeps the newest 1,000; it is the collision that is gone, not seq 3).
    world.client.delete_item(TableName=world.settings.tables.events, Key={"epoch": {"S": epoch}, "seq": {"N": "2"}})
    reader = world.fresh()
    refresh(reader, alpha=["a1", "a4"], beta=["b1"])
    manifest = reader.store.read_manifest()
    assert manifest.epoch != epoch and manifest.seq == 1
    assert sorted(journal(reader, epoch)) == [1, 3]  # seq 2 of the old epoch was not written again


def test_negative_control_without_the_check_a_restored_catalog_reuses_a_seq_clients_already_saw(world) -> None:
    epoch, backup = history(world)
    seen = EventJournal(world.client, world.settings.tables.events).replay(epoch, 1, until=2)
    restore(world, world.settings.tables.catalog, backup)
    world.client.delete_item(TableName=world.settings.tables.events, Key={"epoch": {"S": epoch}, "seq": {"N": "2"}})
    commit_at(world.fresh(), seq=2)  # no collision any more: the journal takes the reused seq
    reused = EventJournal(world.client, world.settings.tables.events).replay(epoch, 1, until=2)
    assert reused is not None and seen is not None and reused[0]["payload"] != seen[0]["payload"]


def test_an_older_journal_starts_a_new_epoch_on_the_next_commit(world) -> None:
    epoch, _ = history(world)
    events_backup = [item for item in table_items(world, world.settings.tables.events) if item["seq"]["N"] == "1"]
    restore(world, world.settings.tables.events, events_backup)  # the journal is back at seq 1; the manifest at 3
    reader = world.fresh()
    result = refresh(reader, alpha=["a1", "a2", "a3", "a5"], beta=["b1"])
    manifest = reader.store.read_manifest()
    assert (manifest.epoch != epoch, manifest.seq, manifest.revision) == (True, 1, 4)
    assert journal(reader, manifest.epoch)[1]["payload"] == result
    frames = subscribe(reader, since=1, epoch=epoch)
    assert frames[1]["type"] == "resync_required"


def test_an_agreeing_journal_keeps_the_epoch(world) -> None:
    epoch, _ = history(world)
    refresh(world, alpha=["a1", "a2", "a3", "a4"])
    assert world.store.read_manifest().epoch == epoch and sorted(journal(world, epoch)) == [1, 2, 3, 4]


# -- broken stored lists: reported, the others still served, healed by the next refresh ------------------------------


def chunks_of(world: Any, provider_id: str) -> list[dict[str, Any]]:
    return world.client.query(
        TableName=world.settings.tables.catalog, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"MODELS#{provider_id}"}}, ConsistentRead=True,
    )["Items"]


def test_missing_chunks_hide_only_their_provider_and_the_next_refresh_writes_them_again(world) -> None:
    refresh(world, alpha=["a1", "a2"], beta=["b1"])
    revision = world.store.read_manifest().revision
    published = len(journal(world, world.store.read_manifest().epoch))
    for item in chunks_of(world, "alpha"):  # lost (a bug, a hand-made delete, a partial restore)
        world.client.delete_item(TableName=world.settings.tables.catalog, Key={"pk": item["pk"], "sk": item["sk"]})

    reader = world.fresh()  # a reader in another process (no cached copy)
    body = reader.service.list_models()
    assert [m["id"] for m in body["models"]] == ["b1"]
    assert body["unavailable"] == [
        {"provider_id": "alpha", "reason": "its stored models are incomplete (0 of 1 chunks found)"}
    ]

    result = world.service.refresh("all")  # the same answers: nothing changed, but alpha's list is written again
    assert result == {"revision": revision, "changed": [], "unchanged": ["alpha", "beta"], "failed": []}
    healed = reader.service.list_models()
    assert [m["id"] for m in healed["models"]] == ["a1", "a2", "b1"] and "unavailable" not in healed
    assert len(journal(world, world.store.read_manifest().epoch)) == published  # a repair is no event
    assert len(chunks_of(world, "alpha")) == 1


def test_an_unreadable_chunk_is_reported_and_rewritten_by_a_cold_process(world) -> None:
    refresh(world, alpha=["a1"], beta=["b1"])
    (item,) = chunks_of(world, "alpha")
    world.client.put_item(TableName=world.settings.tables.catalog, Item={**item, "body": {"B": b"not zlib at all"}})
    reader = world.fresh()
    body = reader.service.list_models()
    assert [m["id"] for m in body["models"]] == ["b1"]
    assert body["unavailable"][0]["provider_id"] == "alpha"
    assert "cannot be decoded" in body["unavailable"][0]["reason"]

    cold = world.fresh()  # a cold Lambda runs the next refresh: it reads (and so checks) every stored list
    cold.fetcher.set("alpha", "a1")
    cold.fetcher.set("beta", "b1")
    assert cold.service.refresh("all")["changed"] == []
    assert [m["id"] for m in world.fresh().service.list_models()["models"]] == ["a1", "b1"]


def test_negative_control_an_unchanged_provider_is_not_rewritten_when_its_list_is_intact(world) -> None:
    refresh(world, alpha=["a1"], beta=["b1"])
    before = {item["sk"]["S"] for item in chunks_of(world, "alpha")}
    world.service.refresh("all")
    assert {item["sk"]["S"] for item in chunks_of(world, "alpha")} == before


# -- fenced garbage collection -----------------------------------------------------------------------------------------


def late_garbage_collection(world: Any) -> tuple[Any, Any, Any]:
    """Run A starts after a run that did not finish, so it is to list every provider's chunks and delete those no
    manifest names; it pauses before doing so, its lease expires, and run B (another process) commits two changes.
    Returns B's process, A's lease and the manifest A read."""
    refresh(world, alpha=["a1"], beta=["b1"])
    world.container.lock.release(world.container.lock.try_acquire("crashed-run", 60_000))  # ended without its state
    lease_a = world.container.lock.try_acquire("run-a", 60_000)
    seen_by_a = world.store.read_manifest()
    world.now[0] += 3_600  # A's lease is long expired
    other = world.fresh()
    refresh(other, alpha=["a1", "a2", "a3"], beta=["b1"])
    refresh(other, alpha=["a1", "a2", "a3", "a4"], beta=["b1", "b2"])
    return other, lease_a, seen_by_a


def test_a_late_garbage_collection_from_an_expired_lease_deletes_nothing_current(world) -> None:
    other, lease_a, seen_by_a = late_garbage_collection(world)
    current = other.store.read_manifest()
    before = {item["sk"]["S"] for item in chunks_of(world, "alpha")}
    assert not set(current.providers["alpha"].chunk_keys()) <= set(seen_by_a.providers["alpha"].chunk_keys())
    world.engine._sweep_orphans(lease_a, seen_by_a)  # A wakes up: to it, B's chunks are leftovers
    assert {item["sk"]["S"] for item in chunks_of(world, "alpha")} == before
    assert [m["id"] for m in world.fresh().service.list_models("alpha")["models"]] == ["a1", "a2", "a3", "a4"]


def test_negative_control_an_unfenced_late_collection_deletes_the_current_chunks(world) -> None:
    _other, _lease_a, seen_by_a = late_garbage_collection(world)
    entry = seen_by_a.providers["alpha"]
    doomed = world.store.unreferenced_chunks("alpha", set(entry.chunk_keys()) | set(entry.retired))
    world.store.delete_chunks(doomed)  # the same collection, as a plain batch delete
    body = world.fresh().service.list_models()
    assert body["unavailable"][0]["provider_id"] == "alpha"


# -- one provider's data refused by DynamoDB ---------------------------------------------------------------------------


def refuse_writes_of(client: Any, provider_id: str, code: str) -> None:
    """DynamoDB refusing every chunk write that holds ``provider_id``'s models (e.g. an item over 400 KB)."""

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if f"MODELS#{provider_id}" in json.dumps(params, default=str):
            raise ClientError({"Error": {"Code": code, "Message": "Item size has exceeded the maximum allowed size"}},
                              "BatchWriteItem")

    client.meta.events.register("before-call.dynamodb.BatchWriteItem", refuse)


def test_a_provider_whose_chunks_dynamodb_refuses_fails_alone(world) -> None:
    refresh(world, alpha=["a1"], beta=["b1"])
    refuse_writes_of(world.client, "beta", "ValidationException")
    result = refresh(world, alpha=["a1", "a2"], beta=["b1", "b2"])
    assert [c["provider_id"] for c in result["changed"]] == ["alpha"] and result["revision"] == 2
    assert result["failed"] == [{"provider_id": "beta", "reason": (
        "its models could not be stored (DynamoDB ValidationException: Item size has exceeded the maximum allowed "
        "size); keeping the last good list")}]
    models = world.fresh().service.list_models()["models"]
    assert [(m["provider_id"], m["id"]) for m in models] == [("alpha", "a1"), ("alpha", "a2"), ("beta", "b1")]
    assert journal(world, world.store.read_manifest().epoch)[2]["payload"] == result
    provider = {p["id"]: p for p in world.service.list_providers()["providers"]}["beta"]
    assert provider["last_error"].startswith("its models could not be stored")


def test_negative_control_a_storage_outage_fails_the_run_not_one_provider(world) -> None:
    refresh(world, alpha=["a1"], beta=["b1"])
    refuse_writes_of(world.client, "beta", "InternalServerError")
    with pytest.raises(ClientError):
        refresh(world, alpha=["a1", "a2"], beta=["b1", "b2"])
    assert world.store.read_manifest().revision == 1


def test_an_answer_over_the_limits_fails_alone(world) -> None:
    from chalicelib.core.domain import Model

    world.fetcher.catalog["beta"] = [Model(provider_id="beta", id="huge", display_name="x" * 600_000),
                                     Model(provider_id="beta", id="fine")]
    world.fetcher.set("alpha", "a1")
    result = world.service.refresh("all")
    assert [c["provider_id"] for c in result["changed"]] == ["alpha"]
    assert result["failed"] == [{"provider_id": "beta", "reason": (
        "1 of 2 models breaks the model field limits: model 'huge': display_name is 600,000 characters long, over "
        "the limit of 256; keeping the last good list")}]


def test_the_store_snapshot_still_unpacks_as_manifest_and_models(world) -> None:
    refresh(world, alpha=["a1"])
    manifest, models = CatalogStore(world.client, world.settings.tables.catalog).read_catalog()
    assert manifest.revision == 1 and [m["id"] for m in models["alpha"]] == ["a1"]


# -- the request path's budget: a large fan-out is handed to the scheduled tick -----------------------------------


def test_a_manual_refresh_with_more_connections_than_its_budget_hands_the_fan_out_to_the_tick(world, monkeypatch):
    from chalicelib import refresh as refresh_module

    monkeypatch.setattr(refresh_module, "INLINE_FANOUT_CONNECTIONS", 2)
    for connection_id in ("c1", "c2", "c3"):
        world.container.connections.add(connection_id)
    refresh(world, alpha=["a1"], beta=["b1"])
    assert world.frames == []  # the request did not fan out to 3 connections (its budget: 2)
    epoch = world.store.read_manifest().epoch
    assert [m["seq"] for m in world.container.journal.unpublished(epoch)] == [1]
    outcome = world.service.tick()  # the next scheduled tick (not due: it only repairs) delivers it at once
    assert outcome["ran"] is False
    assert sorted(connection for connection, frame in world.frames if frame["seq"] == 1) == ["c1", "c2", "c3"]
    assert world.container.journal.unpublished(epoch) == []


def test_negative_control_within_the_budget_the_request_fans_out_itself(world, monkeypatch):
    from chalicelib import refresh as refresh_module

    monkeypatch.setattr(refresh_module, "INLINE_FANOUT_CONNECTIONS", 3)
    for connection_id in ("c1", "c2", "c3"):
        world.container.connections.add(connection_id)
    refresh(world, alpha=["a1"], beta=["b1"])
    assert sorted(connection for connection, _ in world.frames) == ["c1", "c2", "c3"]
    assert world.container.journal.unpublished(world.store.read_manifest().epoch) == []
