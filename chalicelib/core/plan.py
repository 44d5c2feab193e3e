"""The refresh plan: what one run does to the catalog, decided without any I/O.

The engine (``chalicelib.refresh``) fetches, reads what the plan asks for, then calls ``plan_refresh`` with the
manifest, the stored state, the fetch outcomes, the config and the time. The plan says which providers changed,
which did not and which failed (and why), which get a new generation of chunks, which leave the catalog, the next
provider statuses and schedule bookkeeping, and the event to journal. The rules (docs/reference.md#2-rest-api):

- a provider that fails keeps its last good models (its status records the error);
- an empty answer from a provider that had models, or a drop larger than ``shrink_threshold`` (unless the
  provider sets ``allow_shrink``), is a failure, not a wipe;
- a provider removed from the config leaves the catalog at the next refresh of everything (reported ``removed``);
- an answer equal to the stored list costs no write: nothing to commit unless something changed — except when the
  stored list is broken (its chunks missing or unreadable): then the answer is written again (a *repair*: a new
  generation and a manifest flip, but no new revision and no event, since the catalog's content is the same);
- a provider whose stored list cannot be read is diffed against nothing (every model ``added``), and its shrink guard
  uses the manifest's model count.

Which ``(epoch, seq)`` the event gets is ``chalicelib.core.epoch``'s decision, passed in as a ``Cursor``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from chalicelib.clock import utc_iso
from chalicelib.core.diff import ShrinkPolicy, diff_models, shrink_failure
from chalicelib.core.domain import (
    ModelRecord,
    ProviderChange,
    ProviderFailure,
    RefreshResult,
    Scope,
    Trigger,
    models_fingerprint,
)
from chalicelib.core.epoch import Cursor
from chalicelib.core.events import build_event_message
from chalicelib.core.manifest import Manifest, ProviderEntry
from chalicelib.core.state import RefreshState
from chalicelib.errors import ProviderNotFound

if TYPE_CHECKING:
    from chalicelib.catalog_config import CatalogConfig, ProviderConfig


@dataclass(frozen=True)
class FetchOutcome:
    """One provider's answer: its normalized records (sorted by id, unique), or the reason it failed."""

    provider_id: str
    models: Sequence[ModelRecord] | None = None
    reason: str | None = None
    latency_ms: int = 0
    fingerprint: str | None = None  # of ``models``; computed once, in the fetching thread

    @classmethod
    def succeeded(cls, provider_id: str, models: Sequence[ModelRecord], latency_ms: int = 0) -> FetchOutcome:
        return cls(provider_id, models=models, latency_ms=latency_ms, fingerprint=models_fingerprint(models))

    @classmethod
    def failed(cls, provider_id: str, reason: str, latency_ms: int = 0) -> FetchOutcome:
        return cls(provider_id, reason=reason, latency_ms=latency_ms)


def select_providers(config: CatalogConfig, scope: Scope, provider_id: str | None = None) -> list[ProviderConfig]:
    """The providers a refresh of ``scope`` covers (``oauth``: the ``managed_oauth`` ones)."""
    from chalicelib.providers.kinds import KINDS

    if scope == "provider":
        match = [p for p in config.providers if p.id == provider_id]
        if not match:
            raise ProviderNotFound(provider_id or "")
        return match
    if scope == "oauth":
        return [p for p in config.providers if KINDS[p.kind].oauth]
    return list(config.providers)


def removed_providers(manifest: Manifest, config: CatalogConfig, scope: Scope) -> list[str]:
    """Providers in the catalog that the config no longer names (only a refresh of everything removes them)."""
    if scope != "all":
        return []
    return sorted(set(manifest.providers) - {p.id for p in config.providers})


