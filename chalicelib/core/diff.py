"""Pure catalog logic: per-provider diffs, the field-level changes of updated models, and the shrink guard. No I/O.

Models are handled here as plain dicts (``Model.model_dump()`` shape without ``provider_id``), keyed by
model id: equality of two dicts means "no metadata change".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chalicelib.core.domain import CHANGE_FIELDS, FieldChange, ModelRecord


@dataclass(frozen=True)
class ModelDiff:
    added: tuple[ModelRecord, ...] = ()
    removed: tuple[str, ...] = ()
    updated: tuple[ModelRecord, ...] = ()
    changes: tuple[FieldChange, ...] = ()  # of the updated models: by model id, then in CHANGE_FIELDS order

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.updated)

    def ids(self) -> dict[str, list[str]]:
        return {
            "added": [str(m["id"]) for m in self.added],
            "removed": list(self.removed),
            "updated": [str(m["id"]) for m in self.updated],
        }


def index_by_id(models: Iterable[ModelRecord]) -> dict[str, ModelRecord]:
    return {str(m["id"]): m for m in models}


def diff_models(old: Sequence[ModelRecord], new: Sequence[ModelRecord]) -> ModelDiff:
    """What changed from ``old`` to ``new``; each list sorted by model id."""
    before, after = index_by_id(old), index_by_id(new)
    added = tuple(after[i] for i in sorted(after.keys() - before.keys()))
    removed = tuple(sorted(before.keys() - after.keys()))
    updated_ids = [i for i in sorted(before.keys() & after.keys()) if before[i] != after[i]]
    changes = tuple(change for i in updated_ids for change in field_changes(before[i], after[i]))
    return ModelDiff(added=added, removed=removed, updated=tuple(after[i] for i in updated_ids), changes=changes)


def field_changes(before: ModelRecord, after: ModelRecord) -> list[FieldChange]:
    """One ``FieldChange`` per field whose value differs (compared whole: a pricing or modalities table is one
    field). A field a record lacks counts as ``None``."""
    model_id = str(after["id"])
    return [
        FieldChange(model_id=model_id, field=name, before=before.get(name), after=after.get(name))
        for name in CHANGE_FIELDS
        if before.get(name) != after.get(name)
    ]


def apply_changes(record: ModelRecord, changes: Iterable[FieldChange]) -> ModelRecord:
    """``record`` with the changes meant for it applied: ``apply_changes(old, field_changes(old, new)) == new``
    for records with every field (what a client holding the old model does with an event)."""
    applied = dict(record)
    for change in changes:
        if change.model_id == record["id"]:
            applied[change.field] = change.after
    return applied


def apply_diff(old: Sequence[ModelRecord], diff: ModelDiff) -> list[ModelRecord]:
    """The inverse view of ``diff_models``: ``apply_diff(old, diff_models(old, new)) == sorted(new)``."""
    models = index_by_id(old)
    for model_id in diff.removed:
        models.pop(model_id, None)
    for model in (*diff.added, *diff.updated):
        models[str(model["id"])] = model
    return [models[i] for i in sorted(models)]


@dataclass(frozen=True)
class ShrinkPolicy:
    threshold: float = 0.5  # a drop of more than this share of the models is suspicious
    allow_shrink: bool = False


def shrink_failure(old_count: int, new_count: int, policy: ShrinkPolicy = ShrinkPolicy()) -> str | None:
    """Why a new list must not replace the old one, or None. An empty answer is never a wipe."""
    if old_count == 0:
        return None
    if new_count == 0:
        return (
            f"the provider answered with an empty model list (it had {old_count} models); "
            "keeping the last good list"
        )
    dropped = (old_count - new_count) / old_count
    if dropped > policy.threshold and not policy.allow_shrink:
        return (
            f"the model count dropped from {old_count} to {new_count} (more than {policy.threshold:.0%}); "
            "keeping the last good list — set allow_shrink = true for this provider if this is expected"
        )
    return None
