"""The one timestamp format of the service: ISO-8601 in UTC with a ``Z``."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utc_iso(seconds: float | None = None, timespec: str = "milliseconds") -> str:
    """``seconds`` since the epoch (now by default) as e.g. ``2026-11-30T04:11:50.123Z``."""
    moment = datetime.fromtimestamp(time.time() if seconds is None else seconds, tz=UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def utc_iso_ms(milliseconds: int | None, timespec: str = "seconds") -> str | None:
    """A millisecond timestamp (or ``None``) as ISO-8601 UTC."""
    return None if milliseconds is None else utc_iso(milliseconds / 1000, timespec)
