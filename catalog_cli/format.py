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
    """Each provider's diff: ``+`` added, ``-`` removed, ``~`` updated ids, an updated id followed by what changed
    (``~ gpt-4o: context 128K → 200K; input $3.00 → $2.50``) when the result carries its field-level changes."""
    lines: list[str] = []
    for change in changed:
        added, removed, updated = change.get("added") or [], change.get("removed") or [], change.get("updated") or []
        name = safe(change.get("provider_name") or change.get("provider_id"))
        counts = f"{len(added)} added, {len(removed)} removed, {len(updated)} updated"
        lines.append(f"  {safe(change.get('provider_id'))} ({name}): {counts}")
        lines.extend(f"    + {safe(model_id)}" for model_id in added)
        lines.extend(f"    - {safe(model_id)}" for model_id in removed)
        phrases: dict[str, list[str]] = {}
        for field_change in change.get("changes") or []:
            phrases.setdefault(str(field_change.get("model_id")), []).extend(describe_change(field_change))
        for model_id in updated:
            said = phrases.get(model_id)
            shown = safe(model_id)
            lines.append(f"    ~ {shown}: {safe('; '.join(said))}" if said else f"    ~ {shown}")
    return lines


# -- field-level changes (docs/reference.md §10, "How a change reads") --------------------------------------------
NONE = "—"
ARROW = "→"
_PRICES = (
    ("input_per_mtok", "input"),
    ("output_per_mtok", "output"),
    ("cache_read_per_mtok", "cache read"),
    ("cache_write_per_mtok", "cache write"),
)


def tokens(value: Any) -> str:
    """A token count in short form: 950, 8.2K, 128K, 131.1K, 1M, 1.05M."""
    if not isinstance(value, int) or isinstance(value, bool):
        return NONE
    if value < 1_000:
        return str(value)
    if value < 1_000_000:
        return f"{value / 1_000:.1f}".removesuffix(".0") + "K"
    return f"{value / 1_000_000:.2f}".rstrip("0").rstrip(".") + "M"


def dollars(value: Any) -> str:
    """A price in USD per million tokens: cents as cents ($3.00, $0.15, $0), finer prices as they are ($0.075,
    $0.0028)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return NONE
    if value == 0:
        return "$0"
    return f"${value:.2f}" if round(value, 2) == value else f"${value:.6g}"


def _pair(before: Any, after: Any, short: Any, exact: Any) -> str:
    """``before → after`` in the short form, or exactly when the short form would show the same text twice."""
    left, right = short(before), short(after)
    if left == right:
        left, right = exact(before), exact(after)
    return f"{left} {ARROW} {right}"


def _exact_tokens(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else NONE


def _exact_dollars(value: Any) -> str:
    return f"${value!r}" if isinstance(value, (int, float)) else NONE


def _set_change(label: str, before: Any, after: Any) -> str | None:
    old, new = set(before or []), set(after or [])
    if old == new:
        return None
    return " ".join([label, *(f"+{v}" for v in sorted(new - old)), *(f"-{v}" for v in sorted(old - new))])


def describe_change(change: dict[str, Any]) -> list[str]:
    """One field change (``{"model_id", "field", "before", "after"}``) as the phrases a person reads."""
    field, before, after = change.get("field"), change.get("before"), change.get("after")
    phrases: list[str | None] = []
    if field == "context_length":
        phrases.append("context " + _pair(before, after, tokens, _exact_tokens))
    elif field == "max_output_tokens":
        phrases.append("max output " + _pair(before, after, tokens, _exact_tokens))
    elif field == "display_name":
        phrases.append(f"name {_quoted(before)} {ARROW} {_quoted(after)}")
    elif field == "status":
        phrases.append("deprecated" if after == "deprecated" else "no longer deprecated")
    elif field == "retires_at":
        if before is None:
            phrases.append(f"retires {after}")
        elif after is None:
            phrases.append(f"retirement date withdrawn (was {before})")
        else:
            phrases.append(f"retirement {before} {ARROW} {after}")
    elif field == "pricing":
        old, new = before or {}, after or {}
        for key, label in _PRICES:
            if old.get(key) != new.get(key):
                phrases.append(f"{label} " + _pair(old.get(key), new.get(key), dollars, _exact_dollars))
    elif field == "capabilities":
        phrases.append(_set_change("capabilities", before, after))
    elif field == "modalities":
        old, new = before or {}, after or {}
        for side in ("input", "output"):
            phrases.append(_set_change(f"{side} modalities", old.get(side), new.get(side)))
    said = [p for p in phrases if p]
    return said or [f"{field} changed"]


def _quoted(value: Any) -> str:
    return NONE if value is None else f'"{value}"'


def format_event(message: dict[str, Any]) -> list[str]:
    """One change event (WebSocket or ``GET /changes``) as lines: when, seq and revision, then the diff."""
    payload = message.get("payload") or {}
    stamp = message.get("timestamp") or datetime.now(UTC).isoformat(timespec="seconds")
    lines = [f"[{stamp}] #{message.get('seq')} catalog changed, revision {payload.get('revision')}"]
    lines.extend(format_changes(payload.get("changed") or []))
    lines.extend(format_failures(payload.get("failed") or []))
    if message.get("truncated") or payload.get("truncated"):
        lines.append("  (payload truncated; run `models` for the full catalog)")
    return lines


def print_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2, sort_keys=False), file=out)
