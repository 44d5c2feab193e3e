"""Making a RefreshResult smaller when it must fit a size limit (a WebSocket frame, a DynamoDB item).

The stand-ins keep the RefreshResult keys, so a reader can still parse them, and say ``"truncated": true`` so it
knows to refetch: first the field-level ``changes`` go (their counts stay), then the model id lists (counts stay),
then failure reasons are shortened, then the provider lists themselves give way to counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

# A failure reason is a sentence; past this it is cut when a result must shrink.
SHORT_REASON = 200


def shrunk_results(result: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Ever smaller stand-ins for ``result`` (a RefreshResult as JSON)."""
    entries = result.get("changed") or []
    changed = [
        {
            "provider_id": entry.get("provider_id"),
            "provider_name": entry.get("provider_name"),
            "added": [],
            "removed": [],
            "updated": [],
            "changes": [],
            "added_count": len(entry.get("added") or []),
            "removed_count": len(entry.get("removed") or []),
            "updated_count": len(entry.get("updated") or []),
            "changes_count": len(entry.get("changes") or []),
        }
        for entry in entries
    ]
    unchanged = list(result.get("unchanged") or [])
    failed = list(result.get("failed") or [])
    base = {"revision": result.get("revision"), "truncated": True}
    if any(entry.get("changes") for entry in entries):
        with_ids = [
            {**entry, "changes": [], "changes_count": len(entry.get("changes") or [])} for entry in entries
        ]
        yield {**base, "changed": with_ids, "unchanged": unchanged, "failed": failed}
    yield {**base, "changed": changed, "unchanged": unchanged, "failed": failed}
    short_failed = [
        {"provider_id": item.get("provider_id"), "reason": str(item.get("reason") or "")[:SHORT_REASON]}
        for item in failed
    ]
    yield {**base, "changed": changed, "unchanged": unchanged, "failed": short_failed}
    counts = {"unchanged_count": len(unchanged)}
    yield {**base, "changed": changed, "unchanged": [], "failed": short_failed, **counts}
    counts["failed_count"] = len(failed)
    yield {**base, "changed": changed, "unchanged": [], "failed": [], **counts}
    counts["changed_count"] = len(changed)
    yield {**base, "changed": [], "unchanged": [], "failed": [], **counts}


def fit_result(result: Mapping[str, Any], fits: Callable[[Mapping[str, Any]], bool]) -> Mapping[str, Any]:
    """``result`` itself when ``fits(result)``, else the first (largest) stand-in that fits, else the smallest."""
    if fits(result):
        return result
    candidate: Mapping[str, Any] = result
    for candidate in shrunk_results(result):
        if fits(candidate):
            return candidate
    return candidate
