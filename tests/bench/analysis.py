"""Why a goal was missed (or nearly): explanations built from the run's own numbers, plus the profile notes.

The profile notes come from profiling the stack with py-spy and the hot functions in-process while this benchmark
was written; they name functions and shares so that a regression can be compared against them.
"""

from __future__ import annotations

from tests.bench.common import Goal, ScenarioResult, Series, fmt

CLOSE = 0.8  # a met goal above this share of its limit is worth a sentence too


def _series(result: ScenarioResult, prefix: str) -> Series | None:
    return next((s for s in result.series if s.name.startswith(prefix)), None)


def _median(result: ScenarioResult, prefix: str) -> float | None:
    series = _series(result, prefix)
    return series.median if series else None


def _fact(result: ScenarioResult, prefix: str) -> str | None:
    return next((v for k, v in result.facts if k.startswith(prefix)), None)


def explain(result: ScenarioResult, goal: Goal) -> str:
    if goal.measured is None or goal.limit == 0:
        return ""
    close = goal.met and goal.measured > CLOSE * goal.limit
    if goal.met and not close:
        return ""
    explain_for = {"refresh_all": _refresh_all, "fanout": _fanout, "large_registry": _large_registry,
                   "catalog_scale": _catalog_scale, "client_scale": _client_scale}.get(result.key)
    return explain_for(result, goal) if explain_for else ""


def _refresh_all(result: ScenarioResult, goal: Goal) -> str:
    breakdowns = result.extra.get("breakdowns", {})
    default_label = next(iter(breakdowns), "")
    kind = "changing" if "changing" in goal.name else "unchanged"
    fetch = _mid(breakdowns.get(default_label, {}).get(f"fetch_{kind}", []))
    engine = _mid(breakdowns.get(default_label, {}).get(f"engine_{kind}", []))
    wide = next((label for label in breakdowns if label.startswith("fetch_concurrency =") and "= 1" not in label), None)
    parts = []
    if fetch is not None and engine is not None:
        parts.append(f"In the engine's own log the slowest provider took {fmt(fetch)} s and the whole locked run "
                     f"{fmt(engine)} s (medians).")
    if default_label.startswith("default (") and wide:
        width = default_label[len("default ("):-1]
        parts.append(
            f"With the default `fetch_concurrency` ({width}) below the number of providers, the fetches run in two "
            f"waves: at least 2 × the provider latency before anything else. With `{wide}` the same run took "
            f"{fmt(_median(result, wide + ': refresh-all wall time, ' + ('every' if kind == 'changing' else 'nothing')))}"
            " s. Proposed fix: a default of at least 32 (it is only a bound on threads and sockets)."
        )
    if kind == "changing":
        parts.append(
            "A run where every provider changed costs, after the slowest answer: the plan, the new chunks of all "
            "providers in one `BatchWriteItem`, the fenced `TransactWriteItems` commit, then (concurrently) the "
            "event's publication (claim, connection scan, published mark) and the lock's release; the chunks the "
            "previous change retired are deleted by the next run while it fetches. Each DynamoDB call takes 2–5 ms "
            "on the serialized embedded DynamoDB; against DynamoDB they are a few round trips."
        )
    parts.append(
        "The rest is the fetch itself: 20 concurrent requests cost ~1 ms of Python CPU each (the request, parsing, "
        "limits, fingerprint), all under one interpreter lock, so the slowest of 20 answers arrives ~15 ms after its "
        "300 ms, more under load; the one-provider refresh shows the fixed part (the lock's two writes, the HTTP "
        "request). The fetch threads, the deadline watchdog and the HTTP session (its open connections) are kept "
        "from one run to the next."
    )
    return " ".join(parts)


def _fanout(result: ScenarioResult, goal: Goal) -> str:
    first = _median(result, "request start → first client")
    response = _median(result, "request start → HTTP response")
    rate = _median(result, "deliveries/s (server")
    return (
        f"The first client got the event after {fmt(first)} s (refresh + commit), the HTTP response (after the "
        f"fan-out) came at {fmt(response)} s; the server sent {fmt(rate)} messages/s: 32 threads each POSTing to the "
        "local `@connections` API, served on the gateway's event loop."
    )


