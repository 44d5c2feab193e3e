"""The refresh engine: one module for scheduled and manual runs alike.

A run is a sequence; every decision in it is the pure plan's (``chalicelib.core.plan``):

    lease → read the manifest → fetch (concurrently, under the run's deadline) → read the stored lists the plan
    needs → plan → write the new chunk generations → commit (fence + state, manifest flip, event) → collect
    garbage → release (storing the state) → publish the event.

Nothing changed ⇒ no catalog write at all: the state is stored by the release.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.core.domain import ModelRecord, RefreshResult, Scope, Trigger
from chalicelib.core.manifest import Manifest
from chalicelib.core.overrides import apply_overrides
from chalicelib.core.plan import FetchOutcome, RefreshPlan, lists_to_read, plan_refresh, select_providers
from chalicelib.errors import ProviderError
from chalicelib.logs import get_logger
from chalicelib.storage.catalog import CatalogStore
from chalicelib.storage.commit import CatalogCommit
from chalicelib.storage.lock import Lease, LeaseLock, new_owner_id
from chalicelib.storage.state import decode_state, encode_state

if TYPE_CHECKING:
    from chalicelib.catalog_config import CatalogConfig, ProviderConfig

log = get_logger("refresh")

LEASE_MARGIN_MS = 30_000  # time to diff, write chunks and commit after the fetch deadline
# Per-provider catalog reads and clean-ups in flight at once (they are independent round trips).
STORE_CONCURRENCY = 8


class Fetcher(Protocol):
    """One run's provider client: ``fetch`` returns a provider's normalized records (sorted by id, unique)."""

    def fetch(self, provider: ProviderConfig, deadline: float) -> Sequence[ModelRecord]: ...
    def close(self) -> None: ...


class Publisher(Protocol):
    def publish(self, message: dict[str, Any]) -> Any: ...


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
            try:
                self._publisher.publish(event)
            except Exception:
                log.exception("fan-out failed; the event stays in the journal", extra={"seq": event["seq"]})
        return plan.result

    def _run_locked(
        self, lease: Lease, providers: list[ProviderConfig], scope: Scope, trigger: Trigger, deadline: float
    ) -> tuple[RefreshPlan, dict[str, Any] | None]:
        manifest = self._catalog.read_manifest()
        outcomes = self._fetch_all(providers, deadline)
        wanted = lists_to_read(manifest, outcomes, self._config, scope)
        stored = dict(zip(wanted, _in_parallel(lambda pid: self._read_list(manifest, pid), wanted), strict=True))
        plan = plan_refresh(
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
        )
        if not plan.changes_catalog:
            return plan, None
        assert plan.generation is not None
        chunk_counts = self._catalog.write_generations(plan.generation, plan.new_lists)
        new_manifest = plan.next_manifest(manifest, chunk_counts)
        event = plan.event(manifest)
        self._commit.write(lease, encode_state(plan.state), new_manifest, manifest.revision, event)
        self._collect_garbage(manifest, new_manifest, plan)
        return plan, event

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
            # Overrides win over the provider, before the fingerprint and the diff (docs/reference.md §10).
            models = apply_overrides(fetcher.fetch(provider, deadline), self._config.overrides_for(provider.id))
            return FetchOutcome.succeeded(provider.id, models, latency_ms=_ms_since(started))
        except ProviderError as error:
            return FetchOutcome.failed(provider.id, error.reason, latency_ms=_ms_since(started))
        except Exception as error:
            # Only the type is logged: an arbitrary exception message may carry a URL or a header value.
            log.error("adapter error", extra={"provider_id": provider.id, "error_type": type(error).__name__})
            reason = f"internal error while refreshing ({type(error).__name__}); see the service logs"
            return FetchOutcome.failed(provider.id, reason, latency_ms=_ms_since(started))

    def _collect_garbage(self, old: Manifest, new: Manifest, plan: RefreshPlan) -> None:
        """Keep the current and the previous generation (readers mid-way may still need it)."""
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

        # Listing is one query per provider; the deletes of all providers then share batch calls.
        keys = [key for found in _in_parallel(unkept, doomed) for key in found]
        try:
            self._catalog.delete_chunks(keys)
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


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
