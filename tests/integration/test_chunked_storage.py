"""Cost follows the change, against moto (chalicelib.storage.catalog, chalicelib.refresh):

- a change in one place of a large list reads and writes a few chunks, not the list; an unchanged refresh reads
  nothing but the manifest and a bounded sample of chunks, however many providers there are;
- a lost chunk is found by the rotating sample even if no reader reads it, and at once when a reader asks;
- garbage collection keeps exactly the current and the previous list; a run that did not finish has its leftovers
  collected by the next one;
- catalogs stored in the one-generation layout of versions 1 and 2 keep working and move to chunk refs on their
  next change.
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.core.domain import Model, model_record, models_fingerprint
from chalicelib.core.manifest import Manifest, ProviderEntry
from chalicelib.refresh import CHECKED_CHUNKS_PER_RUN
from chalicelib.storage import codec
from chalicelib.storage.catalog import manifest_item
from chalicelib.storage.lock import LeaseLock
from tests.bench.common import item_size
from tests.integration.test_reliability import build, chunks_of

CONFIG = """
[model_catalog]
refresh_on_start = false
shrink_threshold = 0.9

[[providers]]
id = "big"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[providers]]
id = "small"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
"""


class Calls:
    """The catalog-table DynamoDB calls of a client: operation, and the chunk keys read or written."""

    def __init__(self, client: Any, table: str):
        self.table = table
        self.log: list[tuple[str, int]] = []
        client.meta.events.register("before-parameter-build.dynamodb.*", self._note)  # ``params``: the call's own

    def _note(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        items = params.get("RequestItems", {}).get(self.table)
        if model.name == "BatchGetItem" and items:
            self.log.append(("read", len(items["Keys"])))
        elif model.name == "BatchWriteItem" and items:
            self.log.append(("write", len(items)))
        elif model.name == "TransactWriteItems":
            mine = [a for a in params["TransactItems"] for body in a.values() if body.get("TableName") == self.table]
            if mine:
                self.log.append((model.name, len(mine)))
        elif params.get("TableName") == self.table:
            self.log.append((model.name, 1))

    def count(self, kind: str) -> int:
        return sum(n for name, n in self.log if name == kind)

    def reset(self) -> None:
        self.log.clear()


@pytest.fixture
def world(dynamodb_client, make_settings):
    now = [1_700_000_000.0]
    world = build(dynamodb_client, make_settings(CONFIG), now)
    world.now = now
    world.fresh = lambda: build(dynamodb_client, world.settings, now)
    world.calls = Calls(dynamodb_client, world.settings.tables.catalog)
    return world


def serve(world: Any, big: list[str], small: list[str] | None = None, context: int = 1000) -> None:
    world.fetcher.set("big", *big, context=context)
    world.fetcher.set("small", *(small or ["s1"]))


def ids(prefix: str, start: int, stop: int) -> list[str]:
    return [f"{prefix}{n:06d}" for n in range(start, stop)]


def models_of(world: Any, provider_id: str) -> list[str]:
    return [m["id"] for m in world.fresh().service.list_models(provider_id)["models"]]


def test_a_change_in_one_place_of_a_large_list_reads_and_writes_a_few_chunks(world) -> None:
    serve(world, ids("m", 0, 6_000))
    world.service.refresh("all")
    chunks = world.store.read_manifest().providers["big"].chunks
    assert chunks > 10
    serve(world, ids("m", 100, 6_000) + ids("n", 0, 100))  # 100 removed at the start, 100 added at the end
    world.calls.reset()
    cold = world.fresh()  # a cold process: no chunk cached
    cold.fetcher.catalog = world.fetcher.catalog
    cold.calls = Calls(cold.client, world.settings.tables.catalog)
    result = cold.service.refresh("all")
    assert result["changed"][0]["added"] == ids("n", 0, 100) and result["changed"][0]["removed"] == ids("m", 0, 100)
    read, written = cold.calls.count("read"), cold.calls.count("write")
    assert read <= 2 + CHECKED_CHUNKS_PER_RUN and written <= 3, (read, written, chunks)
    assert models_of(world, "big") == ids("m", 100, 6_000) + ids("n", 0, 100)


def test_negative_control_the_same_change_in_the_one_generation_layout_reads_and_writes_every_chunk(world) -> None:
    """What chunk refs avoid: a list stored in the layout of versions 1 and 2 is read and written whole."""
    store_legacy(world, "big", ids("m", 0, 6_000))
    chunks = world.store.read_manifest().providers["big"].chunks
    serve(world, ids("m", 100, 6_000) + ids("n", 0, 100))
    cold = world.fresh()
    cold.fetcher.catalog = world.fetcher.catalog
    cold.calls = Calls(cold.client, world.settings.tables.catalog)
    cold.service.refresh("all")
    assert cold.calls.count("read") >= chunks and cold.calls.count("write") >= chunks


def test_an_unchanged_refresh_reads_the_manifest_and_a_few_chunks_however_many_providers(world) -> None:
    serve(world, ids("m", 0, 6_000), ids("s", 0, 500))
    world.service.refresh("all")
    for process in (world, world.fresh()):  # warm (chunks cached) and cold alike
        process.fetcher.catalog = world.fetcher.catalog
        calls = Calls(process.client, world.settings.tables.catalog)
        assert process.service.refresh("all")["changed"] == []
        assert calls.count("read") <= CHECKED_CHUNKS_PER_RUN
        assert [name for name, _ in calls.log if name not in ("read", "GetItem")] == []  # no query, no write


def lose_chunk(world: Any, provider_id: str, index: int = 0) -> str:
    key = world.store.read_manifest().providers[provider_id].chunk_keys()[index]
    world.client.delete_item(TableName=world.settings.tables.catalog,
                             Key={"pk": {"S": f"MODELS#{provider_id}"}, "sk": {"S": key}})
    return key


def repairs_asked(world: Any) -> frozenset[str]:
    return LeaseLock(world.client, world.settings.tables.locks).read().repairs


def test_a_reader_that_finds_a_list_broken_asks_the_next_refresh_to_write_it_again(world, monkeypatch) -> None:
    monkeypatch.setattr("chalicelib.refresh.CHECKED_CHUNKS_PER_RUN", 0)  # only the reader's request can heal it
    serve(world, ids("m", 0, 3_000))
    world.service.refresh("all")
    lose_chunk(world, "big", 3)
    assert world.service.refresh("all")["changed"] == []  # the loss is not noticed yet: nobody read it
    body = world.fresh().service.list_models()
    assert body["unavailable"][0]["provider_id"] == "big" and repairs_asked(world) == {"big"}
    assert world.service.refresh("all")["changed"] == []  # the same answer: a repair, no event
    assert models_of(world, "big") == ids("m", 0, 3_000) and repairs_asked(world) == frozenset()


def test_negative_control_without_the_readers_request_the_broken_list_stays_broken(world, monkeypatch) -> None:
    monkeypatch.setattr("chalicelib.refresh.CHECKED_CHUNKS_PER_RUN", 0)
    monkeypatch.setattr("chalicelib.storage.state.RefreshStateStore.request_repair", lambda self, ids: None)
    serve(world, ids("m", 0, 3_000))
    world.service.refresh("all")
    lose_chunk(world, "big", 3)
    world.fresh().service.list_models()
    for _ in range(3):
        world.service.refresh("all")
    assert "unavailable" in world.fresh().service.list_models()


def test_the_rotating_sample_finds_a_lost_chunk_nobody_reads(world) -> None:
    serve(world, ids("m", 0, 6_000))
    world.service.refresh("all")
    total = sum(entry.chunks for entry in world.store.read_manifest().providers.values())
    lost = lose_chunk(world, "big", total // 2)
    runs = total // CHECKED_CHUNKS_PER_RUN + 1  # every chunk is checked within total / 4 runs
    for _ in range(runs):
        world.service.refresh("all")
        if lost not in world.store.read_manifest().providers["big"].chunk_keys():
            break
    else:
        pytest.fail(f"a lost chunk was not found in {runs} runs over {total} chunks")
    body = world.fresh().service.list_models("big")
    assert "unavailable" not in body and [m["id"] for m in body["models"]] == ids("m", 0, 6_000)


def keys_stored(world: Any, provider_id: str) -> set[str]:
    return {item["sk"]["S"] for item in chunks_of(world, provider_id)}


def test_garbage_collection_keeps_exactly_the_current_and_the_previous_list(world) -> None:
    manifests = []
    for version in range(4):
        serve(world, ids("m", 0, 3_000), context=1000 + version)  # every model changes: every chunk is new
        world.service.refresh("all")
        manifests.append(world.store.read_manifest().providers["big"])
    current, previous = manifests[-1], manifests[-2]
    assert keys_stored(world, "big") == set(current.chunk_keys()) | set(previous.chunk_keys())
    assert set(current.retired) == set(previous.chunk_keys())


def test_a_run_that_did_not_finish_has_its_chunks_collected_by_the_next_one(world) -> None:
    serve(world, ids("m", 0, 600))
    world.service.refresh("all")
    crashed = world.container.lock.try_acquire("crashed-lambda", 60_000)
    orphan = world.store.write_generation("big", f"r00000002-t{crashed.token}", [{"id": "zz"}])
    world.now[0] += 61  # its lease expires; it never released nor stored its state
    world.service.refresh("all")  # unchanged: it collects the leftovers all the same
    assert not {ref.key for ref in orphan.refs} & keys_stored(world, "big")
    assert keys_stored(world, "big") == set(world.store.read_manifest().providers["big"].chunk_keys())


def test_a_run_that_fails_after_writing_chunks_deletes_them_itself(world, monkeypatch) -> None:
    serve(world, ids("m", 0, 600))
    world.service.refresh("all")
    before = keys_stored(world, "big")
    serve(world, ids("m", 0, 700))
    monkeypatch.setattr(world.engine._commit, "write", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("down")))
    with pytest.raises(RuntimeError):
        world.service.refresh("all")
    assert keys_stored(world, "big") == before
    monkeypatch.undo()
    world.calls.reset()
    world.service.refresh("all")
    assert world.calls.count("Query") == 0  # it stored its state: the next run sees nothing unfinished to list


# -- catalogs stored by versions 1 and 2 ---------------------------------------------------------------------


def store_legacy(
    world: Any, provider_id: str, model_ids: list[str], generation: str = "r00000001-t1", context: int | None = 1000
) -> None:
    """A provider's list as versions 1 and 2 stored it: chunks ``<generation>#00000…``, a manifest entry without
    chunk refs."""
    records = [model_record(Model(provider_id=provider_id, id=i, context_length=context)) for i in model_ids]
    table = world.settings.tables.catalog
    chunks = [records[i : i + 500] for i in range(0, len(records), 500)]
    for index, chunk in enumerate(chunks):
        world.client.put_item(TableName=table, Item={
            "pk": {"S": f"MODELS#{provider_id}"}, "sk": {"S": f"{generation}#{index:05d}"},
            "body": {"B": codec.pack(chunk)}})
    manifest = world.store.read_manifest()
    entry = ProviderEntry(generation, len(chunks), len(records), models_fingerprint(records))
    new = Manifest(manifest.revision or 1, manifest.epoch, manifest.seq, {**manifest.providers, provider_id: entry})
    world.client.put_item(TableName=table, Item=manifest_item(new))


def test_a_catalog_in_the_one_generation_layout_is_read_kept_and_moved_to_chunk_refs_on_its_next_change(world) -> None:
    store_legacy(world, "big", ids("m", 0, 1_200))
    store_legacy(world, "small", ["s1"], context=None)
    world.client.put_item(TableName=world.settings.tables.catalog, Item={  # a generation older than the current one
        "pk": {"S": "MODELS#big"}, "sk": {"S": "r00000000-t0#00000"}, "body": {"B": codec.pack([{"id": "old"}])}})
    assert models_of(world, "big") == ids("m", 0, 1_200)
    serve(world, ids("m", 0, 1_200), ["s1"])
    assert world.service.refresh("all")["changed"] == []  # recognized by its fingerprint: nothing written
    assert world.store.read_manifest().providers["big"].parts is None

    serve(world, ids("m", 0, 1_300), ["s1"])
    result = world.service.refresh("all")
    assert result["changed"][0]["added"] == ids("m", 1_200, 1_300) and result["unchanged"] == ["small"]
    entry = world.store.read_manifest().providers["big"]
    assert entry.parts is not None and set(entry.retired) == {f"r00000001-t1#{i:05d}" for i in range(3)}
    # the previous list stays for readers mid-way; the generation before it (never named by a manifest) is gone
    assert keys_stored(world, "big") == set(entry.chunk_keys()) | set(entry.retired)
    assert models_of(world, "big") == ids("m", 0, 1_300) and models_of(world, "small") == ["s1"]
    assert world.store.read_manifest().providers["small"].parts is None  # unchanged lists keep their layout


def test_the_manifest_stays_small_with_chunk_refs_for_100000_models(world) -> None:
    """Two providers at the 50,000-model limit each, every model changed twice (so each list has retired chunks)."""
    long_ids = [f"vendor-{n % 97:03d}/a-model-id-of-a-realistic-length-{n:06d}" for n in range(50_000)]
    for context in (1000, 2000):
        world.fetcher.set("big", *long_ids, context=context)
        world.fetcher.set("small", *(i + "-2" for i in long_ids), context=context)
        world.service.refresh("all")
    item = world.client.get_item(TableName=world.settings.tables.catalog,
                                 Key={"pk": {"S": "MANIFEST"}, "sk": {"S": "MANIFEST"}})["Item"]
    entries = world.store.read_manifest().providers.values()
    assert sum(entry.chunks for entry in entries) > 100 and all(entry.retired for entry in entries)
    assert item_size(item) < 60_000, item_size(item)  # DynamoDB's item limit is 400 KB