def lists_to_read(
    manifest: Manifest, outcomes: Sequence[FetchOutcome], config: CatalogConfig, scope: Scope
) -> list[str]:
    """The stored lists ``plan_refresh`` needs: providers whose answer differs from what is stored (to diff it),
    and providers that leave the catalog (to report their models as removed). Everything else is judged by
    fingerprint alone: an unchanged provider's models are not read for the plan (``lists_to_verify`` only checks
    that they are all still there)."""
    differing = [
        o.provider_id
        for o in outcomes
        if o.models is not None and o.provider_id in manifest.providers
        and manifest.providers[o.provider_id].fingerprint != o.fingerprint
    ]
    return differing + removed_providers(manifest, config, scope)


def lists_to_verify(manifest: Manifest, outcomes: Sequence[FetchOutcome], read: Sequence[str]) -> list[str]:
    """The stored lists to check for completeness (the plan judges them by fingerprint, so nobody reads them):
    providers that answered and have a stored list that ``lists_to_read`` did not ask for."""
    wanted = set(read)
    return [
        o.provider_id
        for o in outcomes
        if o.models is not None and o.provider_id in manifest.providers and o.provider_id not in wanted
    ]


@dataclass(frozen=True)
class RefreshPlan:
    result: RefreshResult
    state: RefreshState  # what the run stores: statuses, last run, schedule bookkeeping
    timestamp: str
    generation: str | None = None  # the chunk generation of this run's new lists (None: nothing to write)
    new_lists: Mapping[str, Sequence[ModelRecord]] = field(default_factory=dict)
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    removed: tuple[str, ...] = ()  # providers that leave the catalog
    latencies: Mapping[str, int] = field(default_factory=dict)  # each provider's fetch time, for the run's log
    repaired: tuple[str, ...] = ()  # unchanged providers whose broken stored list is written again

    @property
    def changes_catalog(self) -> bool:
        """The catalog's content changes: a new revision and an event."""
        return bool(self.result.changed)

    @property
    def writes_catalog(self) -> bool:
        """Something is committed: a change, or only repairs (a manifest flip without an event)."""
        return self.changes_catalog or bool(self.repaired)

    def next_manifest(
        self, manifest: Manifest, chunk_counts: Mapping[str, int], cursor: Cursor | None = None
    ) -> Manifest:
        """The manifest to commit once the new lists are written (``chunk_counts``: chunks each one took). ``cursor``
        is the event's position (default: the next seq of the manifest's epoch); a repair keeps the manifest's."""
        assert self.generation is not None, "an unchanged plan commits nothing"
        providers = {pid: entry for pid, entry in manifest.providers.items() if pid not in self.removed}
        for provider_id, models in self.new_lists.items():
            providers[provider_id] = ProviderEntry(
                self.generation, chunk_counts[provider_id], len(models), self.fingerprints[provider_id]
            )
        if not self.changes_catalog:
            cursor = Cursor(manifest.epoch, manifest.seq)
        cursor = cursor or Cursor(manifest.epoch, manifest.seq + 1)
        return Manifest(
            revision=self.result.revision,
            epoch=cursor.epoch,
            seq=cursor.seq,
            providers=providers,
            updated_at=self.timestamp,
        )

    def event(self, manifest: Manifest, cursor: Cursor | None = None) -> dict[str, Any]:
        """The event that the commit journals (``manifest``: the one it replaces; ``cursor``: the event's position,
        by default the next seq of the manifest's epoch)."""
        cursor = cursor or Cursor(manifest.epoch, manifest.seq + 1)
        return build_event_message(cursor.seq, cursor.epoch, self.timestamp, self.result)


