"""Fault injection for the refresh engine (issue 8).

1. DynamoDB throttling / transient errors on every call site of a run (tests/faults.py ``SITES``), injected below
   botocore's retry handler on a client configured like production (``client_config()``): a fault that
   happens once is retried and the run succeeds; a fault that persists fails the run cleanly (no partial commit,
   no event, models identical, lock released) — or, past the commit, costs nothing committed. A reader checks
   the catalog after every write the run sends, so it sees every state the run passes through.
2. The refresh process SIGKILLed mid-commit (a subprocess against the embedded DynamoDB) while a reader thread
   keeps reading; the next run after the lease recovers and collects the orphaned chunks.
3. A provider storm (every provider 429 or hanging, real HTTP): the run ends at its deadline, every provider is
   failed with a reason, and the catalog gets no write at all.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import types
from typing import Any

import boto3
import pytest
from botocore.exceptions import BotoCoreError, ClientError
from botocore.retries.standard import ExponentialBackoff
from moto import mock_aws

import chalicelib.storage.catalog as store_module
from chalicelib.bootstrap import client_config
from chalicelib.core.domain import Model, RefreshResult, model_record
from chalicelib.core.manifest import Manifest
from chalicelib.errors import RefreshInProgress
from chalicelib.events import EventPublisher, Fanout
from chalicelib.refresh import LEASE_MARGIN_MS, RefreshEngine
from chalicelib.settings import TableNames
from chalicelib.storage.catalog import CatalogStore, manifest_item
from chalicelib.storage.commit import CatalogCommit
from chalicelib.storage.connections import ConnectionStore
from chalicelib.storage.journal import EventJournal
from chalicelib.storage.lock import LeaseLock
from chalicelib.storage.state import decode_state
from devstack.tables import create_tables
from tests.fakes.engine import CatalogWrites, FakeFetcher
from tests.faults import SITES, CatalogChecker, CatalogState, DynamoFaults, build_engine
from tests.stack import REPO

DEADLINE_MS = 5_000
LEASE_S = (DEADLINE_MS + LEASE_MARGIN_MS) / 1000

CONFIG = f"""
[model_catalog]
refresh_on_start = false
lock_wait_ms = 300
manual_run_deadline_ms = {DEADLINE_MS}

[[providers]]
id = "alpha"
name = "Alpha AI"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[providers]]
id = "beta"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[providers]]
id = "gamma"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
"""

# One run builds the "old" catalog (revision 1); a crashed run left orphaned chunks (ORPHAN) for the garbage
# collector. The faulted run then changes alpha (a model added, one removed) and beta (one model's context
# length) and leaves gamma.
OLD_MODELS = {"alpha": ["a1", "a2", "a3", "a4"], "beta": ["b1", "b2", "b3"], "gamma": ["g1"]}
OLD_GENERATION = "r00000001-t1"
ORPHAN = "r00000000-t0"
NEW_MODELS = {
    "alpha": [Model(provider_id="alpha", id=i, context_length=1000) for i in ("a2", "a3", "a4", "a5")],
    "beta": [Model(provider_id="beta", id="b1", context_length=2000)]
    + [Model(provider_id="beta", id=i, context_length=1000) for i in ("b2", "b3")],
    "gamma": [Model(provider_id="gamma", id="g1", context_length=1000)],
}
EXPECTED = {
    "revision": 2,
    "changed": [
        {"provider_id": "alpha", "provider_name": "Alpha AI", "added": ["a5"], "removed": ["a1"], "updated": [],
         "changes": []},
        {"provider_id": "beta", "provider_name": "beta", "added": [], "removed": [], "updated": ["b1"],
         "changes": [{"model_id": "b1", "field": "context_length", "before": 1000, "after": 2000}]},
    ],
    "unchanged": ["gamma"],
    "failed": [],
}
CONNECTIONS = ("conn-1", "conn-2")

# Retried by botocore's standard mode: throttling codes (400), 5xx, a dropped connection.
RETRIED_BY_BOTOCORE = ("throughput", "throttling", "internal", "reset")
# Faults the code retries itself, only where DynamoDB can answer them: a transaction or a lock write racing
# another transaction on the lock item, and BatchWriteItem handing writes back as unprocessed.
CODE_RETRIED = [("lock.acquire", "conflict"), ("commit", "conflict"), ("chunks.write", "unprocessed"),
                ("chunks.read", "unprocessed"), ("gc.delete", "conflict")]
RUN_SITES = [name for name, site in SITES.items() if site.stage != "first-run"]
# Persistent faults: one case per site, the kinds rotating over the sites, plus the code-retried ones.
ALWAYS_CASES = [(site, RETRIED_BY_BOTOCORE[(i + 2) % 4]) for i, site in enumerate(RUN_SITES)] + CODE_RETRIED


# -- the world ---------------------------------------------------------------------------------------------


class _TimeWithoutSleep:
    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        pass


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every retry decision real but skip the waiting (botocore's backoff, the store's own retry loops)."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    monkeypatch.setattr(store_module, "time", _TimeWithoutSleep())


@pytest.fixture
def aws():
    with mock_aws():
        yield


@pytest.fixture(scope="module")
def session() -> Any:
    """One boto3 session for the module: a client from a warm session costs ~20 ms instead of ~500 ms."""
    return boto3.session.Session(region_name="us-east-1")


def production_client(session: Any, **retries: Any) -> Any:
    """A DynamoDB client with the service's own config (standard retry mode, 5 attempts) unless overridden."""
    config = client_config()
    if retries:
        config = config.merge(type(config)(retries=retries))
    return session.client("dynamodb", config=config)


