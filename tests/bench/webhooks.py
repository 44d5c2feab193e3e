"""Webhooks: 100 local endpoints each get every change event (docs/reference.md §9); deliveries/s and the time
from the commit to the last first attempt (the contract: the first attempt within 2 s of the commit)."""

from __future__ import annotations

import time
from typing import Any

from tests.bench.common import Goal, ScenarioResult, fmt
from tests.bench.fanout import registry_document
from tests.bench.stackctl import running_stack
from tests.fakes.webhook_receiver import WebhookReceiver

GOAL_S = 2.0


def _event_time(request: Any) -> float:
    """The commit's time, as the event says it (its ``timestamp`` is taken as the run commits)."""
    import json
    from datetime import datetime

    return datetime.fromisoformat(json.loads(request.body)["timestamp"].replace("Z", "+00:00")).timestamp()


def run(quick: bool) -> ScenarioResult:
    endpoints = 10 if quick else 100
    reps = 1 if quick else 5
    result = ScenarioResult("webhooks", f"Webhooks to {endpoints} endpoints")
    result.method = [
        "A fresh local stack (demo registry as the only provider); before each refresh the benchmark adds one model "
        "to the served document, so every refresh emits one event.",
        f"{endpoints} webhook endpoints (`POST /api/v1/webhooks`) on one real HTTP receiver on 127.0.0.1 (distinct "
        "paths), answering 200 at once; it records each request's arrival time.",
        "Per event: commit → last first attempt = the last arrival minus the event's `timestamp` (taken as the run "
        "commits); deliveries/s = endpoints ÷ (last arrival − first arrival); and the refresh's own response time.",
        f"1 untimed warm-up event, then {reps} timed events; medians. Every body is checked to be the event of that "
        "refresh (its seq).",
    ]
    providers = [{"id": "demo", "name": "Demo", "kind": "registry", "url": "${MODEL_CATALOG_DEMO_REGISTRY_URL}"}]
    with running_stack({}, providers) as stack, WebhookReceiver() as receiver:
        stack.set_registry(registry_document(0))
        stack.post("/api/v1/providers:refresh").raise_for_status()
        for n in range(endpoints):
            stack.post("/api/v1/webhooks", json={"url": f"{receiver.url}/{n}"}).raise_for_status()
        commit_to_last = result.new_series(f"commit → last of {endpoints} first attempts", "s")
        commit_to_first = result.new_series("commit → first first attempt", "s")
        rate = result.new_series("deliveries/s (endpoints ÷ first→last arrival spread)", "msg/s")
        response = result.new_series("refresh response time (the relay runs beside it)", "s")
        missing = 0
        for rep in range(reps + 1):
            stack.set_registry(registry_document(rep + 1))
            before = len(receiver.requests())
            started = time.perf_counter()
            stack.post("/api/v1/providers:refresh").raise_for_status()
            took = time.perf_counter() - started
            deadline = time.monotonic() + 30
            while len(receiver.requests()) < before + endpoints and time.monotonic() < deadline:
                time.sleep(0.01)
            got = receiver.requests()[before:]
            missing += endpoints - len(got)
            if rep == 0 or not got:
                continue
            committed = _event_time(got[0])
            arrivals = sorted(r.at for r in got)
            commit_to_last.add(arrivals[-1] - committed)
            commit_to_first.add(arrivals[0] - committed)
            if arrivals[-1] > arrivals[0]:
                rate.add(len(got) / (arrivals[-1] - arrivals[0]))
            response.add(took)
            result.sample_load()
            time.sleep(1.0)  # let this event's bookkeeping settle before the next commit
        result.facts.append(("endpoints that missed an event (all repetitions)", str(missing)))
    result.goals.append(
        Goal(f"webhooks: commit → last of {endpoints} first attempts ≤ {GOAL_S:g} s", GOAL_S, "s",
             commit_to_last.median if missing == 0 else float("inf"),
             detail=f"median of {len(commit_to_last.samples)} events; deliveries/s {fmt(rate.median)}")
    )
    return result
