"""Fan-out: N real WebSocket clients subscribed through the local gateway all receive the change event ≤ 3 s
after the refresh request starts (issue 5/8); connections/s and deliveries/s."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.bench.common import Goal, ScenarioResult, fmt
from tests.bench.stackctl import log_entries, running_stack
from tests.stack import LocalStack

GOAL_S = 3.0
EVENT_TYPE = "event.model_catalog.changed"
CONNECT_CONCURRENCY = 50  # handshakes in flight at once (clients of a busy page load, not a SYN flood)
SUBSCRIBE = json.dumps({"action": "subscribe", "since": None, "epoch": None})


def registry_document(version: int) -> dict[str, Any]:
    """A small models.dev-style document; each ``version`` adds a model, so every refresh changes the catalog."""
    models = {
        f"model-{n}": {"id": f"model-{n}", "name": f"Model {n}", "limit": {"context": 8192 * (n + 1), "output": 4096},
                       "cost": {"input": 1.0 + n, "output": 4.0 + n}, "tool_call": n % 2 == 0}
        for n in range(version + 3)
    }
    return {"bench": {"id": "bench", "name": "Bench", "models": models}}


async def _connect_one(url: str, gate: asyncio.Semaphore) -> tuple[ClientConnection, dict[str, Any]]:
    async with gate, asyncio.timeout(60):
        ws = await connect(url, open_timeout=30, ping_interval=None, close_timeout=5, max_size=2**22)
        await ws.send(SUBSCRIBE)
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == "subscribed":
                return ws, message


async def _connect_all(url: str, count: int) -> tuple[float, list[ClientConnection], list[dict[str, Any]]]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(_connect_one(url, gate) for _ in range(count)), return_exceptions=True)
    elapsed = time.perf_counter() - started
    pairs = [o for o in outcomes if not isinstance(o, BaseException)]
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:  # close the ones that made it, then report the first failure
        await asyncio.gather(*(ws.close() for ws, _ in pairs), return_exceptions=True)
        raise RuntimeError(f"{len(errors)} of {count} clients could not connect and subscribe") from errors[0]
    return elapsed, [p[0] for p in pairs], [p[1] for p in pairs]


async def _await_event(ws: ClientConnection, seq: int) -> tuple[float, dict[str, Any]]:
    while True:
        message = json.loads(await ws.recv())
        if message.get("type") == EVENT_TYPE and message.get("seq") == seq:
            return time.perf_counter(), message


async def _one_event(stack: LocalStack, clients: list[ClientConnection], seq: int, timeout_s: float) -> dict[str, Any]:
    """Start a refresh that changes the catalog; when did each client get event ``seq``?"""
    loop = asyncio.get_running_loop()
    waiters = [asyncio.create_task(_await_event(ws, seq)) for ws in clients]
    started = time.perf_counter()
    request = loop.run_in_executor(None, stack.post, "/api/v1/providers:refresh")
    done, pending = await asyncio.wait(waiters, timeout=timeout_s)
    for task in pending:
        task.cancel()
    response = await request
    response_at = time.perf_counter()
    arrivals = sorted(task.result()[0] - started for task in done if not task.exception())
    payloads_match = all(task.result()[1]["payload"] == response.json() for task in done if not task.exception())
    return {
        "status": response.status_code,
        "response_s": response_at - started,
        "arrivals": arrivals,
        "missing": len(clients) - len(arrivals),
        "payloads_match": payloads_match,
    }


async def _scenario(stack: LocalStack, count: int, reps: int, result: ScenarioResult) -> None:
    connect_time, clients, subscribed = await _connect_all(stack.ws_connect_url, count)
    result.new_series(f"connect + subscribe {count} clients (≤ {CONNECT_CONCURRENCY} handshakes at once)", "s").add(
        connect_time
    )
    result.new_series("connections/s (connect + `subscribed` answer)", "conn/s").add(count / connect_time)
    seq = max(m["seq"] for m in subscribed)
    all_delivered = result.new_series("request start → last client received the event", "s")
    first_delivered = result.new_series("request start → first client received the event", "s")
    spread = result.new_series("first → last delivery (client side)", "s")
    response = result.new_series("request start → HTTP response (fan-out included)", "s")
    server_rate = result.new_series("deliveries/s (server: sent ÷ broadcast duration, `broadcast` log line)", "msg/s")
    client_rate = result.new_series("deliveries/s (client side: clients ÷ first→last spread)", "msg/s")
    missing_total = 0
    mismatched = 0
    try:
        for rep in range(reps + 1):  # rep 0: warm-up (the first fan-out creates the management API client)
            seq += 1
            await asyncio.to_thread(stack.set_registry, registry_document(seq))
            before = len(log_entries(stack, "broadcast"))
            outcome = await _one_event(stack, clients, seq, timeout_s=30)
            if outcome["status"] != 200:
                raise RuntimeError(f"refresh answered {outcome['status']}")
            broadcasts = log_entries(stack, "broadcast")
            deadline = time.monotonic() + 3
            while len(broadcasts) <= before and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
                broadcasts = log_entries(stack, "broadcast")
            arrivals = outcome["arrivals"]
            if rep == 0:
                result.facts.append(("warm-up event (first fan-out of the process): all delivered after",
                                     f"{fmt(arrivals[-1]) if arrivals else '—'} s"))
                continue
            missing_total += outcome["missing"]
            mismatched += 0 if outcome["payloads_match"] else 1
            if arrivals:
                first_delivered.add(arrivals[0])
                all_delivered.add(arrivals[-1] if not outcome["missing"] else float("inf"))
                spread.add(arrivals[-1] - arrivals[0])
                if arrivals[-1] > arrivals[0]:
                    client_rate.add(len(arrivals) / (arrivals[-1] - arrivals[0]))
            response.add(outcome["response_s"])
            if len(broadcasts) > before:
                line = broadcasts[-1]
                if line.get("duration_ms"):
                    server_rate.add(line.get("sent", 0) / (line["duration_ms"] / 1000))
                result.extra.setdefault("broadcasts", []).append(line)
            result.sample_load()
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    result.facts += [
        ("clients that missed an event (all repetitions)", str(missing_total)),
        ("events whose payload differed from the REST RefreshResult", str(mismatched)),
    ]
    result.goals.append(
        Goal(f"fan-out to {count} clients: all received ≤ {GOAL_S:g} s after the request started", GOAL_S, "s",
             all_delivered.median if missing_total == 0 else float("inf"),
             detail=f"median of {len(all_delivered.samples)} events; connections/s "
                    f"{fmt(result.series[1].median)}; deliveries/s (server) {fmt(server_rate.median)}")
    )


def run(quick: bool) -> ScenarioResult:
    count = 20 if quick else 200
    reps = 1 if quick else 5
    result = ScenarioResult("fanout", f"Fan-out to {count} WebSocket clients")
    result.method = [
        "A fresh local stack whose only provider is the stack's demo registry (kind `registry`); before each refresh "
        "the benchmark replaces the served document through the test hook (`PUT /api.json`), adding one model, so "
        "every refresh changes the catalog and emits one event.",
        f"{count} real `websockets` clients on one asyncio event loop in the benchmark process connect to the local "
        f"gateway (`ws://…/?token=…`, at most {CONNECT_CONCURRENCY} opening handshakes in flight) and each sends "
        '`{"action":"subscribe","since":null,"epoch":null}` and waits for `subscribed`; connections/s = clients ÷ '
        "the time until the last `subscribed` arrived.",
        "Per event: the clock starts just before `POST /api/v1/providers:refresh` is sent (from a worker thread); "
        "each client records when the `event.model_catalog.changed` with the expected `seq` arrives. The HTTP "
        "response returns after the fan-out (the engine publishes before answering).",
        f"1 untimed warm-up event, then {reps} timed events; medians. Deliveries/s from the stack's `broadcast` log "
        "line (sent ÷ duration_ms of the fan-out itself) and, client side, clients ÷ the first→last arrival spread.",
        "Every event's payload is compared with the REST RefreshResult of the same request.",
    ]
    providers = [{"id": "demo", "name": "Demo", "kind": "registry", "url": "${MODEL_CATALOG_DEMO_REGISTRY_URL}"}]
    with running_stack({}, providers) as stack:
        stack.set_registry(registry_document(0))
        stack.post("/api/v1/providers:refresh").raise_for_status()
        result.sample_load()
        asyncio.run(_scenario(stack, count, reps, result))
    return result
