"""What the CLI prints for people: aligned tables, numbers, prices, times, and refresh results as diffs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(cells)]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value >= 0.01 or value == 0 else f"{value:.2g}"


def price(pricing: dict[str, float] | None) -> str:
    if not pricing:
        return "-"
    return f"{_money(pricing.get('input_per_mtok'))} / {_money(pricing.get('output_per_mtok'))}"


def clip(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def when(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return "never"
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    relative = duration(abs(seconds))
    suffix = "ago" if seconds >= 0 else "from now"
    return f"{iso} ({'now' if abs(seconds) < 1 else f'{relative} {suffix}'})"


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(seconds // 3600, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def format_result(result: dict[str, Any]) -> str:
    """A RefreshResult as lines a person reads: a summary, then every diff and failure."""
    changed = result.get("changed") or []
    unchanged = result.get("unchanged") or []
    failed = result.get("failed") or []
    lines = [
        f"revision {result.get('revision')}: {len(changed)} changed, {len(unchanged)} unchanged, {len(failed)} failed"
    ]
    lines.extend(format_changes(changed))
    if unchanged:
        lines.append(f"  unchanged: {', '.join(unchanged)}")
    for failure in failed:
        lines.append(f"  FAILED {failure.get('provider_id')}: {failure.get('reason')}")
    return "\n".join(lines)


def format_changes(changed: Sequence[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for change in changed:
        added, removed, updated = change.get("added") or [], change.get("removed") or [], change.get("updated") or []
        name = change.get("provider_name") or change.get("provider_id")
        counts = f"{len(added)} added, {len(removed)} removed, {len(updated)} updated"
        lines.append(f"  {change.get('provider_id')} ({name}): {counts}")
        lines.extend(f"    + {model_id}" for model_id in added)
        lines.extend(f"    - {model_id}" for model_id in removed)
        lines.extend(f"    ~ {model_id}" for model_id in updated)
    return lines


def format_event(message: dict[str, Any]) -> list[str]:
    """One change event (WebSocket or ``GET /changes``) as lines: when, seq and revision, then the diff."""
    payload = message.get("payload") or {}
    stamp = message.get("timestamp") or datetime.now(UTC).isoformat(timespec="seconds")
    lines = [f"[{stamp}] #{message.get('seq')} catalog changed, revision {payload.get('revision')}"]
    lines.extend(format_changes(payload.get("changed") or []))
    for failure in payload.get("failed") or []:
        lines.append(f"  FAILED {failure.get('provider_id')}: {failure.get('reason')}")
    if message.get("truncated") or payload.get("truncated"):
        lines.append("  (payload truncated; run `models` for the full catalog)")
    return lines


def print_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2, sort_keys=False), file=out)