class World:
    """The engine wired like ``bootstrap`` (real store, lock, journal, commit, publisher, fan-out), a fake fetcher and
    send, a fake wall clock for leases and event claims, and no real sleeping in retries."""

    def __init__(self, client: Any, settings: Any, now: list[float]):
        tables = settings.tables
        clock = lambda: now[0]  # noqa: E731
        self.now = now
        self.client = client
        self.settings = settings
        self.fetcher = FakeFetcher()
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.store = CatalogStore(client, tables.catalog)
        self.lock = LeaseLock(client, tables.locks, clock=clock)
        self.journal = EventJournal(client, tables.events, clock=clock)
        self.connections = ConnectionStore(client, tables.connections)
        fanout = Fanout(self.connections, self._send, sleep=lambda seconds: None)
        self.publisher = EventPublisher(self.journal, fanout, keep=1)  # keep=1: every publish trims the journal
        commit = CatalogCommit(client, self.lock, self.store, self.journal, sleep=lambda seconds: None)
        self.engine = RefreshEngine(config=settings.config, deployment_id=settings.deployment_id, catalog=self.store,
                                    lock=self.lock, commit=commit, fetcher_factory=self.fetcher,
                                    publisher=self.publisher, clock=clock)

    def _send(self, connection_id: str, text: str) -> None:
        self.sent.append((connection_id, json.loads(text)))

    def serve(self, catalog: dict[str, list[Any]]) -> None:
        for provider_id, models in catalog.items():
            if models and isinstance(models[0], str):
                self.fetcher.set(provider_id, *models, context=1000)
            else:
                self.fetcher.catalog[provider_id] = models


def snapshot(client: Any, tables: TableNames) -> CatalogState:
    manifest, models = CatalogStore(client, tables.catalog).read_catalog()
    return CatalogState(manifest.revision, models)


def expected_new_state(old: CatalogState) -> CatalogState:
    return CatalogState(old.revision + 1, {pid: [model_record(m) for m in models] for pid, models in NEW_MODELS.items()})


def generations(client: Any, tables: TableNames, provider_id: str) -> set[str]:
    items = client.query(TableName=tables.catalog, KeyConditionExpression="pk = :pk",
                         ExpressionAttributeValues={":pk": {"S": f"MODELS#{provider_id}"}})["Items"]
    return {item["sk"]["S"].rsplit("#", 1)[0] for item in items}


def journal_items(client: Any, tables: TableNames, epoch: str) -> dict[int, dict[str, Any]]:
    items = client.query(TableName=tables.events, KeyConditionExpression="epoch = :e",
                         ExpressionAttributeValues={":e": {"S": epoch}})["Items"]
    return {int(item["seq"]["N"]): item for item in items}


