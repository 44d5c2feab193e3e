"""One registry provider with 20,000 models (issue 8): first fill, a 100-added/100-removed refresh, the full
``GET /api/v1/models``, peak RSS of the refresh, the biggest DynamoDB item."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.bench.common import (
    CATALOG_TABLE,
    MODELS_PAGE,
    REPO,
    Goal,
    PeakRss,
    ScenarioResult,
    biggest_items,
    fmt,
    read_all_pages,
    rss_mb,
    timed,
)
from tests.bench.data import SyntheticRegistry, average_fixture_entry_bytes
from tests.bench.stackctl import BENCH_TOKEN, log_entries, next_log_entry, running_stack
from tests.fakes.provider_server import FakeProviderServer
from tests.stack import LocalStack, isolated_env

FIRST_FILL_GOAL_S = 10.0
CHURN_GOAL_S = 5.0
GET_GOAL_S = 2.0
RSS_GOAL_MB = 200.0
ITEM_LIMIT_BYTES = 400 * 1024
CHURN = 100


PAGE = MODELS_PAGE


def _post_refresh(stack: LocalStack, engine: Any = None) -> tuple[float, dict[str, Any]]:
    seen = len(log_entries(stack, "refresh run"))
    seconds, response = timed(stack.post, "/api/v1/providers:refresh", timeout=120)
    if response.status_code != 200:
        raise RuntimeError(f"refresh answered {response.status_code}: {response.text[:300]}")
    if engine is not None:
        entry = next_log_entry(stack, "refresh run", seen)
        if entry:
            engine.add(entry.get("duration_ms", 0) / 1000)
    return seconds, response.json()


def _get_models(stack: LocalStack, expected: int) -> tuple[float, int]:
    """Every model, page by page (``read_all_pages``); (seconds, bytes)."""
    read = read_all_pages(stack, PAGE)
    if read.count != expected:
        raise RuntimeError(f"GET /api/v1/models returned {read.count} models, expected {expected}")
    return read.seconds, read.size


def lambda_refresh(stack: LocalStack) -> dict[str, Any]:
    """A refresh in a fresh process (``tests.bench.lambda_refresh``) against this stack's DynamoDB and config."""
    env = isolated_env({
        "MODEL_CATALOG_CONFIG": str(stack.config),
        "MODEL_CATALOG_DYNAMODB_ENDPOINT": stack.dynamodb_endpoint,
        "MODEL_CATALOG_ALLOW_PRIVATE_URLS": "1",
        "MODEL_CATALOG_DEPLOYMENT_ID": "bench-lambda",
        "MODEL_CATALOG_API_TOKEN": BENCH_TOKEN,
        "MODEL_CATALOG_WS_MANAGEMENT_ENDPOINT": stack.management_endpoint,
        "MODEL_CATALOG_WS_STAGE": "local",
        "MODEL_CATALOG_LOCAL_KEY_FILE": str(stack.state_dir / "oauth.key"),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    completed = subprocess.run(
        [sys.executable, "-m", "tests.bench.lambda_refresh"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    if completed.returncode != 0 or not completed.stdout.strip():
        raise RuntimeError(f"the Lambda-like refresh failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _serve(server: FakeProviderServer, body: bytes) -> None:
    server.route("GET", "/api.json", body=body, headers={"Content-Type": "application/json"})


def run(quick: bool) -> ScenarioResult:
    size = 2_000 if quick else 20_000
    fills = 1 if quick else 3
    churns = 1 if quick else 5
    warm_gets = 1 if quick else 3
    lambda_churns = 1 if quick else 3
    cold_gets = 1 if quick else 3
    result = ScenarioResult("large_registry", f"One registry provider with {size:,} models")
    result.method = [
        f"A synthetic models.dev `api.json` with {size:,} models (500 per vendor key; entries shaped like "
        "`tests/fixtures/providers/models_dev_api.json`'s: name, family, modalities, limits, costs, dates, flags), "
        "served as one pre-encoded body by a `FakeProviderServer`; one provider of kind `registry` reads it.",
        f"First fill: {fills} fresh stack(s) (empty state dir), one timed `POST /api/v1/providers:refresh` each.",
        f"In the first stack, {churns} churn refreshes: {CHURN} models removed and {CHURN} new ones added to the "
        f"served document, then a timed refresh (checked: exactly {CHURN} added, {CHURN} removed); after each, the "
        f"first `GET /api/v1/models` (every page of {PAGE:,}, following `next_cursor`; checked to return every model; the refresh already cached the new "
        f"chunks in the process) and {warm_gets} more; then one no-change refresh, with the catalog writes counted. "
        f"Finally {cold_gets} × (restart the stack on the same state, then `GET /api/v1/models`): an empty cache, "
        "every chunk read from DynamoDB, as a Lambda instance that did not run the refresh would. The `GET` goal is "
        "judged on these cold reads.",
        "Peak RSS of the stack process (HTTP API + refresh engine in-process, plus the gateway, demo registry and "
        "scheduler): for each refresh, the kernel's high-water mark `VmHWM` is reset just before "
        "(`echo 5 > /proc/<pid>/clear_refs`) and read after; `VmRSS` is also polled every 5 ms as a cross-check "
        "(the larger is reported). The same for the embedded DynamoDB child process (moto keeps every table in "
        "memory). The goal is judged on the stack process.",
        f"For comparison, refreshes in a fresh process that only does `import app` + the service call, like a cold "
        f"Lambda (`python -m tests.bench.lambda_refresh`): {lambda_churns} churn refresh(es) against the first "
        "stack and one first fill against another fresh stack; its `VmHWM` is that process's whole peak.",
        "Biggest item: every table scanned with boto3 against the embedded endpoint after the first fill and again "
        "at the end; item size by DynamoDB's rules (attribute names + values; binary = byte length).",
    ]
    registry = SyntheticRegistry(size)
    body = registry.body()
    result.facts.append((
        "mean JSON size of a model entry: fixture / synthetic",
        f"{average_fixture_entry_bytes():.0f} B / {len(body) / size:.0f} B (document {len(body) / 1e6:.1f} MB)",
    ))
    fill = result.new_series("first fill (empty catalog → all models)", "s")
    churn = result.new_series(f"refresh with {CHURN} added + {CHURN} removed", "s")
    unchanged = result.new_series("no-change refresh", "s")
    get_first = result.new_series(f"`GET /api/v1/models`, all pages of {PAGE:,}, first after the change", "s")
    get_again = result.new_series(f"`GET /api/v1/models`, all pages of {PAGE:,}, repeated", "s")
    get_cold = result.new_series(f"`GET /api/v1/models`, all pages of {PAGE:,}, first after a stack restart (empty cache)", "s")
    engine_fill = result.new_series("first fill: engine run (`refresh run` log `duration_ms`)", "s")
    engine_churn = result.new_series("churn: engine run (`refresh run` log `duration_ms`)", "s")
    rss_fill = result.new_series("stack process: peak RSS during the first fill", "MB")
    rss_churn = result.new_series("stack process: peak RSS during a churn refresh", "MB")
    rss_idle = result.new_series("stack process: RSS just before a churn refresh", "MB")
    rss_fresh = result.new_series("stack process: RSS of a fresh stack (before its first fill)", "MB")
    dynamo_peak = result.new_series("DynamoDB child: peak RSS during the refresh", "MB")
    cold_fill = result.new_series("fresh process (cold Lambda): first fill, wall", "s")
    cold_fill_peak = result.new_series("fresh process (cold Lambda): first fill, peak RSS", "MB")
    cold_churn = result.new_series("fresh process (cold Lambda): churn refresh, wall", "s")
    cold_churn_peak = result.new_series("fresh process (cold Lambda): churn refresh, peak RSS", "MB")
    cold_base = result.new_series("fresh process (cold Lambda): RSS after imports + wiring", "MB")
    writes_unchanged: list[int] = []
    response_bytes = 0
    biggest: dict[str, tuple[int, int, str]] = {}
    hwm_reset = True

    def note_items(stack: LocalStack) -> None:
        for table, (count, size_bytes, key) in biggest_items(stack.dynamodb_client()).items():
            if size_bytes >= biggest.get(table, (0, -1, ""))[1]:
                biggest[table] = (count, size_bytes, key)

    with FakeProviderServer() as server:
        providers = [{"id": "registry", "name": "Big registry", "kind": "registry", "url": f"{server.url}/api.json"}]
        for fill_index in range(fills):
            if fill_index:
                registry = SyntheticRegistry(size)
                body = registry.body()
            _serve(server, body)
            with running_stack({}, providers) as stack:
                pid, dynamo_pid = stack.process.pid, int(stack.ready["dynamodb_pid"])
                result.sample_load()
                rss_fresh.add(rss_mb(pid) or 0)
                with PeakRss(pid) as stack_peak, PeakRss(dynamo_pid) as dynamo:
                    seconds, outcome = _post_refresh(stack, engine_fill)
                hwm_reset = hwm_reset and stack_peak.hwm_reset
                added = outcome["changed"][0]["added"] if outcome["changed"] else []
                if len(added) != len(registry):
                    raise RuntimeError(f"first fill added {len(added)} models, expected {len(registry)}")
                fill.add(seconds)
                rss_fill.add(stack_peak.peak_mb)
                dynamo_peak.add(dynamo.peak_mb)
                result.sample_load()
                if fill_index:
                    continue
                note_items(stack)
                for _ in range(churns):
                    new, gone = registry.churn(CHURN)
                    body = registry.body()
                    _serve(server, body)
                    rss_idle.add(rss_mb(pid) or 0)
                    with PeakRss(pid) as stack_peak, PeakRss(dynamo_pid) as dynamo:
                        seconds, outcome = _post_refresh(stack, engine_churn)
                    change = outcome["changed"][0] if outcome["changed"] else {}
                    if change.get("added") != sorted(new) or change.get("removed") != sorted(gone):
                        raise RuntimeError(
                            f"churn refresh reported {len(change.get('added', []))} added, "
                            f"{len(change.get('removed', []))} removed; expected exactly {CHURN} each"
                        )
                    churn.add(seconds)
                    rss_churn.add(stack_peak.peak_mb)
                    dynamo_peak.add(dynamo.peak_mb)
                    seconds, response_bytes = _get_models(stack, len(registry))
                    get_first.add(seconds)
                    for _ in range(warm_gets):
                        seconds, response_bytes = _get_models(stack, len(registry))
                        get_again.add(seconds)
                    result.sample_load()
                before = stack.dynamodb_write_counts().get(CATALOG_TABLE, 0)
                seconds, outcome = _post_refresh(stack)
                writes_unchanged.append(stack.dynamodb_write_counts().get(CATALOG_TABLE, 0) - before)
                if outcome["changed"]:
                    raise RuntimeError("the no-change refresh reported a change")
                unchanged.add(seconds)
                for _ in range(lambda_churns):
                    registry.churn(CHURN)
                    _serve(server, registry.body())
                    measured = lambda_refresh(stack)
                    if measured["added"] != CHURN or measured["removed"] != CHURN:
                        raise RuntimeError(f"the Lambda-like churn refresh reported {measured}")
                    cold_churn.add(measured["seconds"])
                    cold_churn_peak.add(measured["peak_mb"])
                    cold_base.add(measured["rss_before_mb"])
                note_items(stack)
                for _ in range(cold_gets):  # a restarted stack has an empty cache: every chunk from DynamoDB
                    stack.restart()
                    seconds, response_bytes = _get_models(stack, len(registry))
                    get_cold.add(seconds)
        # A first fill in a fresh process, against a fresh stack (an empty catalog).
        _serve(server, registry.body())
        with running_stack({}, providers) as stack:
            measured = lambda_refresh(stack)
            if measured["added"] != len(registry):
                raise RuntimeError(f"the Lambda-like first fill reported {measured}")
            cold_fill.add(measured["seconds"])
            cold_fill_peak.add(measured["peak_mb"])
            cold_base.add(measured["rss_before_mb"])
            result.sample_load()

    result.facts += [
        ("`GET /api/v1/models`: all pages together", f"{response_bytes / 1e6:.1f} MB"),
        ("catalog writes of the no-change refresh", ", ".join(map(str, writes_unchanged)) or "—"),
        ("VmHWM reset worked (peak = kernel high-water mark)", "yes" if hwm_reset else "no (polled VmRSS only)"),
    ]
    for table, (count, size_bytes, key) in sorted(biggest.items()):
        where = f" (`{key}`)" if key else ""
        result.facts.append((f"table `{table}`: biggest item seen", f"{size_bytes / 1024:.1f} KB{where}; "
                             f"{count} items when scanned"))
    biggest_kb = max((b for _c, b, _k in biggest.values()), default=0) / 1024
    lock_bytes = biggest.get("model-catalog-locks", (0, 0, ""))[1]
    if lock_bytes:
        per_id = lock_bytes / size
        result.notes.append(
            f"The biggest lock item ({lock_bytes / 1024:.1f} KB) is the refresh state after the first fill: it stores "
            f"the whole last RefreshResult (`state.last_run`, zlib-compressed JSON) with all {size:,} added ids, "
            f"≈ {per_id:.1f} B per id here. Like the event journal's copy, it is cut to fit "
            "(`refresh.LAST_RUN_MAX_PACKED_BYTES`, 100 KB compressed, via `events.fit_message`), so a run adding "
            "any number of models keeps the lock item far below DynamoDB's 400 KB item limit."
        )
    peak_rss = max(rss_fill.samples + rss_churn.samples, default=None)
    result.extra["peak_rss"] = {"fill": rss_fill.samples, "churn": rss_churn.samples, "idle": rss_idle.samples}
    result.goals = [
        Goal(f"{size:,} models: first fill", FIRST_FILL_GOAL_S, "s", fill.median,
             detail=f"median of {len(fill.samples)} fresh stacks; engine {fmt(engine_fill.median)} s"),
        Goal(f"{size:,} models: {CHURN} added / {CHURN} removed refresh", CHURN_GOAL_S, "s", churn.median,
             detail=f"median of {len(churn.samples)}; engine {fmt(engine_churn.median)} s"),
        Goal(f"{size:,} models: `GET /api/v1/models`, every page of {PAGE:,} (cold: empty cache)", GET_GOAL_S, "s",
             get_cold.median,
             detail=f"{response_bytes / 1e6:.1f} MB; first after a refresh (cached by it) {fmt(get_first.median)} s, "
                    f"repeated {fmt(get_again.median)} s"),
        Goal(f"{size:,} models: peak RSS of the refresh (stack process, max over all refreshes)", RSS_GOAL_MB, "MB",
             peak_rss,
             detail=f"stack process: {fmt(rss_fresh.median)} MB fresh, {fmt(rss_idle.median)} MB before a churn "
                    f"refresh (medians); fresh Lambda-like "
                    f"process: fill {fmt(cold_fill_peak.median)} MB, churn {fmt(cold_churn_peak.median)} MB; "
                    f"DynamoDB child {fmt(max(dynamo_peak.samples, default=None))} MB"),
        Goal(f"{size:,} models: biggest DynamoDB item", ITEM_LIMIT_BYTES / 1024, "KB", biggest_kb,
             detail="all four tables scanned after the first fill and at the end"),
    ]
    return result
