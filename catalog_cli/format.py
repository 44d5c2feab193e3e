"""What the CLI prints for people: aligned tables, numbers, prices, times, and refresh results as diffs.

Text that comes from providers (model ids, names, failure reasons) may hold terminal control characters: an
``ESC [`` sequence could clear the screen, move the cursor or rewrite earlier lines. ``safe`` shows every control
and bidirectional-override character as a visible escape (``\\x1b``), and every human-readable output goes through it.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

# Format characters that reorder or hide text (bidi overrides and isolates, zero-width marks).
_INVISIBLE = frozenset("\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")


def safe(text: object) -> str:
    r"""``text`` with every control character (C0, DEL, C1) and bidi/zero-width format character shown as an
    escape (``\x1b``, ``\u202e``): a terminal prints it, never obeys it."""
    value = str(text)
    if value.isprintable() and not _INVISIBLE.intersection(value):
        return value
    return "".join(_escaped(char) for char in value)


def _escaped(char: str) -> str:
    if char in _INVISIBLE or unicodedata.category(char) == "Cc":
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    rows = [[safe(cell) for cell in row] for row in rows]
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
    text = safe(" ".join(text.split()))
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
        lines.append(f"  unchanged: {safe(', '.join(unchanged))}")
    lines.extend(format_failures(failed))
    return "\n".join(lines)


def format_failures(failed: Sequence[dict[str, Any]]) -> list[str]:
    return [f"  FAILED {safe(failure.get('provider_id'))}: {safe(failure.get('reason'))}" for failure in failed]


def format_changes(changed: Sequence[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for change in changed:
        added, removed, updated = change.get("added") or [], change.get("removed") or [], change.get("updated") or []
        name = safe(change.get("provider_name") or change.get("provider_id"))
        counts = f"{len(added)} added, {len(removed)} removed, {len(updated)} updated"
        lines.append(f"  {safe(change.get('provider_id'))} ({name}): {counts}")
        lines.extend(f"    + {safe(model_id)}" for model_id in added)
        lines.extend(f"    - {safe(model_id)}" for model_id in removed)
        lines.extend(f"    ~ {safe(model_id)}" for model_id in updated)
    return lines


def print_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2, sort_keys=False), file=out)