def _catalog_scale(result: ScenarioResult, goal: Goal) -> str:
    if "removed" in goal.name or "first fill" in goal.name:
        return (
            "What any refresh of one 50,000-model registry costs before it writes anything (measured in-process on a "
            "quiet machine): reading the 23 MB answer and parsing it section by section ≈ 0.35 s, building 50,000 "
            "records ≈ 0.3 s, checking the answer limits ≈ 0.15 s, serializing every record once for the fingerprint "
            "and the chunk digests ≈ 0.13 s (orjson with sorted keys, byte for byte `json.dumps`'s text; it was "
            "0.4 s with `json`) and SHA-256. A change of 1,000 + 1,000 models then reads and diffs only the few chunks "
            "that differ and writes ~10 of ~200 chunks, so it costs little more than no change at all; the floor is "
            "the answer's size, not the change. Under load every one of these CPU-bound steps stretches."
        )
    if "memory" in goal.name:
        return ("The peak holds the decoded answer text (1 ×) while its sections are parsed one at a time, and the "
                "records (≈ 1.1 × with their small values shared), then one chunk's JSON at a time.")
    return ""


def _client_scale(result: ScenarioResult, goal: Goal) -> str:
    if "rate" in goal.name:
        return (
            "Each connection costs the stack process a WebSocket handshake, the `$connect` handler (one `PutItem`) and "
            "the subscribe (a position read and the reply through `@connections`): measured over 1,000 connects, "
            "≈ 5.3–5.6 ms of CPU in the stack process (which also runs the gateway and the `@connections` server, "
            "under one GIL: it is the bottleneck, ~90 % of a core), ≈ 3 ms in the embedded DynamoDB and ≈ 1 ms in the "
            "clients; about half of the stack's share is botocore's client-side work for the two DynamoDB calls. "
            "Single runs on this machine gave 156–171/s. Running the handlers in worker processes (as Lambda does) "
            "was tried and measured slower here: 2 logical cores, and each worker spent more CPU per call than the "
            "whole stack saved. API Gateway itself takes 500 connections per second per account; deployed, each "
            "handler runs in its own Lambda environment."
        )
    return (
        "The fan-out sends one signed `PostToConnection` per client from 32 threads; locally every send is also served "
        "by the gateway's `@connections` server in the same process, so the rate is bounded by that process's CPU "
        "(≈ 1.05 ms of CPU per delivery, half of it the sender's signing and HTTP, the process busy for the whole "
        "fan-out); in single runs on this machine the last client had the event 1.17–1.27 s after the request. "
        "Against API Gateway each send is a ~10–30 ms round trip and 32 senders reach ~1,000 per second."
    )


def _large_registry(result: ScenarioResult, goal: Goal) -> str:
    if "peak RSS" in goal.name:
        idle = _median(result, "stack process: RSS just before a churn")
        fresh = _median(result, "stack process: RSS of a fresh stack")
        cold_fill = _median(result, "fresh process (cold Lambda): first fill, peak")
        cold_churn = _median(result, "fresh process (cold Lambda): churn refresh, peak")
        base = _median(result, "fresh process (cold Lambda): RSS after")
        return (
            f"The stack process starts at {fmt(fresh)} MB, grows during its first 20,000-model refresh and does not "
            f"shrink afterwards: it sat at {fmt(idle)} MB (median) before each churn refresh. CPython keeps freed small objects in its own arenas, "
            "and an arena goes back to the OS only when it is entirely free; the long-lived objects created during a "
            "refresh (the cached model records) are interleaved with the short-lived ones, so the high-water mark of "
            "the first refresh stays. What a refresh holds at its peak (measured in-process with tracemalloc): the "
            "9 MB response body, the parsed document (≈ 39 MB of dicts), the 20,000 pydantic `Model`s (≈ 36 MB) "
            "while the document is still alive, then the records (≈ 15 MB), plus the previous generation's records "
            "in the cache (≈ 15 MB) and, in this process, whatever the `GET /models` requests left. A fresh "
            f"process doing only the refresh (like a refresh Lambda) peaked at {fmt(cold_fill)} MB for the first "
            f"fill and {fmt(cold_churn)} MB for a churn refresh, from {fmt(base)} MB after its imports. Proposed "
            "fixes: in `providers/registry.py`, pop each vendor's entry from the parsed document while converting it "
            "(the document and the Models are then never both whole: in-process the transient peak went from 80 to "
            "60 MB above the baseline), and build the stored records "
            "without an intermediate pydantic `Model` per entry for registries."
        )
    if "first fill" in goal.name or "removed refresh" in goal.name:
        return (
            "Where a 20,000-model refresh spends its CPU (single-threaded, measured in-process): parsing the 9 MB "
            "JSON ≈ 0.2–0.3 s, the adapter's normalization (`registry.to_model`: a pydantic `Model` + `Pricing` "
            "with `Decimal` arithmetic per entry) ≈ 0.45–0.65 s, records ≈ 0.1 s, the fingerprint ≈ 0.1–0.2 s, "
            "the diff ≈ 0.05 s, serializing and compressing the chunks ≈ 0.25 s, plus ≈ 20 DynamoDB calls "
            "(chunk writes of 25 KB items, commit, clean-up) on the serialized embedded DynamoDB; on a loaded "
            "2-core machine all of this stretches."
        )
    if "GET" in goal.name:
        return (
            "A cold `GET /api/v1/models` reads every chunk (one `Query` per 1 MB page), decompresses and parses "
            "them, builds 20,000 response dicts and serializes ≈ 5 MB of JSON through `chalice.local`."
        )
    return ""