@pytest.fixture
def scene(aws, fast_retries, make_settings, session):
    """The old catalog (revision 1) with orphaned chunks, two WebSocket connections, the engine serving the new
    models, a fault injector on the engine's client and a reader checking the catalog after every write."""
    settings = make_settings(CONFIG)
    setup_client = session.client("dynamodb")
    create_tables(setup_client, settings.tables)
    now = [1_700_000_000.0]
    setup = World(setup_client, settings, now)
    setup.serve(OLD_MODELS)
    setup.engine.run("all")
    for provider_id in ("alpha", "beta"):
        setup.store.write_generation(provider_id, ORPHAN, [{"id": "orphan"}])
    # ...by a run that then ended without storing its state (it crashed): the next run lists every provider's chunks
    setup.lock.release(setup.lock.try_acquire("crashed-run", 60_000))
    for connection_id in CONNECTIONS:
        setup.connections.add(connection_id)
    reader_client = session.client("dynamodb")
    old = snapshot(reader_client, settings.tables)
    assert old.revision == 1
    new = expected_new_state(old)
    checker = CatalogChecker(CatalogStore(reader_client, settings.tables.catalog),
                             EventJournal(reader_client, settings.tables.events), [old, new], concurrent=False)
    client = production_client(session)
    world = World(client, settings, now)
    world.serve(NEW_MODELS)
    faults = DynamoFaults(client, after_write=checker.check)
    return types.SimpleNamespace(world=world, faults=faults, checker=checker, old=old, new=new,
                                 reader=reader_client, tables=settings.tables, settings=settings,
                                 epoch=setup.store.read_manifest().epoch)


def run(world: World, **kwargs: Any) -> tuple[RefreshResult | None, BaseException | None]:
    try:
        return world.engine.run("all", **kwargs), None
    except Exception as error:
        return None, error


def assert_consistent(scene: Any, expect: CatalogState) -> None:
    scene.checker.check()  # the state the run left behind
    assert scene.checker.violations == [], scene.checker.violations
    assert snapshot(scene.reader, scene.tables) == expect
    events = journal_items(scene.reader, scene.tables, scene.epoch)
    assert max(events) == expect.revision  # one event per change, in the same commit (outbox)


def lock_holder(scene: Any) -> str | None:
    return LeaseLock(scene.reader, scene.tables.locks).read().owner


def delivered_seqs(world: World) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = {}
    for connection_id, message in world.sent:
        seqs.setdefault(connection_id, []).append(message["seq"])
    return seqs


# -- 1. DynamoDB faults on every call site -------------------------------------------------------------------


def test_the_scene_reaches_every_call_site(scene) -> None:
    """Guards the matrix below: a site the run never calls would make its cases pass vacuously."""
    result, error = run(scene.world)
    assert error is None and result.model_dump(mode="json") == EXPECTED
    assert set(scene.faults.calls) == set(RUN_SITES), set(RUN_SITES) - set(scene.faults.calls)
    assert [op for op, site in scene.faults.log if site is None] == [], scene.faults.log  # no call site unaccounted
    writes = [op for op, _ in scene.faults.log if op not in ("GetItem", "BatchGetItem", "Query", "Scan")]
    assert scene.checker.snapshots >= len(writes) - 1  # after every write but the last (checked below)
    assert_consistent(scene, scene.new)
    assert delivered_seqs(scene.world) == {c: [2] for c in CONNECTIONS}


@pytest.mark.parametrize("kind", RETRIED_BY_BOTOCORE)
def test_every_call_site_failing_once_is_retried(scene, kind: str) -> None:
    """Every call site of the run fails once (in one run: each request boundary is still checked)."""
    for site in RUN_SITES:
        scene.faults.arm(site, kind, times=1)
    result, error = run(scene.world)
    assert error is None, f"failing every call site once ({kind}) failed the run: {error!r}"
    assert scene.faults.injected == dict.fromkeys(RUN_SITES, 1)
    assert_success(scene, result)


@pytest.mark.parametrize(("site", "kind"), CODE_RETRIED)
def test_a_fault_once_that_the_code_retries(scene, site: str, kind: str) -> None:
    scene.faults.arm(site, kind, times=1)
    result, error = run(scene.world)
    assert error is None, f"{site} failing once ({kind}) failed the run: {error!r}"
    assert scene.faults.injected == {site: 1} and scene.faults.calls[site] >= 2
    assert_success(scene, result)


