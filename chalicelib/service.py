"""The service layer: what the REST routes, the schedule and the CLI ask of the catalog.

Each method returns plain JSON-ready dicts in the REST API's shapes (docs/reference.md#2-rest-api); errors are
domain errors (``chalicelib.errors``).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chalicelib.clock import utc_iso_ms
from chalicelib.core.domain import Provider, RefreshStatus, Scope, Trigger, api_model
from chalicelib.core.schedule import check_due, next_due_ms
from chalicelib.errors import BadRequest, ProviderNotFound, RefreshInProgress
from chalicelib.logs import get_logger
from chalicelib.refresh import RefreshEngine
from chalicelib.storage.catalog import CatalogStore
from chalicelib.storage.lock import Lease
from chalicelib.storage.state import RefreshStateStore, decode_state

if TYPE_CHECKING:
    from chalicelib.catalog_config import CatalogConfig

log = get_logger("service")


def _encode_cursor(provider_id: str, model_id: str) -> str:
    raw = json.dumps([provider_id, model_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
            return value[0], value[1]
    except (ValueError, binascii.Error):
        pass
    raise BadRequest("query parameter 'cursor' is not a cursor this API returned")


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
        manifest = self._store.read_manifest()
        state = self._state.read()
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
        if provider_id is not None:
            known = self._config.provider(provider_id) is not None
            if not known and provider_id not in self._store.read_manifest().providers:
                raise ProviderNotFound(provider_id)
        manifest, catalog = self._store.read_catalog(None if provider_id is None else [provider_id])
        after = _decode_cursor(cursor) if cursor else None
        models: list[dict[str, Any]] = []
        next_cursor = None
        for pid in sorted(catalog):
            if after and pid < after[0]:
                continue
            for record in catalog[pid]:
                if after and (pid, record["id"]) <= after:
                    continue
                if limit is not None and len(models) == limit:
                    last = models[-1]
                    next_cursor = _encode_cursor(last["provider_id"], last["id"])
                    break
                models.append(api_model(pid, record))
            if next_cursor:
                break
        body: dict[str, Any] = {"revision": manifest.revision, "models": models}
        if limit is not None:
            body["next_cursor"] = next_cursor
        return body

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
        manifest = self._store.read_manifest()
        return manifest.seq, manifest.epoch, manifest.revision

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