def _mid(values: list[float]) -> float | None:
    import statistics

    return statistics.median(values) if values else None


PROFILE_NOTES = [
    "Profiled with py-spy (`record --idle --threads` on the stack process and the DynamoDB child) and cProfile / "
    "tracemalloc in-process while this benchmark was written; numbers from a 2-core machine with a load of 2–6.",
    "",
    "**Issue 17** (profiled the same way; the changes are in `git log`):",
    "",
    "- **Every DynamoDB call on a new TCP connection**: werkzeug's server answered each request with `Connection: "
    "close`. The embedded DynamoDB now keeps connections alive (`devstack/wsgi_server.py`): a `GetItem` went from "
    "3.7 to 2.4 ms, of which moto itself is ~1.1 ms. A first keep-alive attempt took 48 ms a call: the response's "
    "headers and body went out in two writes, and the body waited for the client's delayed ACK (Nagle); one write "
    "and `TCP_NODELAY` fixed it.",
    "- **40 ms on every REST request of a kept-alive connection**: the same Nagle delay in `chalice.local` "
    "(`GET /health` 44 ms → 1.7 ms), and in the gateway's `@connections` answers with a body (a 410).",
    "- **Unchanged refresh**: it ran one keys-only `Query` per provider to check the stored lists (and read every "
    "list in a cold process): now a rotating sample of 4 chunks and the readers' repair requests. The manifest read, "
    "the journal's end and that sample run while the providers are fetched.",
    "- **50,000 models** (CPU, quiet machine): the registry adapter built a pydantic `Model` per entry (≈ 6 s under "
    "load) — records are built directly (≈ 0.3 s); the limits check walked every value of every record (0.55 s) — a "
    "quick check of plain records (0.14 s); the whole answer was parsed at once (a 97 MB tree for 23 MB of JSON) — "
    "one provider section at a time; records took 57 MB — 26 MB with their small values shared. A change rewrote "
    "every chunk and diffed the whole list — now ~10 of ~200 chunks. The chunks a spread-out change retires (150) "
    "were deleted in fenced transactions before the next change answered (≈ 0.9 s in moto): the next run deletes "
    "them while it fetches.",
    "- **Fan-out and connects**: a botocore `post_to_connection` cost ~0.8 ms of CPU besides the request "
    "(hooks, endpoint rules, parsing): the sender signs and posts itself (0.2 ms). Counting the connections for the "
    "request's budget scanned 1,000 ids (0.2 s in moto): a `Select=COUNT` scan (36 ms). The subscribe's "
    "`UpdateItem` (a `subscribed_at` nobody read) is gone: one write per connection. The embedded DynamoDB's "
    "snapshot (a scan of every table under its request lock, every 0.5 s while writes come) cost ~30 % of the "
    "connect rate at 1,000 clients; the connections table is now neither snapshotted nor in the write-ahead log "
    "(a connect waits for no `fdatasync`).",
    "- **Serializing records**: `json.dumps(sort_keys=True)` of every record, for the list fingerprint and the chunk "
    "digests, was a quarter of a 50,000-model refresh's CPU (0.4 s): orjson writes the same bytes in 0.13 s; the "
    "numbers it writes otherwise (below 1e-4) go through `json`.",
    "- **Connection ids**: the local gateway drew every character of an id from the OS's random source (47 calls "
    "per connect): one draw per id; request ids (three per delivery) come from a plain PRNG.",
    "- **Unchanged refresh-all, 20 × 300 ms** (0.37 s, goal 0.36 s): the 20 requests went out over 30–50 ms. Each "
    "run started a thread pool (20 thread starts, each a hand-over of the interpreter lock), a `threading.Timer` "
    "per request for its deadline (20 more), its catalog reads in another thread competing with them, and a new "
    "HTTP session (20 new connections, closed again at the end: 2–4 ms). Now the engine keeps its fetch threads, "
    "one watchdog thread serves every deadline, the catalog reads run in the run's own thread after the fetches "
    "are handed out, and the session is kept from one run to the next (closed when idle for 30 s): 0.336 s; the "
    "changing run went from 0.41–0.45 s to 0.38 s.",
    "- **The local `@connections` server** (1,000-client fan-out, ≈ 1.4 ms of stack CPU per delivery): a threaded "
    "`http.server` (a thread per connection, headers parsed with the email package, a hand-over to the event loop "
    "and back per message) was about a quarter of it. It is now an HTTP/1.1 server on the gateway's own event loop; "
    "the sender uses its endpoint's connection pool directly instead of a `PoolManager` (which parsed and keyed "
    "every URL): ≈ 1.05 ms per delivery, the last of 1,000 clients at ≈ 1.2 s instead of ≈ 1.5 s.",
    "",
    "**Earlier (issues 4 and 8)**:",
    "",
    "- **Refresh-all, 20 changed providers** (before the fixes below: 2.6 s median). The request thread spent "
    "36 % of the locked run in `RefreshEngine._collect_garbage` (per provider `CatalogStore.delete_generations`: "
    "`Query` + `BatchWriteItem`), 25 % in `CatalogStore.read_provider_models` (reading each provider's previous "
    "list for the diff), 20 % in `CatalogStore.write_generation` and 14 % fetching: ≈ 88 DynamoDB calls one after "
    "another, each waiting in `SocketIO.readinto` for the serialized embedded DynamoDB (49 % of all samples).",
    "- **Refresh-all, unchanged**: the fetch is the whole run. With 20 providers on one `FakeProviderServer` "
    "(a `socketserver` with a listen backlog of 5) some connections most likely hit a full accept queue and "
    "waited for the 1 s SYN retransmit (slowest fetches of 1.3 s = 0.3 s + 1 s; gone with one server per provider); the benchmark now gives each provider its own server, as 20 real hosts "
    "would be. The default `fetch_concurrency` of 16 makes 20 providers two waves of fetches.",
    "- **Changes made** (behaviour unchanged; `tests/test_refresh.py`, `test_refresh_e2e.py`, `test_events.py` and "
    "`test_faults.py` pass): `refresh.py` computes each provider's fingerprint once (it was computed twice for "
    "changed providers), reads the stored lists of the providers that differ, writes the new chunk generations "
    "and runs the clean-up per provider in parallel (`STORE_CONCURRENCY = 8`); `store.py` serializes each model "
    "once for chunking and packing (`pack_chunks`, byte-identical to `codec.pack(chunk)` per chunk), caches a "
    "generation when it writes it (the next refresh's diff and the first `GET /models` after it no longer read "
    "it back), and keeps at most one generation per provider in the cache (superseded lists no longer pile up). Measured on the same machine before/after: 20 changed providers "
    "2.6 s → 0.9–1.1 s; first `GET /models` after a 20,000-model refresh 0.33–0.92 s → 0.14–0.19 s; stack process "
    "RSS after three churn refreshes 215 MB → 177 MB; per changed 20,000-model provider one fingerprint "
    "(0.1–0.2 s) and one serialization pass (0.1–0.2 s) less.",
    "- **20,000-model refresh, CPU** (in-process, per 20,000 models): `json.loads` of the 9 MB body 0.18–0.34 s, "
    "`providers.registry.to_model` 0.44–0.66 s (the largest single cost: per entry a pydantic `Model` and "
    "`Pricing`, `Decimal` prices, `dig` lookups), `store.model_record` 0.09 s, `codec.fingerprint` 0.11–0.18 s, "
    "`diff_models` 0.05 s, chunking + packing 0.2–0.3 s, reading a generation back (`codec.unpack`) 0.06–0.12 s.",
    "- **Memory** (tracemalloc, 20,000 models): parsed document 39 MB, pydantic Models 36 MB (both alive at the end "
    "of the adapter: the peak), records 15 MB; the `GET /models` response ≈ 5 MB of JSON plus its dicts.",
    "- **Fan-out connect rate**: each connect + subscribe is a `$connect` (`ConnectionStore.add`: `PutItem`), a "
    "subscribe (`read_manifest`: `GetItem`, `ConnectionStore.touch`: `UpdateItem`) and a reply through the local "
    "`@connections` API; the handler threads spend most of their time waiting for the serialized embedded "
    "DynamoDB, so connections/s is bounded by it (≈ 3 DynamoDB calls per connection), not by the gateway.",
]