def assert_success(scene: Any, result: RefreshResult) -> None:
    assert result.model_dump(mode="json") == EXPECTED
    assert_consistent(scene, scene.new)
    assert lock_holder(scene) is None
    assert delivered_seqs(scene.world) == {c: [2] for c in CONNECTIONS}
    assert journal_items(scene.reader, scene.tables, scene.epoch)[2]["published"] == {"BOOL": True}


@pytest.mark.parametrize(("site", "kind"), ALWAYS_CASES)
def test_a_persistent_fault_fails_cleanly_or_costs_nothing_committed(scene, site: str, kind: str) -> None:
    scene.faults.arm(site, kind, times=None)
    result, error = run(scene.world)
    assert scene.faults.injected.get(site, 0) >= 1
    stage = SITES[site].stage
    if stage in ("before-commit", "commit"):
        assert result is None and isinstance(error, ClientError | BotoCoreError | RuntimeError | RefreshInProgress)
        assert_consistent(scene, scene.old)  # no partial commit, no event, the old models intact
        assert lock_holder(scene) is None, "the lock was not released after the failed run"
        assert scene.world.sent == []
        recover_and_collect_orphans(scene)
    elif stage == "release":
        # Committed: the change must stand. The lock stays taken until its lease expires.
        assert error is None or isinstance(error, ClientError | BotoCoreError)
        if result is not None:
            assert result.model_dump(mode="json") == EXPECTED
        assert_consistent(scene, scene.new)
        scene.faults.disarm()
        assert lock_holder(scene) is not None
        with pytest.raises(RefreshInProgress):
            scene.world.engine.run("all")
        scene.world.now[0] += LEASE_S + 1
        after, error = run(scene.world)
        assert error is None and after.revision == 2 and after.unchanged == ["alpha", "beta", "gamma"]
        assert lock_holder(scene) is None
        # The event is not lost either: if the failed release skipped the fan-out, the tick's republish sends it.
        scene.world.now[0] += 121
        scene.world.publisher.publish_pending(scene.epoch)
        assert delivered_seqs(scene.world) == {c: [2] for c in CONNECTIONS}
    else:  # after the commit: the run reports its result, the change stands, the lock is free
        assert error is None, f"{site} failing after the commit failed the run: {error!r}"
        assert result.model_dump(mode="json") == EXPECTED
        assert_consistent(scene, scene.new)
        assert lock_holder(scene) is None
        check_the_event_reaches_clients(scene, site)


def recover_and_collect_orphans(scene: Any) -> None:
    """The next clean run commits the change and deletes the chunks the failed run left (never committed)."""
    scene.faults.disarm()
    result, error = run(scene.world)
    assert error is None and result.model_dump(mode="json") == EXPECTED
    assert_consistent(scene, scene.new)
    manifest = CatalogStore(scene.reader, scene.tables.catalog).read_manifest()
    for provider_id in ("alpha", "beta"):
        kept = {manifest.providers[provider_id].generation, OLD_GENERATION}
        assert generations(scene.reader, scene.tables, provider_id) == kept


def check_the_event_reaches_clients(scene: Any, site: str) -> None:
    """A failed fan-out leaves the event pending in the journal; the scheduled tick's republish delivers it."""
    published = journal_items(scene.reader, scene.tables, scene.epoch)[2]["published"]["BOOL"]
    if site == "connections.scan":
        assert scene.world.sent == [] and published is False
        scene.faults.disarm()
        scene.world.now[0] += 121  # the first publisher's claim on the event expires
        assert scene.world.publisher.publish_pending(scene.epoch) == 1
        published = journal_items(scene.reader, scene.tables, scene.epoch)[2]["published"]["BOOL"]
    assert delivered_seqs(scene.world) == {c: [2] for c in CONNECTIONS}
    assert published is (site != "journal.mark")  # unmarked: the tick sends it again (clients dedupe by seq)


@pytest.mark.parametrize(("kind", "times", "applied"), [("throughput", 1, False), ("internal", 1, True),
                                                      ("reset", None, False)])
