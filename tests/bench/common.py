"""What every scenario shares: repeated measurements, goals, the machine, process memory, DynamoDB item sizes."""

from __future__ import annotations

import contextlib
import decimal
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CATALOG_TABLE = "model-catalog-catalog"


# -- measurements -----------------------------------------------------------------------------------------
@dataclass
class Series:
    """Repeated samples of one quantity; reported as the median (min–max, n)."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.samples.append(float(value))

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def text(self, digits: int = 3) -> str:
        if not self.samples:
            return "—"
        median = _fmt(self.median, digits)
        if len(self.samples) == 1:
            return f"{median} {self.unit} (n=1)"
        low, high = _fmt(min(self.samples), digits), _fmt(max(self.samples), digits)
        return f"{median} {self.unit} ({low}–{high}, n={len(self.samples)})"

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "median": self.median, "samples": self.samples}


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.{max(digits - 1, 1)}f}".rstrip("0").rstrip(".")


def fmt(value: float | None, digits: int = 3) -> str:
    return _fmt(value, digits)


@dataclass
class Goal:
    """One goal: ``measured`` is compared with ``limit`` (``<=``; ``>=`` with ``at_least``)."""

    name: str
    limit: float
    unit: str
    measured: float | None
    detail: str = ""
    why: str = ""  # filled by the scenario when the goal is missed (or is close)
    at_least: bool = False

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "not measured"
        if self.met:
            return "met"
        gap = abs(self.measured - self.limit)  # type: ignore[operator]
        share = f", {gap / self.limit:.0%} {'short' if self.at_least else 'over'}" if self.limit else ""
        return f"**missed** by {fmt(gap)} {self.unit}{share}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "limit": self.limit, "unit": self.unit, "measured": self.measured,
                "met": self.met, "detail": self.detail, "why": self.why, "at_least": self.at_least}


@dataclass
class ScenarioResult:
    key: str
    title: str
    method: list[str] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)  # (what, value) rows beside the series
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)  # (title, header, rows)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load: list[tuple[float, float, float]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # raw data kept in the JSON output

    def new_series(self, name: str, unit: str) -> Series:
        series = Series(name, unit)
        self.series.append(series)
        return series

    def sample_load(self) -> None:
        self.load.append(os.getloadavg())

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "series": {s.name: s.to_json() for s in self.series},
            "facts": dict(self.facts),
            "tables": [{"title": t, "header": h, "rows": r} for t, h, r in self.tables],
            "goals": [g.to_json() for g in self.goals],
            "notes": self.notes,
            "load": self.load,
            "error": self.error,
            "seconds": self.seconds,
            "extra": self.extra,
        }


# -- the machine ----------------------------------------------------------------------------------------------
def machine_info() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        ram = f"{kb / 1024 / 1024:.1f} GiB"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "CPU": cpu,
        "cores": f"{os.cpu_count()} logical ({usable} usable by this process)",
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "git commit": git_commit(),
    }


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" (with uncommitted changes)" if dirty else "")


def load_text(samples: Iterable[tuple[float, float, float]]) -> str:
    samples = list(samples)
    if not samples:
        return "—"
    one_minute = [s[0] for s in samples]
    return f"1-min load {min(one_minute):.2f}–{max(one_minute):.2f} (on {os.cpu_count()} cores)"


# -- process memory -----------------------------------------------------------------------------------------
def _status_kb(pid: int, field_name: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def rss_mb(pid: int) -> float | None:
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else kb / 1024


class PeakRss:
    """The peak resident set size of ``pid`` during a ``with`` block.

    Two independent measures: the kernel's high-water mark ``VmHWM`` after resetting it at the start (writing
    ``5`` to ``/proc/<pid>/clear_refs``; ``hwm_reset`` tells whether that worked), and ``VmRSS`` polled every
    ``interval_s`` on a thread (can miss a spike shorter than the interval, never over-reports).
    """

    def __init__(self, pid: int, interval_s: float = 0.005):
        self.pid = pid
        self.interval_s = interval_s
        self.before_mb: float | None = None
        self.polled_peak_mb: float = 0.0
        self.hwm_mb: float | None = None
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakRss:
        self.before_mb = rss_mb(self.pid)
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.polled_peak_mb = max(self.polled_peak_mb, value)
            self._stop.wait(self.interval_s)

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        kb = _status_kb(self.pid, "VmHWM")
        self.hwm_mb = None if kb is None else kb / 1024

    @property
    def peak_mb(self) -> float:
        """The best estimate of the peak: the reset high-water mark if available, else the polled maximum."""
        if self.hwm_reset and self.hwm_mb is not None:
            return max(self.hwm_mb, self.polled_peak_mb)
        return self.polled_peak_mb


# -- DynamoDB item sizes --------------------------------------------------------------------------------------
def _number_size(text: str) -> int:
    # DynamoDB: numbers take about 1 byte per 2 significant digits, plus 1 byte.
    digits = decimal.Decimal(text).normalize().as_tuple().digits
    return (len(digits) + 1) // 2 + 1


def attribute_size(value: dict[str, Any]) -> int:
    """The size of one attribute value by DynamoDB's published rules (low-level client shapes)."""
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode("utf-8"))
    if kind == "N":
        return _number_size(inner)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode("utf-8")) for v in inner)
    if kind == "NS":
        return sum(_number_size(v) for v in inner)
    if kind == "BS":
        return sum(len(v) for v in inner)
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + attribute_size(v) for k, v in inner.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode("utf-8")) + attribute_size(value) for name, value in item.items())


def biggest_items(client: Any) -> dict[str, tuple[int, int, str]]:
    """Per table: (item count, biggest item's size in bytes, its key)."""
    result: dict[str, tuple[int, int, str]] = {}
    for table in client.list_tables()["TableNames"]:
        keys = [k["AttributeName"] for k in client.describe_table(TableName=table)["Table"]["KeySchema"]]
        count, biggest, biggest_key = 0, 0, ""
        for page in client.get_paginator("scan").paginate(TableName=table):
            for item in page.get("Items", []):
                count += 1
                size = item_size(item)
                if size > biggest:
                    biggest = size
                    biggest_key = "/".join(str(next(iter(item[k].values()))) for k in keys if k in item)
        result[table] = (count, biggest, biggest_key)
    return result


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - started, value


# The largest page ``GET /api/v1/models`` gives.
MODELS_PAGE = 5_000


@dataclass(frozen=True)
class PagedRead:
    """The whole catalog read page by page: time spent in the requests, bytes of the answers, models, and the
    first page's ETag."""

    seconds: float
    size: int
    count: int
    etag: str


def read_all_pages(stack: Any, page: int = MODELS_PAGE) -> PagedRead:
    """Every model as a client reads the catalog: pages of ``page`` following ``next_cursor`` (a large catalog is
    refused unpaged with ``page_required``: deployed, it would not fit one Lambda response)."""
    seconds, size, count, etag, cursor = 0.0, 0, 0, "", None
    while True:
        path = f"/api/v1/models?limit={page}" + (f"&cursor={cursor}" if cursor else "")
        took, response = timed(stack.get, path, timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        seconds, size = seconds + took, size + len(response.content)
        etag = etag or response.headers.get("ETag", "")
        body = response.json()
        count += len(body["models"])
        cursor = body["next_cursor"]
        if not cursor:
            return PagedRead(seconds, size, count, etag)
