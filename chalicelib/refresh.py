"""The refresh engine: one module for scheduled and manual runs alike.

A run: take the lease lock → read the manifest → fetch every provider in scope concurrently (each
under the run's deadline) → diff against the stored lists → write new chunk generations for changed
providers → one fenced transaction flips the manifest, stores provider statuses and appends the event
(outbox) → release → fan the event out. Nothing changed ⇒ no catalog write at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from chalicelib import codec, events
from chalicelib.diff import ModelDiff, ShrinkPolicy, diff_models, shrink_failure
from chalicelib.domain import ProviderChange, ProviderFailure, RefreshResult, Scope, Trigger
from chalicelib.errors import ProviderError, ProviderNotFound
from chalicelib.lock import Lease, LeaseLock, new_owner_id
from chalicelib.logs import get_logger
from chalicelib.providers.kinds import KINDS
from chalicelib.settings import ProviderConfig, Settings
from chalicelib.store import CatalogStore, Manifest, ProviderEntry, model_record

log = get_logger("refresh")

LEASE_MARGIN_MS = 30_000  # time to diff, write chunks and commit after the fetch deadline
LAST_RUN_MAX_PACKED_BYTES = 100_000  # the last run's result as stored on the lock item (compressed)
# Per-provider catalog reads, chunk writes and clean-ups in flight at once (they are independent).
STORE_CONCURRENCY = 8


class Fetcher(Protocol):
    def fetch(self, provider: ProviderConfig, deadline: float) -> Sequence[Any]: ...
    def close(self) -> None: ...


class Publisher(Protocol):
    def publish(self, message: dict[str, Any]) -> Any: ...


def iso_now(clock: Callable[[], float] = time.time) -> str:
    return datetime.fromtimestamp(clock(), tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Outcome:
    provider_id: str
    models: list[dict[str, Any]] | None = None
    reason: str | None = None
    latency_ms: int = 0


def select_providers(settings: Settings, scope: Scope, provider_id: str | None) -> list[ProviderConfig]:
    providers = list(settings.config.providers)
    if scope == "provider":
        match = [p for p in providers if p.id == provider_id]
        if not match:
            raise ProviderNotFound(provider_id or "")
        return match
    if scope == "oauth":
        return [p for p in providers if KINDS[p.kind].oauth]
    return providers


class RefreshEngine:
    def __init__(
        self,
        settings: Settings,
        store: CatalogStore,
        lock: LeaseLock,
        fetcher_factory: Callable[[], Fetcher],
        publisher: Publisher | None,
        events_table: str,
        clock: Callable[[], float] = time.time,
    ):
        self._settings = settings
        self._store = store
        self._lock = lock
        self._fetcher_factory = fetcher_factory
        self._publisher = publisher
        self._events_table = events_table
        self._clock = clock

    # -- public -----------------------------------------------------------------------------
    def run(
        self,
        scope: Scope,
        provider_id: str | None = None,
        trigger: Trigger = "manual",
        wait_ms: int | None = None,
        after_acquire: Callable[[Lease], bool] | None = None,
    ) -> RefreshResult | None:
        """Refresh the providers in ``scope``. ``after_acquire`` may veto the run once the lock is held
        (the scheduler re-checks due-ness there, which makes a duplicate scheduled event harmless)."""
        options = self._settings.options
        providers = select_providers(self._settings, scope, provider_id)
        deadline_ms = options.scheduled_run_deadline_ms if trigger == "scheduled" else options.manual_run_deadline_ms
        wait = options.lock_wait_ms if wait_ms is None else wait_ms
        lease = self._lock.acquire(new_owner_id(), deadline_ms + LEASE_MARGIN_MS, wait)
        message = None
        state = lease.state
        try:
            if after_acquire is not None and not after_acquire(lease):
                self._lock.release(lease)
                return None
            started = time.monotonic()
            result, message, state, latencies = self._run_locked(
                lease, providers, scope, started + deadline_ms / 1000, trigger
            )
            self._log_run(trigger, scope, started, result, latencies)
        except BaseException:
            self._lock.release(lease)  # keep the state the last good run stored
            raise
        try:
            self._lock.release(lease, state)
        except Exception:
            if message is None:
                raise
            # The change is committed: report it, and let the lease expire rather than fail the request.
            log.exception(
                "lock release failed after the commit; it expires with its lease", extra={"token": lease.token}
            )
        if message is not None and self._publisher is not None:
            try:
                self._publisher.publish(message)
            except Exception:
                log.exception("fan-out failed; the event stays in the journal", extra={"seq": message["seq"]})
        return result

    # -- the run ----------------------------------------------------------------------------
    def _run_locked(
        self, lease: Lease, providers: list[ProviderConfig], scope: Scope, deadline: float, trigger: Trigger
    ) -> tuple[RefreshResult, dict[str, Any] | None, dict[str, Any], dict[str, int]]:
        manifest = self._store.read_manifest()
        outcomes = self._fetch_all(providers, deadline)
        now_iso = iso_now(self._clock)
        names = {p.id: p.display_name for p in self._settings.config.providers}

        changed: list[ProviderChange] = []
        unchanged: list[str] = []
        failed: list[ProviderFailure] = []
        new_entries = dict(manifest.providers)
        new_generations: dict[str, list[dict[str, Any]]] = {}
        statuses: dict[str, dict[str, Any]] = dict(lease.state.get("providers", {}))

        by_id = {p.id: p for p in providers}
        # Each fingerprint is computed once (a 20,000-model list takes ~0.2 s to serialize), and the stored lists
        # of the providers that differ are read in parallel: independent DynamoDB queries, one round trip each.
        fingerprints = {o.provider_id: codec.fingerprint(o.models) for o in outcomes if o.models is not None}
        differing = [
            pid for pid, fingerprint in fingerprints.items()
            if pid in manifest.providers and manifest.providers[pid].fingerprint != fingerprint
        ]
        stored = dict(zip(differing, _in_parallel(
            lambda pid: self._store.read_provider_models(pid, manifest.providers[pid]), differing
        ), strict=True))
        for outcome in outcomes:
            provider = by_id[outcome.provider_id]
            status = dict(statuses.get(provider.id, {}))
            entry = manifest.providers.get(provider.id)
            if outcome.models is None:
                failed.append(ProviderFailure(provider_id=provider.id, reason=outcome.reason or "unknown error"))
                statuses[provider.id] = {**status, "last_error": outcome.reason}
                continue
            if entry is not None and entry.fingerprint == fingerprints[provider.id]:
                unchanged.append(provider.id)
                statuses[provider.id] = {**status, "last_refreshed_at": now_iso, "last_error": None}
                continue
            old = stored[provider.id] if entry else []
            policy = ShrinkPolicy(threshold=self._settings.options.shrink_threshold, allow_shrink=provider.allow_shrink)
            refusal = shrink_failure(len(old), len(outcome.models), policy)
            if refusal:
                failed.append(ProviderFailure(provider_id=provider.id, reason=refusal))
                statuses[provider.id] = {**status, "last_error": refusal}
                continue
            diff = diff_models(old, outcome.models)
            statuses[provider.id] = {**status, "last_refreshed_at": now_iso, "last_error": None}
            if diff.is_empty:  # same models, different encoding history: adopt the fingerprint, no event
                unchanged.append(provider.id)
                continue
            changed.append(_change(provider.id, names[provider.id], diff))
            new_generations[provider.id] = outcome.models

        if scope == "all":  # the config is the source of truth: providers removed from it leave
            for gone in sorted(set(manifest.providers) - {p.id for p in self._settings.config.providers}):
                old = self._store.read_provider_models(gone, manifest.providers[gone])
                changed.append(ProviderChange(provider_id=gone, provider_name=gone, removed=[m["id"] for m in old]))
                new_entries.pop(gone, None)
                statuses.pop(gone, None)

        changed.sort(key=lambda c: c.provider_id)
        unchanged.sort()
        failed.sort(key=lambda f: f.provider_id)
        message = None
        revision = manifest.revision
        if changed:
            revision = manifest.revision + 1
            generation = f"r{revision:08d}-t{lease.token}"
            written = self._store.write_generations(generation, new_generations)
            for provider_id, models in new_generations.items():
                entry = ProviderEntry(generation, written[provider_id], len(models), fingerprints[provider_id])
                new_entries[provider_id] = entry
            result = RefreshResult(revision=revision, changed=changed, unchanged=unchanged, failed=failed)
            new_manifest = Manifest(
                revision=revision,
                epoch=manifest.epoch,
                seq=manifest.seq + 1,
                providers=new_entries,
                updated_at=now_iso,
            )
            message = events.build_event_message(new_manifest.seq, manifest.epoch, now_iso, result)
            state = self._next_state(lease, statuses, result, trigger)
            self._store.commit(
                [
                    self._lock.fence_action(lease, state),
                    self._store.manifest_put_action(new_manifest, manifest.revision),
                    events.journal_put_action(self._events_table, message),
                ]
            )
            self._collect_garbage(manifest, new_manifest, new_generations)
        else:
            result = RefreshResult(revision=revision, changed=[], unchanged=unchanged, failed=failed)
            state = self._next_state(lease, statuses, result, trigger)
        return result, message, state, {o.provider_id: o.latency_ms for o in outcomes}

    def _fetch_all(self, providers: list[ProviderConfig], deadline: float) -> list[_Outcome]:
        if not providers:
            return []
        fetcher = self._fetcher_factory()
        try:
            workers = min(self._settings.options.fetch_concurrency, len(providers))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
                return list(pool.map(lambda p: self._fetch_one(fetcher, p, deadline), providers))
        finally:
            fetcher.close()

    def _fetch_one(self, fetcher: Fetcher, provider: ProviderConfig, deadline: float) -> _Outcome:
        started = time.monotonic()
        try:
            unique: dict[str, dict[str, Any]] = {}
            for model in fetcher.fetch(provider, deadline):
                record = model_record(model)
                unique.setdefault(record["id"], record)
            models = [unique[i] for i in sorted(unique)]
            return _Outcome(provider.id, models=models, latency_ms=_ms_since(started))
        except ProviderError as error:
            return _Outcome(provider.id, reason=error.reason, latency_ms=_ms_since(started))
        except Exception as error:
            # Only the type is logged: an arbitrary exception message may carry a URL or a header value.
            log.error("adapter error", extra={"provider_id": provider.id, "error_type": type(error).__name__})
            reason = f"internal error while refreshing ({type(error).__name__}); see the service logs"
            return _Outcome(provider.id, reason=reason, latency_ms=_ms_since(started))

    def _collect_garbage(self, old: Manifest, new: Manifest, written: dict[str, Any]) -> None:
        """Keep the current and the previous generation (readers mid-way may still need it)."""
        doomed: list[tuple[str, set[str]]] = []
        for provider_id in written:
            keep = {new.providers[provider_id].generation}
            if provider_id in old.providers:
                keep.add(old.providers[provider_id].generation)
            doomed.append((provider_id, keep))
        doomed += [(provider_id, set()) for provider_id in sorted(set(old.providers) - set(new.providers))]

        def unkept(item: tuple[str, set[str]]) -> list[dict[str, Any]]:
            try:
                return self._store.unkept_chunks(*item)
            except Exception:
                log.warning("garbage collection failed", extra={"provider_id": item[0]})
                return []

        # Listing is one query per provider; the deletes of all providers then share batch calls.
        keys = [key for found in _in_parallel(unkept, doomed) for key in found]
        try:
            self._store.delete_chunks(keys)
        except Exception:
            log.warning("garbage collection failed", extra={"chunks": len(keys)})

    def _next_state(
        self, lease: Lease, statuses: dict[str, Any], result: RefreshResult, trigger: Trigger
    ) -> dict[str, Any]:
        state = dict(lease.state)
        state["providers"] = statuses
        # The lock item must stay far below DynamoDB's 400 KB: a huge run keeps its counts, not every id.
        fitted = events.fit_message({"payload": result.model_dump(mode="json")}, LAST_RUN_MAX_PACKED_BYTES,
                                    size=events.packed_size)
        state["last_run"] = fitted["payload"]
        state["last_run_at"] = iso_now(self._clock)
        if trigger == "scheduled":
            state["last_scheduled_at_ms"] = int(self._clock() * 1000)
            state["started_deployment"] = self._settings.deployment_id
        return state

    def _log_run(
        self, trigger: Trigger, scope: Scope, started: float, result: RefreshResult, latencies: dict[str, int]
    ) -> None:
        outcome: dict[str, dict[str, Any]] = {}
        for change in result.changed:
            counts = {k: len(getattr(change, k)) for k in ("added", "removed", "updated")}
            outcome[change.provider_id] = {"outcome": "changed", **counts}
        for provider_id in result.unchanged:
            outcome[provider_id] = {"outcome": "unchanged"}
        for failure in result.failed:
            outcome[failure.provider_id] = {"outcome": "failed", "reason": failure.reason}
        for provider_id, latency in latencies.items():
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


def _change(provider_id: str, name: str, diff: ModelDiff) -> ProviderChange:
    return ProviderChange(provider_id=provider_id, provider_name=name, **diff.ids())


def _in_parallel(function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[function(item) for item in items]`` with up to ``STORE_CONCURRENCY`` calls at once (the first
    exception is raised, as in the loop). Per-provider DynamoDB calls are independent round trips."""
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(STORE_CONCURRENCY, len(items)), thread_name_prefix="store") as pool:
        return list(pool.map(function, items))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