def test_the_first_run_creating_the_manifest(aws, fast_retries, make_settings, session, kind, times, applied) -> None:
    """The one call site only a brand-new catalog has: creating its empty manifest (a conditional put)."""
    settings = make_settings(CONFIG)
    client = production_client(session)
    create_tables(client, settings.tables)
    world = World(client, settings, [1_700_000_000.0])
    world.serve(NEW_MODELS)
    faults = DynamoFaults(client)
    faults.arm("manifest.create", kind, times=times, applied=applied)
    result, error = run(world)
    assert faults.injected["manifest.create"] >= 1
    if times is None:  # nothing was written, and the next run creates the catalog
        assert isinstance(error, BotoCoreError) and LeaseLock(client, settings.tables.locks).read().owner is None
        assert client.scan(TableName=settings.tables.catalog)["Items"] == []
        faults.disarm()
        result, error = run(world)
    assert error is None and result.revision == 1 and len(result.changed) == 3


def test_without_retries_a_single_fault_fails_the_run(aws, fast_retries, make_settings, session) -> None:
    """Negative control: the retry config, not luck, is what carries the runs above through one fault."""
    settings = make_settings(CONFIG)
    client = production_client(session, mode="standard", total_max_attempts=1)
    create_tables(client, settings.tables)
    world = World(client, settings, [1_700_000_000.0])
    world.serve(NEW_MODELS)
    faults = DynamoFaults(client)
    faults.arm("manifest.read", "throughput", times=1)
    _, error = run(world)
    assert isinstance(error, ClientError) and error.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert faults.calls["manifest.read"] == 1


# -- lost responses: the write happened, the caller got an error -----------------------------------------------

APPLIED_CASES = ["lock.acquire", "chunks.write", "commit", "gc.delete", "lock.release", "journal.claim", "journal.mark"]


@pytest.mark.parametrize("site", APPLIED_CASES)
def test_a_lost_response_is_retried_safely(scene, site: str) -> None:
    """DynamoDB may apply a write and still answer 500 (or the connection drops): the retry must be harmless."""
    scene.faults.arm(site, "internal", times=1, applied=True)
    result, error = run(scene.world)
    assert error is None, f"{site} applied-then-500 failed the run: {error!r}"
    assert result.model_dump(mode="json") == EXPECTED
    assert_consistent(scene, scene.new)
    assert lock_holder(scene) is None
    if site == "journal.claim" and not scene.world.sent:
        # Known gap (test_a_lost_claim_response_still_fans_out_at_once): the retried claim finds the event
        # claimed (by this very publisher) and skips it; it goes out once the claim expires, at the next tick.
        scene.world.now[0] += 121
        assert scene.world.publisher.publish_pending(scene.epoch) == 1
    assert delivered_seqs(scene.world) == {c: [2] for c in CONNECTIONS}
    if site == "commit":  # idempotent only because botocore re-sends the same ClientRequestToken
        tokens = scene.faults.tokens["commit"]
        assert len(tokens) == 2 and tokens[0] == tokens[1]


def test_a_lost_claim_response_still_fans_out_at_once(scene) -> None:
    scene.faults.arm("journal.claim", "internal", times=1, applied=True)
    result, error = run(scene.world)
    assert error is None and result.revision == 2
    assert delivered_seqs(scene.world) == {c: [2] for c in CONNECTIONS}


# -- negative controls for the reader check ---------------------------------------------------------------------


class SplitCommit(CatalogCommit):
    """A broken commit: flips the manifest for one provider first, then commits the rest (two writes)."""

    def write(self, lease: Any, state: bytes, manifest: Manifest, expected_revision: int, event: Any,
              repaired: Any = frozenset()) -> None:
        old = self._catalog.read_manifest()
        first = sorted(p for p in manifest.providers if manifest.providers[p] != old.providers.get(p))[0]
        half = Manifest(manifest.revision, old.epoch, old.seq, {**old.providers, first: manifest.providers[first]})
        self._client.put_item(TableName=self._catalog.table, Item=manifest_item(half))
        super().write(lease, state, manifest, half.revision, event, repaired)


class EventAfterCommit(CatalogCommit):
    """A broken commit: commits the change, then writes the event separately (no outbox)."""

    def write(self, lease: Any, state: bytes, manifest: Manifest, expected_revision: int, event: Any,
              repaired: Any = frozenset()) -> None:
        actions = self.actions(lease, state, manifest, expected_revision, event, repaired)
        self._client.transact_write_items(TransactItems=[actions["fence"], actions["manifest"]])
        self._client.transact_write_items(TransactItems=[actions["journal"]])


@pytest.mark.parametrize(("broken_commit", "symptom"), [(SplitCommit, "different model lists ['beta']"),
                                                        (EventAfterCommit, "outside the journal")])
