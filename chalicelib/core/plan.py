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

Cost follows the change: a list is cut into content-defined chunks (``chalicelib.core.chunking``) whose digests the
manifest keeps, so for a provider that differs only the stored chunks the new answer does not keep are read
(``stored_chunks_to_read``) and diffed against the new chunks, and only new chunks are written (``ListWrite``).
Deleting the chunks a list no longer uses is decided here too (``collectable``), so that it never touches a chunk
the new manifest (or the one before it, which readers may still hold) references.

Which ``(epoch, seq)`` the event gets is ``chalicelib.core.epoch``'s decision, passed in as a ``Cursor``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from chalicelib.clock import utc_iso
from chalicelib.core.chunking import (
    DEFAULT_MAX_CHUNK_BYTES,
    ChunkRef,
    Layout,
    ListWrite,
    layout,
    plan_list,
    replaced_refs,
)
from chalicelib.core.diff import ShrinkPolicy, diff_models, shrink_failure
from chalicelib.core.domain import (
    ModelRecord,
    ProviderChange,
    ProviderFailure,
    RefreshResult,
    Scope,
    Trigger,
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
    layout: Layout | None = None  # ``models`` cut into chunks (with the fingerprint, in one pass)

    @classmethod
    def succeeded(
        cls,
        provider_id: str,
        models: Sequence[ModelRecord],
        latency_ms: int = 0,
        max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    ) -> FetchOutcome:
        cut = layout(models, max_chunk_bytes)
        return cls(provider_id, models=models, latency_ms=latency_ms, fingerprint=cut.fingerprint, layout=cut)

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


def stored_chunks_to_read(entry: ProviderEntry, outcome: FetchOutcome) -> tuple[ChunkRef, ...] | None:
    """What the diff of a differing provider needs from its stored list: the chunks the new answer does not keep
    (``stored`` of ``plan_refresh`` then holds only their models), or None for the whole list (a list stored
    before chunks had digests, whose chunks cannot be matched)."""
    if entry.parts is None or outcome.layout is None:
        return None
    return tuple(replaced_refs(entry.parts, outcome.layout))


def chunks_to_check(manifest: Manifest, token: int, count: int) -> list[tuple[str, str]]:
    """A rotating sample of ``count`` stored chunks, ``(provider id, key)``, to check for loss on this run.

    Checking every list on every run would cost as much as the catalog; each run checks a few chunks instead, the
    next ones after the previous run's (``token`` counts runs), so every chunk is checked every
    ``chunks / count`` runs. (A reader that finds a list broken asks the next run to repair it at once.)"""
    keys = [(pid, key) for pid in sorted(manifest.providers) for key in manifest.providers[pid].chunk_keys()]
    if not keys:
        return []
    start = (token * count) % len(keys)
    return [keys[(start + offset) % len(keys)] for offset in range(min(count, len(keys)))]


@dataclass(frozen=True)
class RefreshPlan:
    result: RefreshResult
    state: RefreshState  # what the run stores: statuses, last run, schedule bookkeeping
    timestamp: str
    generation: str | None = None  # the chunk generation of this run's new lists (None: nothing to write)
    new_lists: Mapping[str, Sequence[ModelRecord]] = field(default_factory=dict)
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    writes: Mapping[str, ListWrite] = field(default_factory=dict)  # per new list: its chunk refs, the chunks to write
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

    def next_manifest(self, manifest: Manifest, cursor: Cursor | None = None) -> Manifest:
        """The manifest to commit once the new chunks are written. ``cursor`` is the event's position (default: the
        next seq of the manifest's epoch); a repair keeps the manifest's."""
        assert self.generation is not None, "an unchanged plan commits nothing"
        providers = {pid: entry for pid, entry in manifest.providers.items() if pid not in self.removed}
        for provider_id, models in self.new_lists.items():
            refs = self.writes[provider_id].refs
            old = manifest.providers.get(provider_id)
            kept = {ref.key for ref in refs}
            retired = tuple(key for key in old.chunk_keys() if key not in kept) if old is not None else ()
            providers[provider_id] = ProviderEntry(
                self.generation, len(refs), len(models), self.fingerprints[provider_id], parts=refs, retired=retired
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

    def collectable(self, old: Manifest, new: Manifest) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
        """What to delete once ``new`` (this plan's manifest) replaced ``old``: chunk keys per provider, and the
        providers whose chunks must be listed to find them (``{provider: generations to keep}``: a list stored in
        the one-generation layout, whose previous generation no manifest names; a provider that left).

        Readers that started on ``old`` may still read its chunks, so a list's own previous chunks stay (``retired``)
        until it changes again; what goes now is what ``old`` had retired. Nothing ``new`` references is deleted."""
        keys: dict[str, list[str]] = {}
        sweeps: dict[str, set[str]] = {pid: set() for pid in self.removed}
        for provider_id in self.new_lists:
            before = old.providers.get(provider_id)
            if before is None:
                continue
            if before.parts is None:
                sweeps[provider_id] = {before.generation, new.providers[provider_id].generation}
                continue
            live = set(new.providers[provider_id].chunk_keys()) | set(new.providers[provider_id].retired)
            doomed = [key for key in before.retired if key not in live]
            if doomed:
                keys[provider_id] = doomed
        return keys, sweeps

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
    """Decide one run. ``stored`` holds what ``lists_to_read`` asked for and could be read: per provider, the models
    of the chunks ``stored_chunks_to_read`` names (all of them when it says None, and for a provider that leaves);
    ``broken`` names the providers whose stored list is missing or unreadable (and why); ``now`` is wall-clock
    seconds."""
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
    layouts: dict[str, tuple[tuple[ChunkRef, ...] | None, Layout]] = {}  # per new list: stored refs it may keep
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
        cut = outcome.layout or layout(outcome.models)
        fingerprint = cut.fingerprint
        if entry is not None and entry.fingerprint == fingerprint:
            unchanged.append(pid)
            statuses[pid] = status.succeeded(timestamp)
            if pid in broken:  # the same models, but their stored copy is gone: write them again
                repaired.append(pid)
                new_lists[pid] = outcome.models
                fingerprints[pid] = fingerprint
                layouts[pid] = (None, cut)  # nothing stored can be trusted: every chunk is written again
            continue
        unknown = entry is not None and (pid not in stored or pid in broken)  # broken: diff against nothing
        kept_refs = entry.parts if entry is not None and not unknown else None  # stored chunks the answer may keep
        old = stored[pid] if entry is not None and not unknown else []
        new: Sequence[ModelRecord] = outcome.models
        if kept_refs is not None:  # only the chunks that differ: ``old`` holds the stored ones the answer replaces
            digests = {ref.digest for ref in kept_refs}
            new = [m for piece in cut.pieces if piece.digest not in digests for m in new[piece.start : piece.end]]
        old_count = entry.count if entry is not None else 0
        refusal = shrink_failure(old_count, len(outcome.models), ShrinkPolicy(threshold, allow_shrink.get(pid, False)))
        if refusal:
            failed.append(ProviderFailure(provider_id=pid, reason=refusal))
            statuses[pid] = status.failed(refusal)
            continue
        statuses[pid] = status.succeeded(timestamp)
        diff = diff_models(old, new)
        if diff.is_empty:  # the same models in another encoding history: nothing to write, no event
            unchanged.append(pid)
            continue
        changed.append(
            ProviderChange(provider_id=pid, provider_name=names.get(pid, pid), **diff.ids(), changes=list(diff.changes))
        )
        new_lists[pid] = outcome.models
        fingerprints[pid] = fingerprint
        layouts[pid] = (kept_refs, cut)

    removed = tuple(removed_providers(manifest, config, scope))
    for gone in removed:
        removed_ids = [str(m["id"]) for m in stored.get(gone, [])]  # unknown when its stored list is broken
        changed.append(ProviderChange(provider_id=gone, provider_name=gone, removed=removed_ids))
    if scope == "all":  # statuses of providers the config no longer names are forgotten with them
        statuses = {pid: status for pid, status in statuses.items() if pid in names}

    changed.sort(key=lambda c: c.provider_id)
    failed.sort(key=lambda f: f.provider_id)
    revision = manifest.revision + 1 if changed else manifest.revision
    generation = f"r{revision:08d}-t{lease_token}"  # new chunk keys carry the writing run's revision and token
    writes = {pid: plan_list(kept, cut, generation) for pid, (kept, cut) in layouts.items()}
    result = RefreshResult(revision=revision, changed=changed, unchanged=sorted(unchanged), failed=failed)
    schedule = state.schedule
    if trigger == "scheduled":
        schedule = replace(schedule, last_scheduled_at_ms=int(now * 1000), started_deployment=deployment_id)
    next_state = RefreshState(
        providers=statuses,
        last_run=result.model_dump(mode="json"),
        last_run_at=timestamp,
        schedule=schedule,
        token=lease_token,
    )
    return RefreshPlan(
        result=result,
        state=next_state,
        timestamp=timestamp,
        generation=generation if changed or repaired else None,
        new_lists=new_lists,
        fingerprints=fingerprints,
        writes=writes,
        removed=removed,
        latencies={o.provider_id: o.latency_ms for o in outcomes},
        repaired=tuple(sorted(repaired)),
    )