def plan_refresh(
    *,
    manifest: Manifest,
    state: RefreshState,
    outcomes: Sequence[FetchOutcome],
    stored: Mapping[str, Sequence[ModelRecord]],
    config: CatalogConfig,
    scope: Scope,
    trigger: Trigger,
    now: float,
    deployment_id: str,
    lease_token: int,
    broken: Mapping[str, str] | None = None,
) -> RefreshPlan:
    """Decide one run. ``stored`` holds the lists ``lists_to_read`` asked for that could be read; ``broken`` names
    the providers whose stored list is missing or unreadable (and why); ``now`` is wall-clock seconds."""
    broken = broken or {}
    timestamp = utc_iso(now)
    names = {p.id: p.display_name for p in config.providers}
    allow_shrink = {p.id: p.allow_shrink for p in config.providers}
    threshold = config.model_catalog.shrink_threshold
    statuses = dict(state.providers)
    changed: list[ProviderChange] = []
    unchanged: list[str] = []
    failed: list[ProviderFailure] = []
    new_lists: dict[str, Sequence[ModelRecord]] = {}
    fingerprints: dict[str, str] = {}
    repaired: list[str] = []

    for outcome in outcomes:
        pid = outcome.provider_id
        status = state.status(pid)
        if outcome.models is None:
            reason = outcome.reason or "unknown error"
            failed.append(ProviderFailure(provider_id=pid, reason=reason))
            statuses[pid] = status.failed(reason)
            continue
        entry = manifest.providers.get(pid)
        fingerprint = outcome.fingerprint or models_fingerprint(outcome.models)
        if entry is not None and entry.fingerprint == fingerprint:
            unchanged.append(pid)
            statuses[pid] = status.succeeded(timestamp)
            if pid in broken:  # the same models, but their stored copy is gone: write them again
                repaired.append(pid)
                new_lists[pid] = outcome.models
                fingerprints[pid] = fingerprint
            continue
        unknown = entry is not None and pid not in stored  # its stored list is broken: diff against nothing
        old = stored[pid] if entry is not None and not unknown else []
        old_count = entry.count if unknown and entry is not None else len(old)
        refusal = shrink_failure(old_count, len(outcome.models), ShrinkPolicy(threshold, allow_shrink.get(pid, False)))
        if refusal:
            failed.append(ProviderFailure(provider_id=pid, reason=refusal))
            statuses[pid] = status.failed(refusal)
            continue
        statuses[pid] = status.succeeded(timestamp)
        diff = diff_models(old, outcome.models)
        if diff.is_empty:  # the same models in another encoding history: nothing to write, no event
            unchanged.append(pid)
            continue
        changed.append(
            ProviderChange(provider_id=pid, provider_name=names.get(pid, pid), **diff.ids(), changes=list(diff.changes))
        )
        new_lists[pid] = outcome.models
        fingerprints[pid] = fingerprint

    removed = tuple(removed_providers(manifest, config, scope))
    for gone in removed:
        removed_ids = [str(m["id"]) for m in stored.get(gone, [])]  # unknown when its stored list is broken
        changed.append(ProviderChange(provider_id=gone, provider_name=gone, removed=removed_ids))
    if scope == "all":  # statuses of providers the config no longer names are forgotten with them
        statuses = {pid: status for pid, status in statuses.items() if pid in names}

    changed.sort(key=lambda c: c.provider_id)
    failed.sort(key=lambda f: f.provider_id)
    revision = manifest.revision + 1 if changed else manifest.revision
    result = RefreshResult(revision=revision, changed=changed, unchanged=sorted(unchanged), failed=failed)
    schedule = state.schedule
    if trigger == "scheduled":
        schedule = replace(schedule, last_scheduled_at_ms=int(now * 1000), started_deployment=deployment_id)
    next_state = RefreshState(
        providers=statuses, last_run=result.model_dump(mode="json"), last_run_at=timestamp, schedule=schedule
    )
    return RefreshPlan(
        result=result,
        state=next_state,
        timestamp=timestamp,
        generation=f"r{revision:08d}-t{lease_token}" if changed or repaired else None,
        new_lists=new_lists,
        fingerprints=fingerprints,
        removed=removed,
        latencies={o.provider_id: o.latency_ms for o in outcomes},
        repaired=tuple(sorted(repaired)),
    )
