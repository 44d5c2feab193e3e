"""Operator overrides (docs/reference.md §10): config values that win over what a provider says. Pure, no I/O.

They are applied to a provider's normalized records as the engine receives them, before the fingerprint and the
diff, so an override survives every refresh, and changing one shows up as an ordinary update at the next refresh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from chalicelib.core.domain import PRICING_FIELDS, ModelRecord


@dataclass(frozen=True)
class Override:
    """One ``[[overrides]]`` entry of a provider: ``model`` is an exact model id or a shell-style glob; ``values``
    maps record fields to record-shaped values. A ``pricing`` value is merged over the provider's pricing (the
    cache prices it leaves out are kept); every other value replaces the provider's whole."""

    model: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, model_id: str) -> bool:
        return model_id == self.model or fnmatchcase(model_id, self.model)


def apply_overrides(records: Sequence[ModelRecord], overrides: Sequence[Override]) -> Sequence[ModelRecord]:
    """``records`` with every matching override applied, in config order (a later one wins for the same field).
    Records no override matches are passed through; the order (by id) is kept, as ids are never overridden."""
    if not overrides:
        return records
    result: list[ModelRecord] = []
    for record in records:
        matching = [override for override in overrides if override.matches(str(record["id"]))]
        if matching:
            record = dict(record)
            for override in matching:
                for name, value in override.values.items():
                    if name == "pricing":
                        known = record.get("pricing") or dict.fromkeys(PRICING_FIELDS)
                        value = {**known, **value}
                    record[name] = value
        result.append(record)
    return result
