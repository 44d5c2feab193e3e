"""The refresh engine: one module for scheduled and manual runs alike.

A run is a sequence; every decision in it is the pure plan's (``chalicelib.core.plan``):

    lease → fetch (concurrently, under the run's deadline) while reading the manifest, where the journal ends and a
    few stored chunks to check → read the stored chunks the plan needs → plan → write the new chunks → commit
    (fence + state, manifest flip, event) → collect garbage (fenced) → release (storing the state) → publish.

Nothing changed ⇒ no catalog write at all: the state is stored by the release. What a run costs follows what
changed, not the size of the catalog: an unchanged provider is judged by its fingerprint and costs no read; a
changed one costs the chunks that differ (read, diffed, written); stored lists are checked a few chunks per run, and
at once when a reader asks (``LeaseLock.request_repair``). A run that finds the previous one ended without storing
its state (a crash) lists every provider's chunks once, to delete what that run left.

One provider cannot fail the others: its answer is bounded (``chalicelib.core.limits``), and when writing its
chunks fails because of its data, it alone is moved to ``failed`` and the run is planned again (the plan is pure
and cheap). A stored list found missing or unreadable is written again even if the provider's models did not
change. The event's ``(epoch, seq)`` follows ``chalicelib.core.epoch``: a journal that disagrees with the manifest
(a table restored from a backup) starts a new epoch instead of wedging or reusing a seq.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from chalicelib.core.chunking import ChunkRef, ListWrite
from chalicelib.core.domain import ModelRecord, RefreshResult, Scope, Trigger
from chalicelib.core.epoch import after_collision, next_cursor
from chalicelib.core.limits import records_violation
from chalicelib.core.manifest import Manifest
from chalicelib.core.overrides import apply_overrides
from chalicelib.core.plan import (
    FetchOutcome,
    RefreshPlan,
    chunks_to_check,
    lists_to_read,
    plan_refresh,
    select_providers,
    stored_chunks_to_read,
)
from chalicelib.errors import ProviderError, SeqCollision
from chalicelib.logs import get_logger
from chalicelib.storage.catalog import CatalogStore, FenceLost, StaleRead, UnreadableChunks, new_epoch_id
from chalicelib.storage.commit import CatalogCommit
from chalicelib.storage.dynamo import error_code
from chalicelib.storage.lock import Lease, LeaseLock, new_owner_id
from chalicelib.storage.state import decode_state, encode_state

if TYPE_CHECKING:
    from chalicelib.catalog_config import CatalogConfig, ProviderConfig

log = get_logger("refresh")

LEASE_MARGIN_MS = 30_000  # time to diff, write chunks and commit after the fetch deadline
# A manual refresh fans out inline only this far: 32 senders at ~30 ms a send reach ~1,000 connections/s, so 1,000
# take about 1 s of the request's INLINE_FANOUT_BUDGET_MS (3 s, chalicelib.catalog_config). Past it, the event
# stays pending and the scheduled tick (every minute deployed) delivers it.
INLINE_FANOUT_CONNECTIONS = 1_000
# Per-provider catalog reads and clean-ups in flight at once (they are independent round trips).
STORE_CONCURRENCY = 8
# Stored chunks each run reads back to find a lost or damaged one nobody has read (``core.plan.chunks_to_check``).
CHECKED_CHUNKS_PER_RUN = 4


@dataclass
class _Prepared:
    """What a run reads from the catalog while the providers are being fetched."""

    manifest: Manifest
    journaled: int | None  # the newest seq the journal holds for the manifest's epoch
    broken: dict[str, str]  # providers whose stored list was found missing or unreadable, and why
    intact: frozenset[str]  # providers readers asked to repair whose whole list was read back intact


@dataclass
class _Writes:
    """The chunk keys a run stored (``done``) and tried to store (``tried``: what to delete if it is not committed)."""

    done: dict[str, set[str]] = field(default_factory=dict)
    tried: dict[str, set[str]] = field(default_factory=dict)


class Fetcher(Protocol):
    """One run's provider client: ``fetch`` returns a provider's normalized records (sorted by id, unique)."""

    def fetch(self, provider: ProviderConfig, deadline: float) -> Sequence[ModelRecord]: ...
    def close(self) -> None: ...


class Publisher(Protocol):
    def publish(self, message: dict[str, Any], max_connections: int | None = None) -> Any: ...


class RefreshEngine:
    def __init__(
        self,
        *,
        config: CatalogConfig,
        deployment_id: str,
        catalog: CatalogStore,
        lock: LeaseLock,
        commit: CatalogCommit,
        fetcher_factory: Callable[[], Fetcher],
        publisher: Publisher | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self._config = config
        self._deployment_id = deployment_id
        self._catalog = catalog
        self._lock = lock
        self._commit = commit
        self._fetcher_factory = fetcher_factory
        self._publisher = publisher
        self._clock = clock
        self._fetch_pool: ThreadPoolExecutor | None = None  # created by the first run that fetches
        self._fetch_pool_lock = threading.Lock()

    def run(
        self,
        scope: Scope,
        provider_id: str | None = None,
        trigger: Trigger = "manual",
        wait_ms: int | None = None,
        after_acquire: Callable[[Lease], bool] | None = None,
    ) -> RefreshResult | None:
        """Refresh the providers in ``scope``. ``after_acquire`` may veto the run once the lock is held (the
        scheduler re-checks due-ness there, which makes a duplicate scheduled event harmless)."""
        options = self._config.model_catalog
        providers = select_providers(self._config, scope, provider_id)
        deadline_ms = options.scheduled_run_deadline_ms if trigger == "scheduled" else options.manual_run_deadline_ms
        wait = options.lock_wait_ms if wait_ms is None else wait_ms
        lease = self._lock.acquire(new_owner_id(), deadline_ms + LEASE_MARGIN_MS, wait)
        event = None
        writes = _Writes()
        try:
            if after_acquire is not None and not after_acquire(lease):
                self._release_unchanged(lease)
                return None
            started = time.monotonic()
            deadline = started + deadline_ms / 1000
            plan, event, repaired, collect = self._run_locked(lease, providers, scope, trigger, deadline, writes)
            self._log_run(trigger, scope, started, plan)
        except BaseException:
            self._release_after_failure(lease, writes)  # keep the state the last good run stored
            raise
        # The event is committed: it goes out while this run collects its garbage and releases the lock.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish") as background:
            if event is not None and self._publisher is not None:
                background.submit(self._publish, event, trigger)
            collect()
            try:
                self._lock.release(lease, encode_state(plan.state), repaired)
            except Exception:
                if event is None:
                    raise
                # The change is committed: report it, and let the lease expire rather than fail the request.
                log.exception(
                    "lock release failed after the commit; it expires with its lease", extra={"token": lease.token}
                )
        return plan.result

    def _publish(self, event: dict[str, Any], trigger: Trigger) -> None:
        # A request answers within API Gateway's 29 s: it fans out to at most INLINE_FANOUT_CONNECTIONS itself.
        inline = None if trigger == "scheduled" else INLINE_FANOUT_CONNECTIONS
        try:
            self._publisher.publish(event, max_connections=inline)  # type: ignore[union-attr]
        except Exception:
            log.exception("fan-out failed; the event stays in the journal", extra={"seq": event["seq"]})

    def _run_locked(
        self,
        lease: Lease,
        providers: list[ProviderConfig],
        scope: Scope,
        trigger: Trigger,
        deadline: float,
        writes: _Writes,
    ) -> tuple[RefreshPlan, dict[str, Any] | None, frozenset[str], Callable[[], None]]:
        """The run under the lock: its plan, its event (None: nothing committed that clients hear of), the
        providers to take off the lock's repair requests, and the garbage collection to do before releasing."""
        # The fetches are handed out first; then this thread reads what does not wait for the answers while they
        # are away (reading before would put those round trips on the run's path).
        fetching = self._start_fetches(providers, deadline)
        try:
            prepared = self._prepare(lease)
        finally:
            outcomes = fetching()
        manifest = prepared.manifest
        broken = dict(prepared.broken)
        answers = {o.provider_id: o for o in outcomes if o.models is not None}
        wanted = [pid for pid in lists_to_read(manifest, outcomes, self._config, scope) if pid not in broken]
        reads = {
            pid: stored_chunks_to_read(manifest.providers[pid], answers[pid]) if pid in answers else None
            for pid in wanted
        }
        stored, unreadable = self._read_stored(manifest, reads)
        broken.update(unreadable)

        def decide(outcomes: Sequence[FetchOutcome]) -> RefreshPlan:
            return plan_refresh(
                manifest=manifest,
                state=decode_state(lease.state),
                outcomes=outcomes,
                stored=stored,
                config=self._config,
                scope=scope,
                trigger=trigger,
                now=self._clock(),
                deployment_id=self._deployment_id,
                lease_token=lease.token,
                broken=broken,
            )

        plan = decide(outcomes)
        while plan.writes_catalog:
            refused = self._write_lists(plan, writes)
            if not refused:
                break
            # Those providers' own data could not be stored: they alone fail, and the run is decided again.
            outcomes = [
                FetchOutcome.failed(o.provider_id, refused[o.provider_id], o.latency_ms) if o.provider_id in refused
                else o
                for o in outcomes
            ]
            plan = decide(outcomes)
        committed = {pid: {ref.key for ref in write.refs} for pid, write in plan.writes.items()}
        abandoned = {pid: sorted(keys - committed.get(pid, set())) for pid, keys in writes.tried.items()}
        # Repair requests this run answers: the list was read back intact (or is gone), or it is written whole now.
        repaired = prepared.intact | frozenset(pid for pid in lease.repairs if pid in broken and pid in plan.writes)
        unrepaired = sorted(set(broken) - set(plan.writes) - lease.repairs)
        if unrepaired:  # found by the sample, but this run cannot write it (its provider failed): ask the next one
            try:
                self._lock.request_repair(frozenset(unrepaired))
            except Exception:
                log.warning("asking the next run to repair failed", extra={"providers": unrepaired})
        gap = self._previous_run_unfinished(lease)
        if not plan.writes_catalog:

            def collect_unchanged() -> None:
                self._delete_keys(lease, abandoned)
                if gap:
                    self._sweep_orphans(lease, manifest)

            return plan, None, repaired, collect_unchanged
        new_manifest, event = self._commit_plan(lease, manifest, plan, prepared.journaled, repaired)
        writes.tried.clear()  # committed: nothing of it is to be deleted on a later failure
        if plan.repaired:
            log.warning("stored model lists rewritten", extra={"providers": {p: broken[p] for p in plan.repaired}})

        def collect() -> None:
            self._delete_keys(lease, abandoned)
            self._collect_garbage(lease, manifest, new_manifest, plan)
            if gap:
                self._sweep_orphans(lease, new_manifest)

        return plan, event, frozenset(), collect  # the commit took the repaired providers off the requests

    def _prepare(self, lease: Lease) -> _Prepared:
        """The manifest, where the journal of its epoch ends (needed only to commit, and cheap), and the stored lists
        to distrust: those readers asked to repair (read whole) and any this run's sample of chunks finds broken."""
        manifest = self._catalog.read_manifest()
        journaled = self._commit.journaled_seq(manifest.epoch)
        checks: dict[str, list[str]] = {
            pid: manifest.providers[pid].chunk_keys() for pid in sorted(lease.repairs) if pid in manifest.providers
        }
        for pid, key in chunks_to_check(manifest, lease.token, CHECKED_CHUNKS_PER_RUN):
            if pid not in lease.repairs:
                checks.setdefault(pid, []).append(key)

        def check(provider_id: str) -> str | bool | None:
            try:
                return self._catalog.check_chunks(provider_id, checks[provider_id])
            except Exception:  # a check is an extra: the run goes on without it (a request stays for the next run)
                log.warning("checking stored chunks failed", extra={"provider_id": provider_id})
                return False

        found = dict(zip(checks, _in_parallel(check, list(checks)), strict=True))
        broken = {pid: problem for pid, problem in found.items() if isinstance(problem, str)}
        if broken:
            log.warning("stored model lists found broken", extra={"providers": broken})
        intact = frozenset(pid for pid in lease.repairs if found.get(pid) is None and pid in manifest.providers)
        return _Prepared(manifest, journaled, broken, intact | (lease.repairs - manifest.providers.keys()))

    def _read_stored(
        self, manifest: Manifest, reads: Mapping[str, tuple[ChunkRef, ...] | None]
    ) -> tuple[dict[str, list[ModelRecord]], dict[str, str]]:
        """The stored models the plan needs (per provider: the chunks named, or its whole list for None), and why
        any of them could not be read."""

        def read(provider_id: str) -> list[ModelRecord] | str:
            refs = reads[provider_id]
            try:
                if refs is None:
                    return self._catalog.read_provider_models(provider_id, manifest.providers[provider_id])
                return self._catalog.read_chunks(provider_id, [ref.key for ref in refs])
            except (StaleRead, UnreadableChunks) as exc:
                return str(exc)

        stored: dict[str, list[ModelRecord]] = {}
        broken: dict[str, str] = {}
        for provider_id, found in zip(reads, _in_parallel(read, list(reads)), strict=True):
            if isinstance(found, str):
                broken[provider_id] = found
            else:
                stored[provider_id] = found
        return stored, broken

    def _write_lists(self, plan: RefreshPlan, writes: _Writes) -> dict[str, str]:
        """Write the plan's new chunks not written yet (all providers' chunks share batch calls). Returns the
        providers whose own data DynamoDB refused, and why; a failure that is not about the data is raised."""
        pending: dict[str, tuple[Sequence[ModelRecord], ListWrite]] = {}
        for provider_id, write in plan.writes.items():
            done = writes.done.get(provider_id, set())
            todo = tuple((ref, piece) for ref, piece in write.writes if ref.key not in done)
            if todo:
                pending[provider_id] = (plan.new_lists[provider_id], ListWrite(write.refs, todo))
        if not pending:
            return {}

        def attempt(lists: dict[str, tuple[Sequence[ModelRecord], ListWrite]]) -> None:
            for provider_id, (_models, write) in lists.items():
                writes.tried.setdefault(provider_id, set()).update(ref.key for ref, _piece in write.writes)
            self._catalog.write_lists(lists)
            for provider_id, (_models, write) in lists.items():
                writes.done.setdefault(provider_id, set()).update(ref.key for ref, _piece in write.writes)

        try:
            attempt(pending)
            return {}
        except Exception as error:
            if not _caused_by_data(error):
                raise
        refused: dict[str, str] = {}
        for provider_id, item in pending.items():  # one by one, so the failure is attributable
            try:
                attempt({provider_id: item})
            except Exception as error:
                if not _caused_by_data(error):
                    raise
                reason = _storage_reason(error)
                refused[provider_id] = f"its models could not be stored ({reason}); keeping the last good list"
                log.error("storing a provider's models failed", extra={"provider_id": provider_id, "error": reason})
        return refused

    def _commit_plan(
        self, lease: Lease, manifest: Manifest, plan: RefreshPlan, journaled: int | None, repaired: frozenset[str]
    ) -> tuple[Manifest, dict[str, Any] | None]:
        state = encode_state(plan.state)
        if not plan.changes_catalog:  # only repairs: the same content, so no revision and no event
            new_manifest = plan.next_manifest(manifest)
            self._commit.write(lease, state, new_manifest, manifest.revision, None, repaired)
            return new_manifest, None
        decision = next_cursor(manifest.epoch, manifest.seq, journaled, new_epoch_id())
        while True:
            if decision.rotated:
                log.warning(
                    "starting a new event epoch",
                    extra={
                        "reason": decision.rotated_because,
                        "old_epoch": manifest.epoch,
                        "epoch": decision.cursor.epoch,
                    },
                )
            new_manifest = plan.next_manifest(manifest, decision.cursor)
            event = plan.event(manifest, decision.cursor)
            try:
                self._commit.write(lease, state, new_manifest, manifest.revision, event, repaired)
                return new_manifest, event
            except SeqCollision as collision:
                if decision.rotated:
                    raise  # a fresh epoch cannot collide; something else is writing the journal
                decision = after_collision(collision.epoch, collision.seq, new_epoch_id())

    def _release_unchanged(self, lease: Lease) -> None:
        """Release, keeping the stored state, marked as stored by this run so that the next run sees no unfinished
        one — unless one was unfinished before this run and this run did not collect its leftovers: then the state
        stays as it is, and the next run still sees it."""
        if self._previous_run_unfinished(lease):
            self._lock.release(lease)
        else:
            self._lock.release(lease, encode_state(replace(decode_state(lease.state), token=lease.token)))

    def _previous_run_unfinished(self, lease: Lease) -> bool:
        """Whether a run since the one that stored the state ended without storing its own (it may have left chunks
        that no manifest names). A state stored before runs recorded their token cannot tell: once, it counts as
        unfinished (which also collects what crashed runs of earlier versions left)."""
        if lease.state is None:
            return lease.token > 1
        token = decode_state(lease.state).token
        return token is None or lease.token != token + 1

    def _release_after_failure(self, lease: Lease, writes: _Writes) -> None:
        """A failed run deletes the chunks it wrote and keeps the stored state; if it could not delete them, it
        leaves the state as it was, so the next run sees an unfinished run and collects them."""
        leftovers = {pid: sorted(keys) for pid, keys in writes.tried.items() if keys}
        try:
            if leftovers and not self._delete_keys(lease, leftovers):
                self._lock.release(lease)
                return
            self._release_unchanged(lease)
        except Exception:
            log.warning("releasing the lock after a failed run failed; it expires", extra={"token": lease.token})

    def _start_fetches(self, providers: list[ProviderConfig], deadline: float) -> Callable[[], list[FetchOutcome]]:
        """Hand every provider's fetch to the fetch threads; returns the wait for their outcomes (in order)."""
        if not providers:
            return list
        fetcher = self._fetcher_factory()
        try:
            pool = self._fetch_threads()
            futures = [pool.submit(self._fetch_one, fetcher, provider, deadline) for provider in providers]
        except BaseException:
            fetcher.close()
            raise

        def outcomes() -> list[FetchOutcome]:
            try:
                wait(futures)  # all of them, before their session closes
                return [future.result() for future in futures]
            finally:
                fetcher.close()

        return outcomes

    def _fetch_threads(self) -> ThreadPoolExecutor:
        """The engine's fetch threads, kept across runs: starting 20 threads per run put 20 hand-overs of the
        interpreter lock before the last request went out (docs/benchmarks.md, refresh-all)."""
        with self._fetch_pool_lock:
            if self._fetch_pool is None:
                self._fetch_pool = ThreadPoolExecutor(
                    max_workers=self._config.model_catalog.fetch_concurrency, thread_name_prefix="fetch"
                )
            return self._fetch_pool

    def _fetch_one(self, fetcher: Fetcher, provider: ProviderConfig, deadline: float) -> FetchOutcome:
        started = time.monotonic()
        try:
            models = fetcher.fetch(provider, deadline)
            # whatever the fetcher, an answer past the limits fails alone
            violation = records_violation(models, provider.max_models)
            if violation is not None:
                log.warning("provider answer over the limits", extra={"provider_id": provider.id, "reason": violation})
                return FetchOutcome.failed(provider.id, violation, latency_ms=_ms_since(started))
            # Overrides win over the provider, before the fingerprint and the diff (docs/reference.md §10).
            models = apply_overrides(models, self._config.overrides_for(provider.id))
            return FetchOutcome.succeeded(
                provider.id, models, latency_ms=_ms_since(started), max_chunk_bytes=self._catalog.chunk_bytes
            )
        except ProviderError as error:
            return FetchOutcome.failed(provider.id, error.reason, latency_ms=_ms_since(started))
        except Exception as error:
            # Only the type is logged: an arbitrary exception message may carry a URL or a header value.
            log.error("adapter error", extra={"provider_id": provider.id, "error_type": type(error).__name__})
            reason = f"internal error while refreshing ({type(error).__name__}); see the service logs"
            return FetchOutcome.failed(provider.id, reason, latency_ms=_ms_since(started))

    def _collect_garbage(self, lease: Lease, old: Manifest, new: Manifest, plan: RefreshPlan) -> None:
        """Delete what the commit made unreachable (``RefreshPlan.collectable``: the chunks the previous list had
        retired, and the lists stored in the one-generation layout or of providers that left, found by listing their
        chunks). Fenced: once this run's lease has moved on, nothing is deleted."""
        keys, sweeps = plan.collectable(old, new)

        def listed(item: tuple[str, set[str]]) -> list[dict[str, Any]]:
            try:
                return self._catalog.unkept_chunks(*item)
            except Exception:
                log.warning("garbage collection failed", extra={"provider_id": item[0]})
                return []

        found = [key for keys_found in _in_parallel(listed, list(sweeps.items())) for key in keys_found]
        doomed = [key for pid, sort_keys in keys.items() for key in self._catalog.chunk_keys(pid, sort_keys)]
        self._delete_fenced(lease, doomed + found)

    def _sweep_orphans(self, lease: Lease, manifest: Manifest) -> None:
        """After an unfinished run: list every provider's chunks and delete those no manifest entry names (neither
        its current chunks nor the retired ones readers of the previous manifest may still read)."""
        log.warning("the previous run did not finish: collecting chunks it may have left", extra={"token": lease.token})

        def unreferenced(provider_id: str) -> list[dict[str, Any]]:
            entry = manifest.providers[provider_id]
            try:
                return self._catalog.unreferenced_chunks(provider_id, set(entry.chunk_keys()) | set(entry.retired))
            except Exception:
                log.warning("garbage collection failed", extra={"provider_id": provider_id})
                return []

        found = _in_parallel(unreferenced, sorted(manifest.providers))
        self._delete_fenced(lease, [key for keys in found for key in keys])

    def _delete_keys(self, lease: Lease, keys: Mapping[str, Sequence[str]]) -> bool:
        """Delete these chunks of this run that it will not commit (fenced, best effort)."""
        doomed = [key for pid, sort_keys in keys.items() for key in self._catalog.chunk_keys(pid, sort_keys)]
        return self._delete_fenced(lease, doomed) if doomed else True

    def _delete_fenced(self, lease: Lease, keys: list[dict[str, Any]]) -> bool:
        if not keys:
            return True
        try:
            self._catalog.delete_chunks(keys, fence=self._lock.fence_check_action(lease))
            return True
        except FenceLost:
            log.warning("garbage collection stopped: the refresh lock moved on", extra={"token": lease.token})
        except Exception:
            log.warning("garbage collection failed", extra={"chunks": len(keys)})
        return False

    def _log_run(self, trigger: Trigger, scope: Scope, started: float, plan: RefreshPlan) -> None:
        result = plan.result
        outcome: dict[str, dict[str, Any]] = {}
        for change in result.changed:
            counts = {k: len(getattr(change, k)) for k in ("added", "removed", "updated")}
            outcome[change.provider_id] = {"outcome": "changed", **counts}
        for provider_id in result.unchanged:
            outcome[provider_id] = {"outcome": "unchanged"}
        for failure in result.failed:
            outcome[failure.provider_id] = {"outcome": "failed", "reason": failure.reason}
        for provider_id, latency in plan.latencies.items():
            outcome.setdefault(provider_id, {})["latency_ms"] = latency
        log.info(
            "refresh run",
            extra={
                "trigger": trigger,
                "scope": scope,
                "duration_ms": _ms_since(started),
                "revision": result.revision,
                "providers": outcome,
            },
        )


def _in_parallel(function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[function(item) for item in items]`` with up to ``STORE_CONCURRENCY`` calls at once (the first
    exception is raised, as in the loop). Per-provider DynamoDB calls are independent round trips."""
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(STORE_CONCURRENCY, len(items)), thread_name_prefix="store") as pool:
        return list(pool.map(function, items))


def _caused_by_data(error: BaseException) -> bool:
    """Whether storing a list failed because of the list itself (DynamoDB refused an item, or it could not be
    encoded), not because storage is unavailable (that fails the run, as any storage outage does)."""
    if isinstance(error, ClientError):
        return error_code(error) in ("ValidationException", "ItemCollectionSizeLimitExceededException")
    return isinstance(error, (TypeError, ValueError, OverflowError))


def _storage_reason(error: BaseException) -> str:
    if isinstance(error, ClientError):
        message = str(error.response.get("Error", {}).get("Message") or "")[:160]
        return f"DynamoDB {error_code(error)}: {message}" if message else f"DynamoDB {error_code(error)}"
    return type(error).__name__


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
