"""The service layer: what the REST routes, the schedule and the CLI ask of the catalog.

Each method returns plain JSON-ready dicts in the REST API's shapes (docs/reference.md#2-rest-api); errors are
domain errors (``chalicelib.errors``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from chalicelib.clock import utc_iso_ms
from chalicelib.core.domain import ModelRecord, Provider, RefreshStatus, Scope, Trigger
from chalicelib.core.manifest import Manifest, ProviderEntry
from chalicelib.core.query import MAX_PAGE_SIZE, ModelQuery, ProviderRecords, decode_cursor, select_models
from chalicelib.core.schedule import check_due, next_due_ms
from chalicelib.core.state import RefreshState
from chalicelib.core.version import catalog_version
from chalicelib.errors import ExportTooLarge, InvalidParameter, PageRequired, RefreshInProgress
from chalicelib.exports import EXPORTS, CatalogSnapshot
from chalicelib.logs import get_logger
from chalicelib.refresh import RefreshEngine
from chalicelib.storage.catalog import CatalogStore, StaleRead, UnreadableChunks
from chalicelib.storage.lock import Lease
from chalicelib.storage.state import RefreshStateStore, decode_state

if TYPE_CHECKING:
    from chalicelib.catalog_config import CatalogConfig

log = get_logger("service")

# A Lambda response carries at most 6 MB, the body JSON-escaped inside it: an export stays below, with room for the
# headers, or fails with a clear error instead of API Gateway's bare 502.
EXPORT_BUDGET_BYTES = 5_800_000


# A model list's chunks can be collected under a reader after a newer commit (rare): it re-reads then.
READ_ATTEMPTS = 3
# An unpaged GET /models answers at most this much JSON: a Lambda response carries 6 MB with the body escaped once
# more inside it (every quote), so past this the client is told to page (400 page_required) instead of API Gateway's
# bare 502.
UNPAGED_BUDGET_BYTES = 5_000_000


@dataclass(frozen=True)
class CatalogView:
    """What a read route answers, before it is built: ``version`` (``core.version.catalog_version``) and
    ``revision`` come from the small items already read; ``body()`` builds the answer from that same snapshot."""

    version: str
    revision: int
    body: Callable[[], dict[str, Any]]


def unpaged_bytes(manifest: Manifest, provider_id: str | None = None) -> int | None:
    """About how large an unpaged ``GET /models`` answer is (JSON bytes), from the chunk sizes the manifest keeps:
    each model adds its ``provider_id`` to its record. None when a list in the one-generation layout has no sizes."""
    total = 40
    for pid, entry in manifest.providers.items():
        if provider_id is not None and pid != provider_id:
            continue
        if entry.json_bytes is None:
            return None
        total += entry.json_bytes + entry.count * (len(pid) + 17)
    return total


def _model_count(manifest: Manifest, provider_id: str | None) -> int:
    return sum(e.count for pid, e in manifest.providers.items() if provider_id is None or pid == provider_id)


def page_required(size: int, count: int) -> PageRequired:
    return PageRequired(
        f"the answer would be about {size / 1e6:.1f} MB ({count:,} models), more than one response may carry "
        f"({UNPAGED_BUDGET_BYTES / 1e6:g} MB); ask for pages: add limit (at most {MAX_PAGE_SIZE:,}) and follow "
        "next_cursor"
    )


class CatalogService:
    def __init__(
        self,
        *,
        config: CatalogConfig,
        deployment_id: str,
        store: CatalogStore,
        state: RefreshStateStore,
        engine: RefreshEngine,
        publish_pending: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.time,
        webhook_tick: Callable[[str, int], Any] | None = None,
    ):
        self._config = config
        self.deployment_id = deployment_id
        self._store = store
        self._state = state
        self._engine = engine
        self._publish_pending = publish_pending
        self._clock = clock
        self._webhook_tick = webhook_tick

    # -- reads ------------------------------------------------------------------------------
    def list_providers(self) -> dict[str, Any]:
        return self.providers_view().body()

    def providers_view(self) -> CatalogView:
        """``GET /providers``: the config's providers with their model counts (manifest) and statuses (state)."""
        manifest = self._store.read_manifest()
        state = self._state.read()
        version = catalog_version(manifest, self._config, state, code=self.deployment_id)
        return CatalogView(version, manifest.revision, lambda: self._providers_body(manifest, state))

    def _providers_body(self, manifest: Manifest, state: RefreshState) -> dict[str, Any]:
        providers = []
        for provider in self._config.providers:
            entry = manifest.providers.get(provider.id)
            status = state.status(provider.id)
            providers.append(
                Provider(
                    id=provider.id,
                    name=provider.display_name,
                    kind=provider.kind,
                    refreshable=provider.refreshable,
                    model_count=entry.count if entry else 0,
                    last_refreshed_at=status.last_refreshed_at,
                    last_error=status.last_error,
                ).model_dump()
            )
        return {"providers": providers}

    def list_models(
        self, provider_id: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        after = decode_cursor(cursor) if cursor else None
        return self.models_view(ModelQuery(provider_id=provider_id, limit=limit, after=after)).body()

    def models_view(self, query: ModelQuery) -> CatalogView:
        """``GET /models`` for ``query``: its version from the manifest alone; the models are read only by
        ``body()``, and only the providers the page reaches."""
        manifest = self._store.read_manifest()
        if query.provider_id is not None:
            known = self._config.provider(query.provider_id) is not None
            if not known and query.provider_id not in manifest.providers:
                raise InvalidParameter("provider_id", f"no provider with id {query.provider_id[:100]!r} in the catalog")
        if query.limit is None and not query.filtered:  # known too large from the manifest: no model is read
            estimate = unpaged_bytes(manifest, query.provider_id)
            if estimate is not None and estimate > UNPAGED_BUDGET_BYTES:
                raise page_required(estimate, _model_count(manifest, query.provider_id))
        version = catalog_version(manifest, self._config, code=self.deployment_id)
        return CatalogView(version, manifest.revision, lambda: self._models_body(manifest, query))

    def _models_body(self, manifest: Manifest, query: ModelQuery) -> dict[str, Any]:
        for attempt in range(READ_ATTEMPTS):
            unavailable: dict[str, str] = {}
            try:
                # On the last attempt a provider whose chunks are still missing is reported, not fatal.
                records = self._provider_records(manifest, unavailable, missing_ok=attempt == READ_ATTEMPTS - 1)
                page = select_models(records, query)
                break
            except StaleRead:
                if attempt == READ_ATTEMPTS - 1:
                    raise
                # The snapshot's chunks were collected after a newer commit: answer from the newest manifest (its
                # revision says so; the ETag already sent names the older version, so the client just refetches).
                time.sleep(0.05)
                manifest = self._store.read_manifest()
        body: dict[str, Any] = {"revision": manifest.revision, "models": page.models}
        if query.limit is not None:
            body["next_cursor"] = page.next_cursor
        else:
            estimate = unpaged_bytes(manifest, query.provider_id)
            if estimate is None or estimate > UNPAGED_BUDGET_BYTES:  # unknown, or filtered down from too large
                size = len(json.dumps(body, separators=(",", ":")))  # as Chalice serializes it
                if size > UNPAGED_BUDGET_BYTES:
                    raise page_required(size, len(page.models))
        if unavailable:  # their models are missing from this answer; the next refresh writes them again
            body["unavailable"] = [{"provider_id": p, "reason": r} for p, r in sorted(unavailable.items())]
            self._ask_repair(unavailable)
        return body

    def _ask_repair(self, broken: dict[str, str]) -> None:
        """Ask the next refresh to write these stored lists again (best effort: the next reader asks again)."""
        try:
            self._state.request_repair(frozenset(broken))
        except Exception:
            log.warning("asking for a repair failed", extra={"providers": sorted(broken)})

    def _provider_records(
        self, manifest: Manifest, unavailable: dict[str, str], missing_ok: bool
    ) -> Iterator[ProviderRecords]:
        """Each provider's records, loaded when a page reaches it. A provider whose stored list cannot be read (or,
        with ``missing_ok``, is missing) counts as empty and is named in ``unavailable``: one broken list never hides
        the others (docs/reference.md §4.8)."""

        def load(provider_id: str, entry: ProviderEntry) -> list[ModelRecord]:
            try:
                return self._store.read_provider_models(provider_id, entry)
            except UnreadableChunks as exc:
                unavailable[provider_id] = str(exc)
            except StaleRead as exc:
                if not missing_ok:
                    raise
                unavailable[provider_id] = str(exc)
            return []

        for provider_id in sorted(manifest.providers):
            entry = manifest.providers[provider_id]
            yield provider_id, lambda pid=provider_id, entry=entry: load(pid, entry)

    def refresh_status(self) -> dict[str, Any]:
        options = self._config.model_catalog
        state = self._state.read()
        due = next_due_ms(
            int(self._clock() * 1000),
            options.refresh_interval_ms,
            options.refresh_on_start,
            state.schedule,
            self.deployment_id,
        )
        last_run = state.last_run
        body = RefreshStatus(
            refresh_interval_ms=options.refresh_interval_ms,
            refresh_on_start=options.refresh_on_start,
            last_run=last_run,
            next_due_at=utc_iso_ms(due),
        ).model_dump(mode="json")
        if last_run and last_run.get("truncated"):  # as in events: the id lists were cut to fit
            body["last_run"]["truncated"] = True
        return body

    def position(self) -> tuple[int, str, int]:
        """(latest event seq, epoch, revision) for WebSocket subscribers."""
        return self._store.read_position()

    # -- exports (docs/reference.md §11) ---------------------------------------------------
    def catalog_version(self) -> tuple[Manifest, str]:
        """The manifest, and the version of every body derived from the catalog and the config
        (``chalicelib.core.version``): what a strong ETag is made of, without reading a single model."""
        manifest = self._store.read_manifest()
        return manifest, catalog_version(manifest, self._config, code=self.deployment_id)

    def export(self, name: str, manifest: Manifest | None = None) -> str:
        """The export ``name`` (a key of ``chalicelib.exports.EXPORTS``) as compact JSON, read at ``manifest``
        (the one its ETag was computed from) when its models are still there."""
        manifest, models = self._models_at(manifest)
        snapshot = CatalogSnapshot(revision=manifest.revision, models=models, configured=self._config.providers)
        body = json.dumps(EXPORTS[name].render(snapshot), separators=(",", ":"), ensure_ascii=False)
        if len(json.dumps(body)) > EXPORT_BUDGET_BYTES:
            raise ExportTooLarge(
                f"the {name} export of {sum(len(m) for m in models.values())} models is larger than one response "
                "may be (6 MB); narrow the catalog with model_filter in the config"
            )
        return body

    def _models_at(self, manifest: Manifest | None) -> tuple[Manifest, dict[str, list[ModelRecord]]]:
        if manifest is not None:
            try:
                return manifest, {
                    pid: self._store.read_provider_models(pid, entry) for pid, entry in manifest.providers.items()
                }
            except (StaleRead, UnreadableChunks):  # collected by a newer commit, or broken: read the newest
                pass
        snapshot = self._store.read_catalog()
        if snapshot.unreadable:
            self._ask_repair(snapshot.unreadable)
        return snapshot.manifest, snapshot.models

    # -- refresh ----------------------------------------------------------------------------
    def refresh(self, scope: Scope, provider_id: str | None = None, trigger: Trigger = "manual") -> dict[str, Any]:
        result = self._engine.run(scope, provider_id=provider_id, trigger=trigger)
        assert result is not None  # only a veto returns None, and manual runs have none
        return result.model_dump(mode="json")

    def tick(self, trigger: Trigger = "scheduled") -> dict[str, Any]:
        """The scheduled due-check: refresh everything when due, and repair missed pushes; then the webhooks' due
        retries (after the refresh, which a slow endpoint must never delay)."""
        try:
            return self._refresh_if_due(trigger)
        finally:
            self._deliver_webhooks()

    def _refresh_if_due(self, trigger: Trigger) -> dict[str, Any]:
        options = self._config.model_catalog
        self._republish_pending()
        state, seen = self._state.read_with_lock()
        now_ms = int(self._clock() * 1000)
        schedule = state.schedule
        check = check_due(now_ms, options.refresh_interval_ms, options.refresh_on_start, schedule, self.deployment_id)
        if not check.due:
            unanchored = schedule.last_scheduled_at_ms is None and schedule.interval_anchor_ms is None
            if options.refresh_interval_ms > 0 and unanchored:
                self._state.save_idle(replace(state, schedule=replace(schedule, interval_anchor_ms=now_ms)), seen)
            return {"ran": False, "reason": check.reason, "result": None}

        def still_due(lease: Lease) -> bool:
            # Re-checked under the lock: a duplicate event (or a racing tick) finds the work done.
            recheck = check_due(
                int(self._clock() * 1000),
                options.refresh_interval_ms,
                options.refresh_on_start,
                decode_state(lease.state).schedule,
                self.deployment_id,
            )
            return recheck.due

        try:
            result = self._engine.run("all", trigger="scheduled", wait_ms=0, after_acquire=still_due)
        except RefreshInProgress:
            return {"ran": False, "reason": "another refresh is running; the next tick checks again", "result": None}
        if result is None:
            return {"ran": False, "reason": "already refreshed by another tick", "result": None}
        return {"ran": True, "reason": check.reason, "result": result.model_dump(mode="json")}

    def _republish_pending(self) -> None:
        if self._publish_pending is None:
            return
        try:
            self._publish_pending(self._store.read_manifest().epoch)
        except Exception:
            log.exception("republishing pending events failed")

    def _deliver_webhooks(self) -> None:
        """Relay what no relay did and send the due webhook retries (docs/reference.md §9); never fails the tick."""
        if self._webhook_tick is None:
            return
        try:
            manifest = self._store.read_manifest()
            self._webhook_tick(manifest.epoch, manifest.seq)
        except Exception:
            log.exception("delivering webhooks failed")