def test_negative_control_the_reader_check_catches_a_split_commit(scene, broken_commit, symptom: str) -> None:
    world = scene.world
    world.engine._commit = broken_commit(world.client, world.lock, world.store, world.journal)
    result, error = run(world)
    assert error is None and result.revision == 2
    assert any(symptom in violation for violation in scene.checker.violations), scene.checker.violations


# -- 2. the refresh process killed mid-commit ------------------------------------------------------------------

KILL_DEADLINE_MS = 1_000
KILL_LEASE_MARGIN_MS = 14_000  # the child's lease: 15 s (LEASE_MARGIN_MS is 30 s in production)
KILL_LEASE_S = (KILL_DEADLINE_MS + KILL_LEASE_MARGIN_MS) / 1000
KILL_CHUNK_BYTES = 1_500  # ~10 models per chunk: alpha's 400 models span two BatchWriteItem calls
KILL_OLD = {"alpha": [f"a{i:04d}" for i in range(400)], "beta": [f"b{i:04d}" for i in range(60)],
            "gamma": [f"g{i:04d}" for i in range(10)]}
KILL_NEW = {"alpha": [f"a{i:04d}" for i in range(10, 410)], "beta": [f"b{i:04d}" for i in range(65)],
            "gamma": KILL_OLD["gamma"]}
KILL_POINTS = {
    # where the child dies → whether its change was committed
    "before:BatchWriteItem:2:MODELS#alpha": False,  # alpha's new chunks half written (beta's in parallel: any)
    "before:TransactWriteItems": False,  # every new chunk written, the manifest not flipped
    "after:TransactWriteItems": True,  # committed; never released the lock, never collected, never fanned out
}


@pytest.fixture(scope="module")
def embedded_dynamo():
    from tests.stack import EmbeddedDynamo

    with EmbeddedDynamo() as server:
        yield server


def kill_config(tmp_path: Any) -> Any:
    path = tmp_path / "kill.toml"
    providers = "".join(f'\n[[providers]]\nid = "{pid}"\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
                        for pid in KILL_OLD)
    path.write_text(f"[model_catalog]\nrefresh_on_start = false\nmanual_run_deadline_ms = {KILL_DEADLINE_MS}\n"
                    + providers)
    return path


def expected_state(revision: int, catalog: dict[str, list[str]]) -> CatalogState:
    from tests.faults import JsonFileFetcher

    fetcher = JsonFileFetcher.__new__(JsonFileFetcher)
    fetcher._catalog = catalog
    return CatalogState(revision, {pid: fetcher.fetch(types.SimpleNamespace(id=pid), 0)
                                   for pid in sorted(catalog)})


