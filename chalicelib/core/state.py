"""The refresh state: what the service remembers between runs besides the catalog itself.

Provider statuses (last success, last error), the last run's result and the schedule's bookkeeping. It is
written only by the holder of the refresh lock (``chalicelib.storage.state``), atomically with the catalog
change it describes. ``to_json``/``from_json`` keep the keys version 1 stored, so existing state keeps working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from chalicelib.core.schedule import ScheduleState


@dataclass(frozen=True)
class ProviderStatus:
    last_refreshed_at: str | None = None
    last_error: str | None = None

    def succeeded(self, at: str) -> ProviderStatus:
        return ProviderStatus(last_refreshed_at=at, last_error=None)

    def failed(self, reason: str) -> ProviderStatus:
        return replace(self, last_error=reason)


@dataclass(frozen=True)
class RefreshState:
    providers: Mapping[str, ProviderStatus] = field(default_factory=dict)
    last_run: Mapping[str, Any] | None = None  # a RefreshResult as JSON (possibly truncated to fit the item)
    last_run_at: str | None = None
    schedule: ScheduleState = field(default_factory=ScheduleState)
    # The lock token of the run that stored this state. A later acquire whose token is not the next one means that
    # a run in between ended without storing its state (it crashed, or failed), and may have left chunks behind.
    token: int | None = None

    def status(self, provider_id: str) -> ProviderStatus:
        return self.providers.get(provider_id) or ProviderStatus()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "providers": {
                pid: {"last_refreshed_at": s.last_refreshed_at, "last_error": s.last_error}
                for pid, s in sorted(self.providers.items())
            },
        }
        optional = {
            "last_run": self.last_run,
            "last_run_at": self.last_run_at,
            "last_scheduled_at_ms": self.schedule.last_scheduled_at_ms,
            "started_deployment": self.schedule.started_deployment,
            "interval_anchor_ms": self.schedule.interval_anchor_ms,
            "token": self.token,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return body

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> RefreshState:
        raw = raw or {}
        return cls(
            providers={
                pid: ProviderStatus(last_refreshed_at=s.get("last_refreshed_at"), last_error=s.get("last_error"))
                for pid, s in (raw.get("providers") or {}).items()
            },
            last_run=raw.get("last_run"),
            last_run_at=raw.get("last_run_at"),
            schedule=ScheduleState(
                last_scheduled_at_ms=raw.get("last_scheduled_at_ms"),
                started_deployment=raw.get("started_deployment"),
                interval_anchor_ms=raw.get("interval_anchor_ms"),
            ),
            token=raw.get("token"),
        )
