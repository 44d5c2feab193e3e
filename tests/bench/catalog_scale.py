"""A catalog at scale (issue 17): one registry provider of 1,000 / 10,000 / 50,000 models, where the cost of a refresh
should follow the change, not the catalog. Goals at 50,000: first fill ≤ 6 s; 1,000 removed + 1,000 added ≤ 1.5 s; a
paged read of everything ≤ 2 s; the refresh's memory ≤ 2.5 × the answer's size plus a fixed base. And a
100,000-model registry: refused with a reason naming the limit and the setting that raises it, or read within the
same memory rule once raised."""

from __future__ import annotations

import hashlib
import math
import statistics
from typing import Any

from tests.bench.common import (
    CATALOG_TABLE,
    MODELS_PAGE,
    Goal,
    ScenarioResult,
    Series,
    fmt,
    item_size,
    read_all_pages,
    timed,
)
from tests.bench.costs import PRICES_NOTE, refresh_usd, usd
from tests.bench.data import SyntheticRegistry
from tests.bench.large_registry import lambda_refresh
from tests.bench.stackctl import log_entries, next_log_entry, running_stack
from tests.fakes.provider_server import FakeProviderServer
from tests.stack import LocalStack

SIZES = (1_000, 10_000, 50_000)
GOAL_SIZE = 50_000
FILL_GOAL_S = 6.0
CHURN_GOAL_S = 1.5
PAGED_GOAL_S = 2.0
MEMORY_FACTOR = 2.5  # MB of peak per MB of answer
PAGE = MODELS_PAGE
FIXED_CHANGE = 100  # removed and added, at every size: what a small change costs as the catalog grows
BIG = 100_000


def _scan(stack: LocalStack) -> dict[tuple[str, str], tuple[int, str]]:
    """Every catalog-table item: (pk, sk) → (its size by DynamoDB's rules, a digest of its content)."""
    client = stack.dynamodb_client()
    items: dict[tuple[str, str], tuple[int, str]] = {}
    for page in client.get_paginator("scan").paginate(TableName=CATALOG_TABLE):
        for item in page.get("Items", []):
            digest = hashlib.sha256(repr(sorted(item.items())).encode()).hexdigest()
            items[(item["pk"]["S"], item["sk"]["S"])] = (item_size(item), digest)
    return items


def _delta(before: dict[tuple[str, str], tuple[int, str]], after: dict[tuple[str, str], tuple[int, str]]) -> dict:
    """What a refresh wrote: items put (new or changed: the manifest), items deleted, the KB put, and the write units
    on-demand DynamoDB charges for them (1 per KB, rounded up per item; the manifest flip and the fenced deletes run
    in transactions, which cost twice)."""
    written = {key: size for key, (size, digest) in after.items() if before.get(key, (0, ""))[1] != digest}
    deleted = {key: size for key, (size, _digest) in before.items() if key not in after}
    units = sum(math.ceil(size / 1024) * (2 if key[0] == "MANIFEST" else 1) for key, size in written.items())
    units += sum(2 * math.ceil(size / 1024) for size in deleted.values())
    return {"items": len(written), "deleted": len(deleted), "kb": sum(written.values()) / 1024, "wru": units}


class Catalog:
    """One stack serving one registry provider, and the measured refreshes against it."""

    def __init__(self, stack: LocalStack, server: FakeProviderServer, registry: SyntheticRegistry):
        self.stack = stack
        self.server = server
        self.registry = registry
        self.body = b""
        self.serve()

    def serve(self) -> None:
        self.body = self.registry.body()
        self.server.route("GET", "/api.json", body=self.body, headers={"Content-Type": "application/json"})

    def refresh(self) -> dict[str, Any]:
        before = _scan(self.stack)
        writes_before = self.stack.dynamodb_write_counts().get(CATALOG_TABLE, 0)
        seen = len(log_entries(self.stack, "refresh run"))
        seconds, response = timed(self.stack.post, "/api/v1/providers:refresh", timeout=300)
        if response.status_code != 200:
            raise RuntimeError(f"refresh answered {response.status_code}: {response.text[:300]}")
        entry = next_log_entry(self.stack, "refresh run", seen)
        calls = self.stack.dynamodb_write_counts().get(CATALOG_TABLE, 0) - writes_before
        return {"seconds": seconds, "engine": entry.get("duration_ms", 0) / 1000, "result": response.json(),
                "calls": calls, **_delta(before, _scan(self.stack))}

    def read_all_pages(self) -> tuple[float, int]:
        """Every model through ``limit`` pages, following ``next_cursor``; (seconds, models)."""
        read = read_all_pages(self.stack, PAGE)
        return read.seconds, read.count


