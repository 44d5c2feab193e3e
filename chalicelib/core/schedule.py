"""Pure due-time logic for scheduled refreshes. Portable: any scheduler that fires the tick works.

A tick refreshes when ``refresh_on_start`` is on and this deployment has not refreshed yet, or when
``refresh_interval_ms > 0`` and the last scheduled refresh is at least that old (``0`` disables it).
With no scheduled refresh on record, the interval counts from the first tick this catalog saw.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleState:
    last_scheduled_at_ms: int | None = None
    started_deployment: str | None = None
    interval_anchor_ms: int | None = None  # first tick seen when nothing ran yet


@dataclass(frozen=True)
class DueCheck:
    due: bool
    reason: str


def _interval_base(state: ScheduleState) -> int | None:
    return state.last_scheduled_at_ms if state.last_scheduled_at_ms is not None else state.interval_anchor_ms


def check_due(
    now_ms: int, interval_ms: int, refresh_on_start: bool, state: ScheduleState, deployment_id: str
) -> DueCheck:
    if refresh_on_start and state.started_deployment != deployment_id:
        return DueCheck(True, "refresh_on_start: this deployment has not refreshed yet")
    if interval_ms <= 0:
        return DueCheck(False, "interval refresh disabled (refresh_interval_ms = 0)")
    base = _interval_base(state)
    if base is None:
        return DueCheck(False, "interval starts now (no scheduled refresh on record)")
    if now_ms - base >= interval_ms:
        return DueCheck(True, f"interval elapsed ({now_ms - base} ms ≥ {interval_ms} ms)")
    return DueCheck(False, f"next refresh in {interval_ms - (now_ms - base)} ms")


def next_due_ms(
    now_ms: int, interval_ms: int, refresh_on_start: bool, state: ScheduleState, deployment_id: str
) -> int | None:
    """When the next tick will refresh (``now`` when already due); None when nothing is scheduled."""
    if refresh_on_start and state.started_deployment != deployment_id:
        return now_ms
    if interval_ms <= 0:
        return None
    base = _interval_base(state)
    if base is None:
        return now_ms + interval_ms
    return max(now_ms, base + interval_ms)