@pytest.mark.parametrize("kill_at", list(KILL_POINTS))
def test_a_run_killed_mid_commit_is_recovered_and_no_reader_sees_a_half_state(
    embedded_dynamo, tmp_path, kill_at: str
) -> None:
    from tests.faults import JsonFileFetcher, ReaderThread
    from tests.stack import isolated_env

    prefix = "kill-" + kill_at.replace(":", "-").lower()
    tables = TableNames(*(f"{prefix}-{role}" for role in ("catalog", "locks", "connections", "events")))
    client = embedded_dynamo.client(retries=client_config().retries)
    create_tables(client, tables)
    env = {
        "MODEL_CATALOG_CONFIG": str(kill_config(tmp_path)),
        "MODEL_CATALOG_ALLOW_PRIVATE_URLS": "1",
        "MODEL_CATALOG_DEPLOYMENT_ID": "kill-test",
        "MODEL_CATALOG_DYNAMODB_ENDPOINT": embedded_dynamo.endpoint,
        "MODEL_CATALOG_CATALOG_TABLE": tables.catalog,
        "MODEL_CATALOG_LOCKS_TABLE": tables.locks,
        "MODEL_CATALOG_CONNECTIONS_TABLE": tables.connections,
        "MODEL_CATALOG_EVENTS_TABLE": tables.events,
    }
    from chalicelib.settings import settings_from_env

    settings = settings_from_env(env)
    old_file, new_file = tmp_path / "old.json", tmp_path / "new.json"
    old_file.write_text(json.dumps(KILL_OLD))
    new_file.write_text(json.dumps(KILL_NEW))

    def engine(models_file: Any, clock: Any = time.time) -> RefreshEngine:
        store = CatalogStore(client, tables.catalog, chunk_bytes=KILL_CHUNK_BYTES)
        return build_engine(settings, client, JsonFileFetcher(str(models_file)), store=store, clock=clock)

    assert engine(old_file).run("all").revision == 1
    old, new = expected_state(1, KILL_OLD), expected_state(2, KILL_NEW)
    reader_client = embedded_dynamo.client()
    checker = CatalogChecker(CatalogStore(reader_client, tables.catalog), EventJournal(reader_client, tables.events),
                             [old, new])
    reader = ReaderThread(checker, pause_s=0.005)
    reader.start()
    try:
        child = subprocess.run(
            [sys.executable, "-m", "tests.faults"],
            cwd=str(REPO), capture_output=True, text=True, timeout=60,
            env=isolated_env({**env, "FAULTS_MODELS_FILE": str(new_file), "FAULTS_KILL_AT": kill_at,
                              "FAULTS_CHUNK_BYTES": str(KILL_CHUNK_BYTES),
                              "FAULTS_LEASE_MARGIN_MS": str(KILL_LEASE_MARGIN_MS)}),
        )
        assert child.returncode == -9, f"the child was not killed at {kill_at}: {child.returncode}\n{child.stderr}"
        assert "FAULTS_CHILD_STARTED" in child.stdout and "FAULTS_CHILD_RESULT" not in child.stdout
        committed = KILL_POINTS[kill_at]
        checker.check()
        assert checker.seen[-1] == (2 if committed else 1)
        left = chunk_counts(client, tables, "alpha")  # what the child left behind, per generation
        assert len(left) == 2, left

        # The dead child still holds the lock: nobody may write until its lease expires...
        with pytest.raises(RefreshInProgress):
            engine(new_file).run("all", wait_ms=0)
        # (a clock past the child's lease stands in for waiting it out: the lock compares the caller's time)
        recovery = engine(new_file, clock=lambda: time.time() + KILL_LEASE_S + 1)
        # ...then the next run after the lease gets in, and finishes the change or finds it committed.
        result = recovery.run("all", wait_ms=0)
        checker.check()
    finally:
        reader.stop(at_least=10)
    assert checker.violations == [], checker.violations[:5]
    assert checker.snapshots >= 10 and set(checker.seen) == {1, 2}, "the reader did not see the run happen"
    assert result.revision == 2
    if committed:
        assert result.changed == [] and result.unchanged == ["alpha", "beta", "gamma"]
    else:
        assert [c.provider_id for c in result.changed] == ["alpha", "beta"]
        assert result.changed[0].added == [f"a{i:04d}" for i in range(400, 410)]
    assert snapshot(reader_client, tables) == new
    manifest = CatalogStore(reader_client, tables.catalog).read_manifest()
    full = manifest.providers["alpha"].chunks
    assert full > 25  # so that alpha's chunks take two BatchWriteItem calls
    child_chunks = next(count for generation, count in left.items() if generation != "r00000001-t1")
    # the chunks the change needs (the others are kept from revision 1), written by the child and again by the recovery
    new_chunks = len([ref for ref in manifest.providers["alpha"].parts if not ref.key.startswith("r00000001-t1#")])
    assert child_chunks == (25 if kill_at.startswith("before:BatchWriteItem") else new_chunks) and new_chunks > 25
    for provider_id in ("alpha", "beta"):  # the orphaned chunks of the killed run are collected
        assert generations(client, tables, provider_id) == {manifest.providers[provider_id].generation, "r00000001-t1"}
    events = journal_items(client, tables, manifest.epoch)
    assert sorted(events) == [1, 2]  # exactly one event for the change, whichever run committed it
    if committed:  # nobody fanned it out: it waits in the journal, and the tick's republish sends it
        assert events[2]["published"] == {"BOOL": False}
        sent: list[str] = []
        publisher = EventPublisher(EventJournal(client, tables.events),
                                   Fanout(ConnectionStore(client, tables.connections), lambda c, text: sent.append(text)))
        ConnectionStore(client, tables.connections).add("conn-1")
        assert publisher.publish_pending(manifest.epoch) == 2  # the setup run (no publisher) left seq 1 pending
        assert [json.loads(text)["seq"] for text in sent] == [1, 2]


