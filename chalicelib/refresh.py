"""The refresh engine: one module for scheduled and manual runs alike.

A run is a sequence; every decision in it is the pure plan's (``chalicelib.core.plan``):

    lease → read the manifest → fetch (concurrently, under the run's deadline) → read the stored lists the plan
    needs, check the others → plan → write the new chunk generations → commit (fence + state, manifest flip,
    event) → collect garbage (fenced) → release (storing the state) → publish the event.

Nothing changed ⇒ no catalog write at all: the state is stored by the release.

One provider cannot fail the others: its answer is bounded (``chalicelib.core.limits``), and when writing its
chunks fails because of its data, it alone is moved to ``failed`` and the run is planned again (the plan is pure
and cheap). A stored list found missing or unreadable is written again even if the provider's models did not
change. The event's ``(epoch, seq)`` follows ``chalicelib.core.epoch``: a journal that disagrees with the manifest
(a table restored from a backup) starts a new epoch instead of wedging or reusing a seq.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from chalicelib.core.domain import ModelRecord, RefreshResult, Scope, Trigger
from chalicelib.core.epoch import after_collision, next_cursor
from chalicelib.core.limits import records_violation
from chalicelib.core.manifest import Manifest
from chalicelib.core.overrides import apply_overrides
from chalicelib.core.plan import (
    FetchOutcome,
    RefreshPlan,
    lists_to_read,
    lists_to_verify,
    plan_refresh,
    select_providers,
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
# A manual refresh fans out inline only this far: 16 senders at ~30 ms a send reach ~530 connections/s, so 1,000
# take about 2 s of the request's INLINE_FANOUT_BUDGET_MS (3 s, chalicelib.catalog_config). Past it, the event
# stays pending and the scheduled tick (every minute deployed) delivers it.
INLINE_FANOUT_CONNECTIONS = 1_000
# Per-provider catalog reads and clean-ups in flight at once (they are independent round trips).
STORE_CONCURRENCY = 8


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
        try:
            if after_acquire is not None and not after_acquire(lease):
                self._lock.release(lease)
                return None
            started = time.monotonic()
            plan, event = self._run_locked(lease, providers, scope, trigger, started + deadline_ms / 1000)
            self._log_run(trigger, scope, started, plan)
        except BaseException:
            self._lock.release(lease)  # keep the state the last good run stored
            raise
        try:
            self._lock.release(lease, encode_state(plan.state))
        except Exception:
            if event is None:
                raise
            # The change is committed: report it, and let the lease expire rather than fail the request.
            log.exception(
                "lock release failed after the commit; it expires with its lease", extra={"token": lease.token}
            )
        if event is not None and self._publisher is not None:
            # A request answers within API Gateway's 29 s: it fans out to at most INLINE_FANOUT_CONNECTIONS itself.
            inline = None if trigger == "scheduled" else INLINE_FANOUT_CONNECTIONS
            try:
                self._publisher.publish(event, max_connections=inline)
            except Exception:
                log.exception("fan-out failed; the event stays in the journal", extra={"seq": event["seq"]})
        return plan.result

    def _run_locked(
        self, lease: Lease, providers: list[ProviderConfig], scope: Scope, trigger: Trigger, deadline: float
    ) -> tuple[RefreshPlan, dict[str, Any] | None]:
        manifest = self._catalog.read_manifest()
        outcomes = self._fetch_all(providers, deadline)
        wanted = lists_to_read(manifest, outcomes, self._config, scope)
        stored, broken = self._read_stored(manifest, wanted)
        broken.update(self._check_stored(manifest, lists_to_verify(manifest, outcomes, wanted)))

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
        written: dict[tuple[str, str], int] = {}  # (provider, generation) → chunk count, of the lists written
        while plan.writes_catalog:
            refused = self._write_lists(plan, written)
            if not refused:
                break
            # Those providers' own data could not be stored: they alone fail, and the run is decided again.
            outcomes = [
                FetchOutcome.failed(o.provider_id, refused[o.provider_id], o.latency_ms) if o.provider_id in refused
                else o
                for o in outcomes
            ]
            plan = decide(outcomes)
        abandoned = [key for key in written if plan.new_lists.get(key[0]) is None or key[1] != plan.generation]
        if not plan.writes_catalog:
            self._delete_generations(lease, abandoned)
            return plan, None
        counts = {pid: written[(pid, plan.generation)] for pid in plan.new_lists}  # type: ignore[index]
        new_manifest, event = self._commit_plan(lease, manifest, plan, counts)
        if plan.repaired:
            log.warning("stored model lists rewritten", extra={"providers": {p: broken[p] for p in plan.repaired}})
        self._delete_generations(lease, abandoned)
        self._collect_garbage(lease, manifest, new_manifest, plan)
        return plan, event

    def _read_stored(
        self, manifest: Manifest, wanted: list[str]
    ) -> tuple[dict[str, list[ModelRecord]], dict[str, str]]:
        """The stored lists the plan needs, and why any of them could not be read."""

        def read(provider_id: str) -> list[ModelRecord] | str:
            try:
                return self._read_list(manifest, provider_id)
            except (StaleRead, UnreadableChunks) as exc:
                return str(exc)

        stored: dict[str, list[ModelRecord]] = {}
        broken: dict[str, str] = {}
        for provider_id, found in zip(wanted, _in_parallel(read, wanted), strict=True):
            if isinstance(found, str):
                broken[provider_id] = found
            else:
                stored[provider_id] = found
        return stored, broken

    def _check_stored(self, manifest: Manifest, provider_ids: list[str]) -> dict[str, str]:
        """Which of these providers' current lists are missing or unreadable (the plan does not read them)."""
        found = _in_parallel(lambda pid: self._catalog.check_generation(pid, manifest.providers[pid]), provider_ids)
        return {pid: problem for pid, problem in zip(provider_ids, found, strict=True) if problem}

    def _write_lists(self, plan: RefreshPlan, written: dict[tuple[str, str], int]) -> dict[str, str]:
        """Write the plan's new lists not written yet (all providers' chunks share batch calls). Returns the
        providers whose own data DynamoDB refused, and why; a failure that is not about the data is raised."""
        assert plan.generation is not None
        pending = {pid: models for pid, models in plan.new_lists.items() if (pid, plan.generation) not in written}
        if not pending:
            return {}
        try:
            counts = self._catalog.write_generations(plan.generation, pending)
            written.update({(pid, plan.generation): count for pid, count in counts.items()})
            return {}
        except Exception as error:
            if not _caused_by_data(error):
                raise
        refused: dict[str, str] = {}
        for provider_id, models in pending.items():  # one by one, so the failure is attributable
            try:
                written[(provider_id, plan.generation)] = self._catalog.write_generation(
                    provider_id, plan.generation, models
                )
            except Exception as error:
                if not _caused_by_data(error):
                    raise
                written.setdefault((provider_id, plan.generation), 0)  # its partial chunks are deleted
                reason = _storage_reason(error)
                refused[provider_id] = f"its models could not be stored ({reason}); keeping the last good list"
                log.error("storing a provider's models failed", extra={"provider_id": provider_id, "error": reason})
        return refused

    def _commit_plan(
        self, lease: Lease, manifest: Manifest, plan: RefreshPlan, counts: dict[str, int]
    ) -> tuple[Manifest, dict[str, Any] | None]:
        state = encode_state(plan.state)
        if not plan.changes_catalog:  # only repairs: the same content, so no revision and no event
            new_manifest = plan.next_manifest(manifest, counts)
            self._commit.write(lease, state, new_manifest, manifest.revision, None)
            return new_manifest, None
        decision = next_cursor(manifest.epoch, manifest.seq, self._commit.journaled_seq(manifest.epoch), new_epoch_id())
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
            new_manifest = plan.next_manifest(manifest, counts, decision.cursor)
            event = plan.event(manifest, decision.cursor)
            try:
                self._commit.write(lease, state, new_manifest, manifest.revision, event)
                return new_manifest, event
            except SeqCollision as collision:
                if decision.rotated:
                    raise  # a fresh epoch cannot collide; something else is writing the journal
                decision = after_collision(collision.epoch, collision.seq, new_epoch_id())

    def _read_list(self, manifest: Manifest, provider_id: str) -> list[ModelRecord]:
        return self._catalog.read_provider_models(provider_id, manifest.providers[provider_id])

    def _fetch_all(self, providers: list[ProviderConfig], deadline: float) -> list[FetchOutcome]:
        if not providers:
            return []
        fetcher = self._fetcher_factory()
        try:
            workers = min(self._config.model_catalog.fetch_concurrency, len(providers))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
                return list(pool.map(lambda p: self._fetch_one(fetcher, p, deadline), providers))
        finally:
            fetcher.close()

    def _fetch_one(self, fetcher: Fetcher, provider: ProviderConfig, deadline: float) -> FetchOutcome:
        started = time.monotonic()
        try:
            models = fetcher.fetch(provider, deadline)
            violation = records_violation(models)  # whatever the fetcher, an answer past the limits fails alone
            if violation is not None:
                log.warning("provider answer over the limits", extra={"provider_id": provider.id, "reason": violation})
                return FetchOutcome.failed(provider.id, violation, latency_ms=_ms_since(started))
            # Overrides win over the provider, before the fingerprint and the diff (docs/reference.md §10).
            models = apply_overrides(models, self._config.overrides_for(provider.id))
            return FetchOutcome.succeeded(provider.id, models, latency_ms=_ms_since(started))
        except ProviderError as error:
            return FetchOutcome.failed(provider.id, error.reason, latency_ms=_ms_since(started))
        except Exception as error:
            # Only the type is logged: an arbitrary exception message may carry a URL or a header value.
            log.error("adapter error", extra={"provider_id": provider.id, "error_type": type(error).__name__})
            reason = f"internal error while refreshing ({type(error).__name__}); see the service logs"
            return FetchOutcome.failed(provider.id, reason, latency_ms=_ms_since(started))

    def _collect_garbage(self, lease: Lease, old: Manifest, new: Manifest, plan: RefreshPlan) -> None:
        """Keep the current and the previous generation (readers mid-way may still need it). Fenced: once this run's
        lease has moved on, nothing is deleted (a newer run's generations are not this run's garbage)."""
        doomed: list[tuple[str, set[str]]] = []
        for provider_id in plan.new_lists:
            keep = {new.providers[provider_id].generation}
            if provider_id in old.providers:
                keep.add(old.providers[provider_id].generation)
            doomed.append((provider_id, keep))
        doomed += [(provider_id, set()) for provider_id in plan.removed]

        def unkept(item: tuple[str, set[str]]) -> list[dict[str, Any]]:
            try:
                return self._catalog.unkept_chunks(*item)
            except Exception:
                log.warning("garbage collection failed", extra={"provider_id": item[0]})
                return []

        # Listing is one query per provider; the deletes of all providers then share fenced transactions.
        self._delete_fenced(lease, [key for found in _in_parallel(unkept, doomed) for key in found])

    def _delete_generations(self, lease: Lease, generations: list[tuple[str, str]]) -> None:
        """Delete the chunks of lists written by this run that it will not commit (fenced, best effort)."""
        if not generations:
            return
        try:
            keys = [key for pid, generation in generations for key in self._catalog.generation_keys(pid, generation)]
        except Exception:
            log.warning("listing abandoned chunks failed", extra={"generations": len(generations)})
            return
        self._delete_fenced(lease, keys)

    def _delete_fenced(self, lease: Lease, keys: list[dict[str, Any]]) -> None:
        try:
            self._catalog.delete_chunks(keys, fence=self._lock.fence_check_action(lease))
        except FenceLost:
            log.warning("garbage collection stopped: the refresh lock moved on", extra={"token": lease.token})
        except Exception:
            log.warning("garbage collection failed", extra={"chunks": len(keys)})

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
