"""Refresh-all of 20 providers that each answer in 300 ms (issues 4/8/17), against ``fetch_concurrency = 1``;
and the no-change refresh's catalog writes (must be 0). Goals (issue 17): every provider changed ≤ 1.5 × one
provider's latency, nothing changed ≤ 1.2 × (version 1's goal was 2.5 × for both)."""

from __future__ import annotations

import time
from typing import Any

from tests.bench.common import CATALOG_TABLE, Goal, ScenarioResult, fmt, timed
from tests.bench.data import openai_models_body
from tests.bench.stackctl import log_entries, running_stack
from tests.fakes.provider_server import FakeProviderServer
from tests.stack import LocalStack

CHANGED_FACTOR = 1.5  # the goals: at most 1.5 × one provider's latency when every provider changed,
UNCHANGED_FACTOR = 1.2  # 1.2 × when nothing did
VERSION_1_FACTOR = 2.5


def _providers(servers: list[FakeProviderServer]) -> list[dict[str, Any]]:
    return [
        {"id": f"p{i:02d}", "name": f"Provider {i}", "kind": "openai", "base_url": f"{server.url}/v1"}
        for i, server in enumerate(servers)
    ]


def _serve(servers: list[FakeProviderServer], version: int, delay: float) -> None:
    for i, server in enumerate(servers):
        server.route("GET", "/v1/models", json=openai_models_body(i, version), delay=delay)


def _refresh(stack: LocalStack, path: str = "/api/v1/providers:refresh") -> tuple[float, dict[str, Any], dict]:
    """(wall seconds, RefreshResult, the engine's "refresh run" log line for it)."""
    before = len(log_entries(stack, "refresh run"))
    seconds, response = timed(stack.post, path)
    if response.status_code != 200:
        raise RuntimeError(f"POST {path} → {response.status_code}: {response.text[:300]}")
    deadline = time.monotonic() + 3
    entries = log_entries(stack, "refresh run")
    while len(entries) <= before and time.monotonic() < deadline:
        time.sleep(0.02)
        entries = log_entries(stack, "refresh run")
    return seconds, response.json(), (entries[-1] if len(entries) > before else {})


def _catalog_writes(stack: LocalStack) -> int:
    return stack.dynamodb_write_counts().get(CATALOG_TABLE, 0)


def _measure(
    stack: LocalStack, servers: list[FakeProviderServer], delay: float, reps: int, version: int,
    result: ScenarioResult, label: str,
) -> tuple[int, dict[str, list[float]], tuple[Any, Any, Any]]:
    count = len(servers)
    changing = result.new_series(f"{label}: refresh-all wall time, every provider changed", "s")
    unchanged = result.new_series(f"{label}: refresh-all wall time, nothing changed", "s")
    writes = result.new_series(f"{label}: catalog writes of the no-change refresh", "writes")
    breakdown: dict[str, list[float]] = {"engine_changing": [], "fetch_changing": [], "engine_unchanged": [],
                                         "fetch_unchanged": []}
    for _ in range(reps):
        version += 1
        _serve(servers, version, delay)
        seconds, body, entry = _refresh(stack)
        if len(body["changed"]) != count:
            raise RuntimeError(f"expected {count} changed providers, got {body}")
        changing.add(seconds)
        _note_breakdown(breakdown, "changing", entry)
        result.sample_load()

        before = _catalog_writes(stack)
        seconds, body, entry = _refresh(stack)
        writes.add(_catalog_writes(stack) - before)
        if len(body["unchanged"]) != count or body["changed"]:
            raise RuntimeError(f"expected {count} unchanged providers, got {body}")
        unchanged.add(seconds)
        _note_breakdown(breakdown, "unchanged", entry)
    return version, breakdown, (changing, unchanged, writes)


def _note_breakdown(breakdown: dict[str, list[float]], kind: str, entry: dict[str, Any]) -> None:
    if not entry:
        return
    breakdown[f"engine_{kind}"].append(entry.get("duration_ms", 0) / 1000)
    latencies = [p.get("latency_ms", 0) for p in (entry.get("providers") or {}).values()]
    if latencies:
        breakdown[f"fetch_{kind}"].append(max(latencies) / 1000)


def _median(values: list[float]) -> float | None:
    import statistics

    return statistics.median(values) if values else None


def default_fetch_concurrency() -> int:
    from chalicelib.catalog_config import CatalogOptions

    return CatalogOptions().fetch_concurrency