def chunk_counts(client: Any, tables: TableNames, provider_id: str) -> dict[str, int]:
    items = client.query(TableName=tables.catalog, KeyConditionExpression="pk = :pk",
                         ExpressionAttributeValues={":pk": {"S": f"MODELS#{provider_id}"}})["Items"]
    counts: dict[str, int] = {}
    for item in items:
        generation = item["sk"]["S"].rsplit("#", 1)[0]
        counts[generation] = counts.get(generation, 0) + 1
    return counts


# -- 3. a provider storm ------------------------------------------------------------------------------------

STORM_PROVIDERS = 10
STORM_DEADLINE_MS = 2_000
STORM_MARGIN_S = 5.0  # a bound, not a speed goal: thread start-up, the manifest read and the release
_LIMITED = {"status": 429, "json": {"error": {"message": "rate limited"}}, "headers": {"Retry-After": "1"}}
_LIMITED_LONG = {"status": 429, "json": {"error": {"message": "slow down"}}, "headers": {"Retry-After": "120"}}
_HANG = {"json": {"data": []}, "delay": 60}
# storm → provider index → (what the provider does, a regular expression its failure reason must match)
STORMS = {
    "429 + Retry-After: 1": lambda i: (_LIMITED, r"^rate limited \(HTTP 429\) and still limited at the deadline"),
    "429 + Retry-After: 120": lambda i: (_LIMITED_LONG, r"^rate limited \(HTTP 429\); the provider asks to wait 120 s"),
    "hang": lambda i: (_HANG, r"^timed out after [0-9.]+ s \(the refresh deadline\)$"),
    "half 429, half hang": lambda i: STORMS["429 + Retry-After: 1" if i % 2 else "hang"](i),
}


def openai_models(prefix: str, count: int) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": f"{prefix}-{n}", "object": "model", "owned_by": "fake"}
                                        for n in range(count)]}


@pytest.mark.parametrize("storm", list(STORMS))
def test_a_provider_storm_is_bounded_by_the_deadline_and_leaves_the_catalog_untouched(
    aws, make_settings, session, storm: str
) -> None:
    from chalicelib.providers import ProviderFetcher
    from tests.fakes.provider_server import FakeProviderServer

    with FakeProviderServer() as server:
        providers = "".join(
            f'\n[[providers]]\nid = "p{i}"\nkind = "openai"\nbase_url = "{server.url}/p{i}/v1"\ntimeout_ms = 60000\n'
            for i in range(STORM_PROVIDERS)
        )
        settings = make_settings(f"[model_catalog]\nmanual_run_deadline_ms = {STORM_DEADLINE_MS}\n{providers}")
        client = production_client(session)
        create_tables(client, settings.tables)
        engine = build_engine(settings, client, lambda: ProviderFetcher(settings))
        for i in range(STORM_PROVIDERS):
            server.route("GET", f"/p{i}/v1/models", json=openai_models(f"p{i}", 3))
        assert len(engine.run("all").changed) == STORM_PROVIDERS
        before = snapshot(client, settings.tables)

        for i in range(STORM_PROVIDERS):
            server.route("GET", f"/p{i}/v1/models", **STORMS[storm](i)[0])
        writes = CatalogWrites(client, settings.tables.catalog)
        started = time.monotonic()
        result = engine.run("all")
        elapsed = time.monotonic() - started

        assert elapsed <= STORM_DEADLINE_MS / 1000 + STORM_MARGIN_S, f"the run took {elapsed:.1f} s"
        assert result.changed == [] and result.unchanged == []
        assert [f.provider_id for f in result.failed] == sorted(f"p{i}" for i in range(STORM_PROVIDERS))
        for failure in result.failed:
            assert re.search(STORMS[storm](int(failure.provider_id[1:]))[1], failure.reason), failure.reason
        assert writes.count == 0
        assert snapshot(client, settings.tables) == before
        lock = LeaseLock(client, settings.tables.locks)
        statuses = decode_state(lock.read().state).providers
        assert all(statuses[f"p{i}"].last_error for i in range(STORM_PROVIDERS))
        assert lock.read().owner is None
        for i in range(STORM_PROVIDERS):  # each provider was asked again, and a 429 was not hammered
            assert 1 <= len(server.requests(f"/p{i}/v1/models")) - 1 <= 4