def _check(outcome: dict[str, Any], added: int, removed: int, updated: int) -> None:
    changed = outcome["result"]["changed"]
    got = (sum(len(c["added"]) for c in changed), sum(len(c["removed"]) for c in changed),
           sum(len(c["updated"]) for c in changed))
    if got != (added, removed, updated):
        raise RuntimeError(f"the refresh reported {got} added/removed/updated, expected {(added, removed, updated)}")


def _row(label: str, outcomes: list[dict[str, Any]]) -> list[str]:
    def median(key: str) -> float:
        return statistics.median(o[key] for o in outcomes)

    return [label, f"{fmt(median('seconds'))} s", f"{fmt(median('engine'))} s", fmt(median("calls")),
            f"{fmt(median('items'))} / {fmt(median('deleted'))}", f"{fmt(median('kb'))} KB", fmt(median("wru"))]


def _cost_row(label: str, outcomes: list[dict[str, Any]]) -> list[str]:
    engine = statistics.median(o["engine"] for o in outcomes)
    units = statistics.median(o["wru"] for o in outcomes)
    changed = any(o["result"]["changed"] for o in outcomes)
    each = refresh_usd(engine, units, changed)
    return [label, fmt(engine), fmt(units), usd(each), usd(each * 1_000)]


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line through (answer MB, peak MB): (slope, intercept)."""
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    return slope, mean_y - slope * mean_x


def run(quick: bool) -> ScenarioResult:
    sizes = (500, 2_000) if quick else SIZES
    reps = 1 if quick else 3
    goal_size = sizes[-1]
    result = ScenarioResult("catalog_scale", f"Catalog at scale: {', '.join(f'{s:,}' for s in sizes)} models")
    result.method = [
        "One provider of kind `registry` reading a synthetic models.dev `api.json` (the 20,000-model scenario's "
        "entries), in a fresh local stack per size.",
        f"Per size: the first fill; then {reps} × each change — 2 % of the models removed (the oldest) and 2 % added "
        f"(at 50,000: 1,000 + 1,000, the goal's change), {FIXED_CHANGE} removed + {FIXED_CHANGE} added (the same "
        "change at every size), 1 % of the models updated at random over the whole list (a spread-out change), and "
        "no change. Each refresh is checked to report exactly its change.",
        "Writes: catalog-table write calls from the embedded DynamoDB's counter; items put / deleted, KB put and the "
        "write units on-demand DynamoDB would charge (1 per KB rounded up per item, twice inside a transaction: the "
        "manifest flip and the fenced deletes) from a scan of the catalog table before and after each refresh.",
        f"Paged read: every model through `GET /api/v1/models?limit={PAGE:,}` following `next_cursor` on one "
        f"keep-alive connection, {reps} × in the stack that refreshed (chunks cached) and once after restarting it "
        "(every chunk read from DynamoDB, as a Lambda that did not refresh would); the goal is judged on the cold "
        "read. And one unpaged `GET /api/v1/models`.",
        "Memory: a churn refresh and a first fill in a fresh process that only imports the app and calls the service "
        "(`python -m tests.bench.lambda_refresh`, like a cold Lambda): its peak RSS (`VmHWM`) above its RSS after "
        "the imports. A line through (answer MB, peak MB) over the sizes gives the cost per MB of answer (the goal: "
        f"≤ {MEMORY_FACTOR}) and the fixed base.",
        f"{BIG:,} models: the same registry at {BIG:,} models, refreshed by a stack with the default limits (it must "
        "be refused with a reason naming the limit and the setting that raises it), then, with `max_models = "
        f"{BIG}` and `max_response_mb = 64`, a first fill in a fresh process (time and memory).",
    ]
    table: list[list[str]] = []
    fits: list[tuple[float, float]] = []
    bases: list[float] = []
    memory_rows: list[list[str]] = []
    costs: list[list[str]] = []
    goal: dict[str, Any] = {}
    with FakeProviderServer() as server:
        providers = [{"id": "registry", "name": "Registry", "kind": "registry", "url": f"{server.url}/api.json"}]
        for size in sizes:
            registry = SyntheticRegistry(size, seed=size)
            with running_stack({}, providers) as stack:
                catalog = Catalog(stack, server, registry)
                result.sample_load()
                fill = catalog.refresh()
                _check(fill, size, 0, 0)
                outcomes: dict[str, list[dict[str, Any]]] = {"churn": [], "fixed": [], "spread": [], "unchanged": []}
                share = max(1, size // 50)
                for _ in range(reps):
                    registry.churn(share)
                    catalog.serve()
                    outcomes["churn"].append(catalog.refresh())
                    _check(outcomes["churn"][-1], share, share, 0)
                    registry.churn(FIXED_CHANGE)
                    catalog.serve()
                    outcomes["fixed"].append(catalog.refresh())
                    _check(outcomes["fixed"][-1], FIXED_CHANGE, FIXED_CHANGE, 0)
                    registry.update(max(1, size // 100))
                    catalog.serve()
                    outcomes["spread"].append(catalog.refresh())
                    _check(outcomes["spread"][-1], 0, 0, max(1, size // 100))
                    outcomes["unchanged"].append(catalog.refresh())
                    _check(outcomes["unchanged"][-1], 0, 0, 0)
                    result.sample_load()
                answer_mb = len(catalog.body) / 1e6
                labelled = [
                    (f"{size:,}: first fill", [fill]),
                    (f"{size:,}: {share:,} removed + {share:,} added (2 % + 2 %)", outcomes["churn"]),
                    (f"{size:,}: {FIXED_CHANGE} removed + {FIXED_CHANGE} added", outcomes["fixed"]),
                    (f"{size:,}: {max(1, size // 100):,} updated, spread over the list (1 %)", outcomes["spread"]),
                    (f"{size:,}: nothing changed", outcomes["unchanged"]),
                ]
                table += [_row(label, measured) for label, measured in labelled]
                costs += [_cost_row(label, measured) for label, measured in labelled]
                warm = [catalog.read_all_pages() for _ in range(reps)]
                unpaged = stack.get("/api/v1/models", timeout=120)
                churn_memory = lambda_refresh_after(catalog)
                stack.restart()
                cold_seconds, cold_count = catalog.read_all_pages()
                if cold_count != len(registry) or any(count != len(registry) for _, count in warm):
                    raise RuntimeError("a paged read did not return every model")
                result.sample_load()
            with running_stack({}, providers) as fresh:  # an empty catalog: a first fill in a fresh process
                catalog.serve()
                fill_memory = lambda_refresh(fresh)
            for label, measured in (("first fill", fill_memory), ("churn", churn_memory)):
                above = measured["peak_mb"] - measured["rss_before_mb"]
                fits.append((answer_mb, above))
                bases.append(measured["rss_before_mb"])
                memory_rows.append([f"{size:,}: {label}", f"{answer_mb:.1f} MB", f"{fmt(measured['seconds'])} s",
                                    f"{fmt(measured['rss_before_mb'])} MB", f"{fmt(measured['peak_mb'])} MB",
                                    f"{fmt(above)} MB", f"{above / answer_mb:.2f}"])
            table.append([f"{size:,}: paged read of all ({PAGE:,} a page), warm / cold",
                          f"{fmt(statistics.median(s for s, _ in warm))} s / {fmt(cold_seconds)} s", "", "", "", "",
                          ""])
            unpaged_text = (f"{unpaged.status_code} ({len(unpaged.content) / 1e6:.1f} MB)" if unpaged.ok
                            else f"{unpaged.status_code} `{unpaged.json()['error']['code']}`")
            table.append([f"{size:,}: unpaged `GET /api/v1/models`", unpaged_text, "", "", "", "", ""])
            if size == goal_size:
                goal = {"fill": fill, "churn": outcomes["churn"], "cold": cold_seconds,
                        "warm": statistics.median(s for s, _ in warm), "spread": outcomes["spread"],
                        "answer_mb": answer_mb}
        big = _hundred_thousand(server, providers, result) if not quick else None
    slope, base = _fit(fits)
    result.tables.append((
        "Refreshes by catalog size (medians; items put / deleted; KB put; write units as on-demand DynamoDB charges)",
        ["refresh", "wall (client)", "engine run", "write calls", "items put / deleted", "KB put", "write units"],
        table,
    ))
    result.tables.append((
        "Memory of a refresh in a fresh process (like a cold Lambda)",
        ["size: refresh", "answer", "wall", "RSS after imports", "peak RSS", "peak above imports", "per MB of answer"],
        memory_rows,
    ))
    result.tables.append((
        "Deployed cost per refresh (estimate: a 1 GB Lambda for the engine run measured here, the catalog-table write "
        "units above and the lock's 4, one EventBridge event when something changed; the WebSocket fan-out is per client, see Clients at "
        "scale). " + PRICES_NOTE,
        ["refresh", "Lambda GB-s", "write units", "per refresh", "per 1,000 refreshes"],
        costs,
    ))
    result.facts.append((
        "memory of a refresh: per MB of answer (least squares over the rows above) + a fixed base",
        f"{slope:.2f} MB per MB + {fmt(base)} MB, above a process of {fmt(statistics.median(bases))} MB after its "
        "imports",
    ))
    churn = [o["seconds"] for o in goal["churn"]]
    result.series += [
        Series(f"{goal_size:,}: first fill", "s", [goal["fill"]["seconds"]]),
        Series(f"{goal_size:,}: 2 % removed + 2 % added", "s", churn),
        Series(f"{goal_size:,}: paged read of all, cold", "s", [goal["cold"]]),
    ]
    result.extra["rows"] = table
    result.goals = [
        Goal(f"{goal_size:,}-model catalog: first fill", FILL_GOAL_S, "s", goal["fill"]["seconds"],
             detail=f"engine {fmt(goal['fill']['engine'])} s; {fmt(goal['fill']['kb'])} KB in "
                    f"{fmt(goal['fill']['items'])} items; answer {goal['answer_mb']:.1f} MB"),
        Goal(f"{goal_size:,}-model catalog: {goal_size // 50:,} removed + {goal_size // 50:,} added", CHURN_GOAL_S, "s",
             statistics.median(churn),
             detail=f"median of {len(churn)}; engine {fmt(statistics.median(o['engine'] for o in goal['churn']))} s; "
                    f"{fmt(statistics.median(o['items'] for o in goal['churn']))} items put (of "
                    f"{fmt(goal['fill']['items'])} at the fill); a spread-out 1 % update took "
                    f"{fmt(statistics.median(o['seconds'] for o in goal['spread']))} s"),
        Goal(f"{goal_size:,}-model catalog: paged read of all ({PAGE:,} a page), cold", PAGED_GOAL_S, "s", goal["cold"],
             detail=f"warm (chunks cached) {fmt(goal['warm'])} s"),
        Goal("memory of a refresh per MB of answer (fixed base apart)", MEMORY_FACTOR, "MB per MB", slope,
             detail=f"base {fmt(base)} MB; {len(fits)} cold-process refreshes from {sizes[0]:,} to {goal_size:,} "
                    "models"),
    ]
    if big is not None:
        result.goals.append(Goal(
            f"{BIG:,} models: refused naming the limit and the setting that raises it (0 = yes)", 0, "", big["unclear"],
            detail=f"reason: “{big['reason']}”; raised (max_models, max_response_mb): first fill in "
                   f"{fmt(big['seconds'])} s, peak {fmt(big['above'])} MB above the process for a "
                   f"{big['answer_mb']:.0f} MB answer ({big['above'] / big['answer_mb']:.2f} per MB)"))
    return result


def lambda_refresh_after(catalog: Catalog) -> dict[str, Any]:
    """A churn refresh in a fresh process against this stack."""
    catalog.registry.churn(max(1, len(catalog.registry) // 50))
    catalog.serve()
    return lambda_refresh(catalog.stack)


def _hundred_thousand(server: FakeProviderServer, providers: list[dict[str, Any]], result: ScenarioResult) -> dict:
    registry = SyntheticRegistry(BIG, seed=BIG)
    body = registry.body()
    server.route("GET", "/api.json", body=body, headers={"Content-Type": "application/json"})
    with running_stack({}, providers) as stack:
        response = stack.post("/api/v1/providers:refresh", timeout=300)
        failed = response.json().get("failed") or [{}]
        reason = failed[0].get("reason", "")
    raised = [{**providers[0], "max_models": BIG, "max_response_mb": 64}]
    with running_stack({}, raised) as stack:
        measured = lambda_refresh(stack)
        if measured["added"] != BIG:
            raise RuntimeError(f"the raised {BIG:,}-model fill reported {measured}")
    result.sample_load()
    names_it = ("limit" in reason) and ("max_response_mb" in reason or "max_models" in reason)
    return {"reason": reason, "unclear": 0 if names_it else 1, "seconds": measured["seconds"],
            "above": measured["peak_mb"] - measured["rss_before_mb"], "answer_mb": len(body) / 1e6}