def run(quick: bool) -> ScenarioResult:
    count = 5 if quick else 20
    delay = 0.1 if quick else 0.3
    reps = 1 if quick else 7
    baseline_reps = 1 if quick else 3
    default = default_fetch_concurrency()
    result = ScenarioResult("refresh_all", f"Refresh-all: {count} providers × {delay * 1000:.0f} ms")
    result.method = [
        f"{count} OpenAI-compatible providers, each its own `FakeProviderServer` (threaded HTTP server on its own "
        f"127.0.0.1 port, like {count} different hosts), answering `GET /v1/models` after `delay={delay}` s with 13 "
        "models.",
        "A fresh local stack per configuration (`python -m devstack` via `tests/stack.py`: embedded "
        "serialized moto DynamoDB child process, Chalice local HTTP server), `refresh_on_start = false`.",
        f"Configurations: the default `fetch_concurrency` ({default}; the goals are judged on it)"
        + (f", `fetch_concurrency = {count}` (one thread per provider)" if default < count else "")
        + ", and `fetch_concurrency = 1` as the sequential baseline.",
        "Wall time = `POST /api/v1/providers:refresh` as seen by an HTTP client (requests), from send to full "
        "response. One untimed warm-up refresh first (fills the catalog, creates the lazy clients).",
        f"Each repetition: change every provider's list (one model renamed) → timed refresh (all {count} `changed`: "
        "new chunk generations, the fenced commit, the event, its fan-out to 0 clients, garbage collection) → timed "
        "refresh again (all `unchanged`), counting catalog-table write calls with the embedded DynamoDB's counter "
        "(`GET /_stats/writes`) around it.",
        f"{reps} repetitions per concurrent configuration, {baseline_reps} for the baseline; medians reported.",
        "Server-side split from the engine's structured `refresh run` log line: `duration_ms` (lock acquired → "
        "commit, including the fetch) and the slowest provider's `latency_ms`.",
    ]
    configurations: list[tuple[str, dict[str, Any], int]] = [(f"default ({default})", {}, reps)]
    if default < count:
        configurations.append((f"fetch_concurrency = {count}", {"fetch_concurrency": count}, reps))
    configurations.append(("baseline (fetch_concurrency = 1)", {"fetch_concurrency": 1}, baseline_reps))

    measured: dict[str, tuple[Any, Any, Any]] = {}
    breakdowns: dict[str, dict[str, list[float]]] = {}
    servers = [FakeProviderServer() for _ in range(count)]
    try:
        _serve(servers, 0, delay)
        providers = _providers(servers)
        version = 0
        for label, options, repetitions in configurations:
            with running_stack(options, providers) as stack:
                result.sample_load()
                _refresh(stack)  # warm-up: fills the catalog
                version, breakdowns[label], measured[label] = _measure(
                    stack, servers, delay, repetitions, version, result, label
                )
                if label.startswith("default"):
                    single = result.new_series(f"{label}: one provider (`POST /providers/p00:refresh`, unchanged)", "s")
                    for _ in range(repetitions):
                        seconds, _body, _entry = _refresh(stack, "/api/v1/providers/p00:refresh")
                        single.add(seconds)
                result.sample_load()
        most_parallel = max(server.max_in_flight("/v1/models") for server in servers)
        result.facts.append(("most requests one fake provider saw at once", str(most_parallel)))
    finally:
        for server in servers:
            server.close()

    default_label, baseline_label = configurations[0][0], configurations[-1][0]
    changing, unchanged, _writes = measured[default_label]
    baseline_changing, baseline_unchanged, _ = measured[baseline_label]

    def ratio(a: Any, b: Any) -> str:
        return f"{a.median / b.median:.1f}×" if a.median and b.median else "—"

    for label, _options, _reps in configurations[:-1]:
        result.facts += [
            (f"baseline / {label}, changing run", ratio(baseline_changing, measured[label][0])),
            (f"baseline / {label}, unchanged run", ratio(baseline_unchanged, measured[label][1])),
        ]
    result.facts.append(("sequential floor (providers × delay)", f"{count * delay:.1f} s"))
    for label, _options, _reps in configurations:
        for index, kind in enumerate(("changing", "unchanged")):
            engine, fetch = _median(breakdowns[label][f"engine_{kind}"]), _median(breakdowns[label][f"fetch_{kind}"])
            wall = measured[label][index].median
            if engine is not None and fetch is not None and wall is not None:
                result.facts.append((
                    f"{label}, {kind}: server-side split (medians)",
                    f"slowest provider fetch {fmt(fetch)} s · engine run {fmt(engine)} s (from lock to commit, fetch "
                    f"included) · outside the engine run (HTTP, lock acquire/release, fan-out) {fmt(wall - engine)} s",
                ))
    all_writes = [w for (_c, _u, series) in measured.values() for w in series.samples]
    result.goals = [
        Goal(f"refresh-all, {count} × {delay * 1000:.0f} ms, changing run", CHANGED_FACTOR * delay, "s",
             changing.median,
             detail=f"≤ {CHANGED_FACTOR} × {delay} s (version 1: ≤ {VERSION_1_FACTOR} ×); "
                    f"{changing.median / delay:.2f} × one provider's latency; sequential baseline "
                    f"{fmt(baseline_changing.median)} s ({ratio(baseline_changing, changing)} slower)"),
        Goal(f"refresh-all, {count} × {delay * 1000:.0f} ms, unchanged run", UNCHANGED_FACTOR * delay, "s",
             unchanged.median,
             detail=f"≤ {UNCHANGED_FACTOR} × {delay} s (version 1: ≤ {VERSION_1_FACTOR} ×); "
                    f"{unchanged.median / delay:.2f} × one provider's latency; sequential baseline "
                    f"{fmt(baseline_unchanged.median)} s ({ratio(baseline_unchanged, unchanged)} slower)"),
        Goal("no-change refresh: catalog writes (max over all runs)", 0, "writes",
             max(all_writes) if all_writes else None,
             detail=f"table `{CATALOG_TABLE}`, {len(all_writes)} no-change runs of {count} providers"),
    ]
    result.extra = {"breakdowns": breakdowns}
    return result
