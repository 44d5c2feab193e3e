"""Clients at scale (issue 17): 10 / 100 / 1,000 real WebSocket clients connect and subscribe through the local
gateway, then one catalog change reaches them all. Goals at 1,000: connect + subscribe ≥ 150 per second; the event
reaches every client ≤ 1.5 s after the refresh request starts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.bench.common import Goal, ScenarioResult, Series, fmt
from tests.bench.costs import connections_per_month_usd, fanout_usd, usd
from tests.bench.fanout import CONNECT_CONCURRENCY, _connect_all, _one_event, registry_document
from tests.bench.stackctl import log_entries, running_stack
from tests.stack import LocalStack

COUNTS = (10, 100, 1_000)
GOAL_CLIENTS = 1_000
CONNECT_RATE_GOAL = 150.0  # connections (connect + subscribed) per second
DELIVERY_GOAL_S = 1.5
CONNECTIONS_TABLE = "model-catalog-connections"


async def _measure(stack: LocalStack, count: int, events: int, row: dict[str, Any]) -> None:
    writes_before = stack.dynamodb_write_counts()
    connect_s, clients, subscribed = await _connect_all(stack.ws_connect_url, count)
    writes_after = stack.dynamodb_write_counts()
    row["connect_s"] = connect_s
    row["rate"] = count / connect_s
    row["connection_writes"] = (writes_after.get(CONNECTIONS_TABLE, 0) - writes_before.get(CONNECTIONS_TABLE, 0)) / count
    seq = max(m["seq"] for m in subscribed)
    last, first, response, sent_rate = Series("last", "s"), Series("first", "s"), Series("response", "s"), Series(
        "rate", "msg/s")
    missing = 0
    try:
        for rep in range(events + 1):  # rep 0: warm-up (the first fan-out creates the management API client)
            seq += 1
            await asyncio.to_thread(stack.set_registry, registry_document(seq))
            before = len(log_entries(stack, "broadcast"))
            outcome = await _one_event(stack, clients, seq, timeout_s=30)
            if outcome["status"] != 200:
                raise RuntimeError(f"refresh answered {outcome['status']}")
            if rep == 0:
                continue
            arrivals = outcome["arrivals"]
            missing += outcome["missing"]
            if arrivals:
                last.add(arrivals[-1] if not outcome["missing"] else float("inf"))
                first.add(arrivals[0])
            response.add(outcome["response_s"])
            deadline = time.monotonic() + 3
            while len(log_entries(stack, "broadcast")) <= before and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            broadcasts = log_entries(stack, "broadcast")
            if len(broadcasts) > before and broadcasts[-1].get("duration_ms"):
                sent_rate.add(broadcasts[-1].get("sent", 0) / (broadcasts[-1]["duration_ms"] / 1000))
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    row.update(last=last, first=first, response=response, sent_rate=sent_rate, missing=missing)


def run(quick: bool) -> ScenarioResult:
    counts = (5, 20) if quick else COUNTS
    events = 1 if quick else 5
    goal_count = counts[-1]
    result = ScenarioResult("client_scale", f"Clients at scale: {', '.join(f'{c:,}' for c in counts)} WebSocket clients")
    result.method = [
        "For each count, a fresh local stack whose only provider is the stack's demo registry; that many real "
        f"`websockets` clients on one asyncio event loop in the benchmark process (at most {CONNECT_CONCURRENCY} "
        "opening handshakes in flight) connect and send `subscribe`; the connect rate is clients ÷ the time until the "
        "last `subscribed` answer arrived. Each connect runs the `$connect` handler (token check, one `PutItem`) and "
        "each subscribe the `$default` handler (a read of the catalog position and the reply through the local "
        "`@connections` API; nothing is written), in the gateway's handler threads against the serialized embedded DynamoDB.",
        f"Then 1 untimed warm-up event and {events} timed events, as in the fan-out scenario: the clock starts just "
        "before `POST /api/v1/providers:refresh` (the registry document grew by one model), each client records when "
        "the event with the expected `seq` arrives; the HTTP response comes after the fan-out.",
        "Connections-table writes per client from the embedded DynamoDB's write counter (`GET /_stats/writes`).",
    ]
    rows: dict[int, dict[str, Any]] = {}
    providers = [{"id": "demo", "name": "Demo", "kind": "registry", "url": "${MODEL_CATALOG_DEMO_REGISTRY_URL}"}]
    for count in counts:
        with running_stack({}, providers) as stack:
            stack.set_registry(registry_document(0))
            stack.post("/api/v1/providers:refresh").raise_for_status()
            result.sample_load()
            rows[count] = {}
            asyncio.run(_measure(stack, count, events, rows[count]))
            result.sample_load()
    header = ["clients", "connect + subscribe", "connections/s", "request → first client", "request → last client",
              "request → HTTP response", "deliveries/s (server)", "connections-table writes per client", "missed"]
    table = []
    for count, row in rows.items():
        table.append([
            f"{count:,}", f"{fmt(row['connect_s'])} s", fmt(row["rate"]), f"{fmt(row['first'].median)} s",
            f"{fmt(row['last'].median)} s ({fmt(min(row['last'].samples, default=None))}–"
            f"{fmt(max(row['last'].samples, default=None))})",
            f"{fmt(row['response'].median)} s", fmt(row["sent_rate"].median), fmt(row["connection_writes"]),
            str(row["missing"]),
        ])
    result.tables.append(("Growth with the number of clients (medians of the timed events)", header, table))
    result.tables.append((
        "Deployed cost of the clients (estimate; API Gateway WebSocket list prices: $1.00 per million messages, "
        "$0.25 per million connection minutes; the fan-out's Lambda time is part of the refresh's)",
        ["clients", "one event to all", "connections open for a month"],
        [[f"{count:,}", usd(fanout_usd(count)), usd(connections_per_month_usd(count))] for count in counts],
    ))
    goal = rows[goal_count]
    result.series.append(Series(f"{goal_count:,} clients: request start → last client received the event", "s",
                                goal["last"].samples))
    result.series.append(Series(f"{goal_count:,} clients: request start → HTTP response", "s",
                                goal["response"].samples))
    result.extra["rows"] = {count: {k: (v.samples if isinstance(v, Series) else v) for k, v in row.items()}
                            for count, row in rows.items()}
    result.goals = [
        Goal(f"{goal_count:,} clients: connect + subscribe rate", CONNECT_RATE_GOAL, "connections/s", goal["rate"],
             detail=f"{goal_count:,} in {fmt(goal['connect_s'])} s; API Gateway accepts 500 new connections per "
                    "second per account", at_least=True),
        Goal(f"{goal_count:,} clients: every client has the event ≤ {DELIVERY_GOAL_S:g} s after the request started",
             DELIVERY_GOAL_S, "s", goal["last"].median if goal["missing"] == 0 else float("inf"),
             detail=f"median of {len(goal['last'].samples)} events; first client {fmt(goal['first'].median)} s; "
                    f"deliveries/s (server) {fmt(goal['sent_rate'].median)}"),
    ]
    return result
