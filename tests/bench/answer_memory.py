"""Memory per MB of provider answer: the peak RSS of one fetch (HTTP read → JSON → adapter → records → fingerprint)
in a fresh process, above that process's baseline.

    python -m tests.bench.answer_memory child <kind> <url> [<url> …]     # one measurement (the runner's child)

Each measurement is a new Python process (like a cold Lambda) that imports and wires the fetch path, records its
RSS, resets the kernel's high-water mark (``/proc/self/clear_refs``) and then fetches from a ``FakeProviderServer``
in the parent; it prints the peak (``VmHWM``) minus the baseline. Several URLs are fetched concurrently through one
``ProviderFetcher`` (one run's fetch pool): that measures the one-large-answer-at-a-time gate.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.bench.common import REPO, Goal, ScenarioResult, fmt
from tests.fakes.provider_server import FakeProviderServer, fixture_json
from tests.stack import isolated_env

GOAL_LARGEST_ANSWER_MB = 256.0  # the worst answer of the largest size (the body cap is 32 MB), above the baseline
GOAL_MODEL_LIMIT_MB = 128.0  # the most models one provider may list (50,000), as small as entries get
MB = 1024 * 1024
# Before issue 12 (the same child, same shapes, same machine): the answer was held as chunks + joined bytes + text +
# parsed tree + Models + records + the fingerprint's text.
BEFORE = {"many tiny models (openai)": 553.0, "OpenRouter-style": 163.0, "models.dev registry": 213.0}


def _status_mb(name: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(text.split(f"{name}:", 1)[1].split()[0]) / 1024


def child(kind: str, urls: list[str]) -> int:
    sys.path.insert(0, str(REPO))
    import gc

    # The adapters are imported on first fetch otherwise (their import would count as the answer's memory).
    import chalicelib.providers.openai_compatible
    import chalicelib.providers.openrouter
    import chalicelib.providers.registry  # noqa: F401
    from chalicelib.catalog_config import ProviderConfig
    from chalicelib.core.plan import FetchOutcome
    from chalicelib.errors import ProviderError
    from chalicelib.providers import ProviderFetcher
    from chalicelib.settings import settings_from_env

    settings = settings_from_env({"MODEL_CATALOG_ALLOW_PRIVATE_URLS": "1", "MODEL_CATALOG_DEPLOYMENT_ID": "bench"})
    providers = [
        ProviderConfig.model_validate({"id": f"p{i}", "kind": kind, ("url" if kind == "registry" else "base_url"): url})
        for i, url in enumerate(urls)
    ]
    fetcher = ProviderFetcher(settings)
    gc.collect()
    base = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS

    def fetch(provider: Any) -> tuple[int, str | None]:
        try:
            records = fetcher.fetch(provider, time.monotonic() + 300)
            FetchOutcome.succeeded(provider.id, records)  # the fingerprint, as the engine computes it
            return len(records), None
        except ProviderError as error:
            return 0, error.reason

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(providers)) as pool:
        outcomes = list(pool.map(fetch, providers))
    print(json.dumps({
        "base_mb": base,
        "peak_above_base_mb": _status_mb("VmHWM") - base,
        "seconds": time.perf_counter() - started,
        "models": [count for count, _ in outcomes],
        "failures": [reason for _, reason in outcomes if reason],
    }))
    return 0


# -- answer shapes -----------------------------------------------------------------------------------------------------


def _tiny(n: int) -> Any:
    return {"object": "list", "data": [
        {"id": f"org-{i % 97}/model-{i:07d}", "object": "model", "created": 1700000000, "owned_by": "org"}
        for i in range(n)
    ]}


def _openai_padded(n: int, pad: int) -> Any:
    return {"object": "list", "data": [
        {"id": f"org-{i % 97}/model-{i:07d}", "object": "model", "created": 1700000000, "owned_by": "org",
         "context_window": 128000, "description": "d" * pad}
        for i in range(n)
    ]}


def _openrouter(n: int) -> Any:
    base = fixture_json("openrouter_models.json")["data"]
    return {"data": [{**base[i % len(base)], "id": f"{base[i % len(base)]['id']}-{i}"} for i in range(n)]}


def _registry(n: int) -> Any:
    doc = fixture_json("models_dev_api.json")
    samples = [model for provider in doc.values() for model in provider["models"].values()]
    out: dict[str, Any] = {}
    for i in range(n):
        section = out.setdefault(f"prov{i % 50}", {"id": f"prov{i % 50}", "models": {}})
        section["models"][f"m-{i}"] = {**samples[i % len(samples)], "family": "f" * 300}
    return out


def _sized(make: Callable[[int], Any], megabytes: float) -> tuple[bytes, int]:
    """The body of about ``megabytes`` MB and its model count."""
    per_model = len(json.dumps(make(200)).encode()) / 200
    count = max(1, int(megabytes * MB / per_model))
    return json.dumps(make(count)).encode(), count


SHAPES: dict[str, tuple[str, str, Callable[[int], Any]]] = {
    # name: (kind, route, body of n models)
    "many tiny models (openai)": ("openai", "/v1/models", _tiny),
    "OpenAI-style, ~45,000 models": ("openai", "/v1/models", lambda n: _openai_padded(n, 640)),
    "OpenRouter-style": ("openrouter", "/api/v1/models", _openrouter),
    "models.dev registry": ("registry", "/api.json", _registry),
}


def _measure(server: FakeProviderServer, kind: str, routes: list[str]) -> dict[str, Any]:
    urls = [server.url + (route if kind == "registry" else route.rsplit("/models", 1)[0]) for route in routes]
    process = subprocess.run(
        [sys.executable, "-m", "tests.bench.answer_memory", "child", kind, *urls],
        capture_output=True, text=True, cwd=REPO, env=isolated_env(), timeout=600,
    )
    if process.returncode != 0:
        raise RuntimeError(f"measurement child failed: {process.stderr[-2000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def run(quick: bool) -> ScenarioResult:
    result = ScenarioResult("answer_memory", "Memory per MB of provider answer")
    sizes = [2.0] if quick else [8.0, 31.5]  # just under the 32 MB body cap
    result.method = [
        "Each measurement is a fresh Python process (`python -m tests.bench.answer_memory child …`, like a cold "
        "Lambda) that imports the fetch path, builds a `ProviderFetcher`, records its RSS, resets the kernel's "
        "high-water mark (`/proc/self/clear_refs`), fetches from a `FakeProviderServer` in the parent process "
        "(real HTTP on 127.0.0.1, `Content-Length` declared) and computes the fingerprint as the engine does. The "
        "figure is `VmHWM` minus the baseline: the memory the answer itself costs (the process baseline with the "
        "fetch path imported is reported beside it).",
        "Shapes: many tiny models (an OpenAI list of 4-field entries: the most objects per MB, past the "
        "50,000-model limit, so it is refused — after parsing); an OpenAI list of ~45,000 entries padded with an "
        "ignored description; OpenRouter's real entries (rich: pricing, architecture, descriptions); a models.dev "
        "registry built from the fixture's models.",
        "Two answers at once: two providers of the largest size fetched concurrently by one fetcher (one run's "
        "fetch pool), to show that answers over 1 MB are read and processed one at a time.",
    ]
    largest = sizes[-1]
    worst_largest = 0.0
    with FakeProviderServer() as server:

        def measure(name: str, kind: str, route: str, body: bytes, count: int) -> dict[str, Any]:
            server.route("GET", route, body=body, headers={"Content-Type": "application/json"})
            measured = _measure(server, kind, [route])
            peak, answer_mb = measured["peak_above_base_mb"], len(body) / MB
            outcome = (f"{measured['models'][0]:,} models stored" if not measured["failures"]
                       else "refused: " + measured["failures"][0].split(";")[0])
            result.facts.append((
                f"{name}, {answer_mb:.1f} MB ({count:,} models)",
                f"peak +{peak:.0f} MB ({peak / answer_mb:.1f} MB per MB, {peak * 1024 / count:.2f} KB per model) "
                f"in {measured['seconds']:.1f} s; {outcome}",
            ))
            result.extra.setdefault("measurements", []).append({"shape": name, "answer_mb": answer_mb, **measured})
            return measured

        for name, (kind, route, make) in SHAPES.items():
            for size in sizes:
                body, count = _sized(make, size)
                measured = measure(name, kind, route, body, count)
                if size == largest:
                    worst_largest = max(worst_largest, measured["peak_above_base_mb"])
        at_limit = 2_000 if quick else 50_000
        limit_body = json.dumps(_tiny(at_limit)).encode()
        limit_peak = measure("many tiny models at the model limit", "openai", "/v1/models", limit_body, at_limit)
        kind, route, make = SHAPES["OpenAI-style, ~45,000 models"]
        body, count = _sized(make, largest)
        server.route("GET", route, body=body, headers={"Content-Type": "application/json"})
        server.route("GET", "/other" + route, body=body, headers={"Content-Type": "application/json"})
        pair = _measure(server, kind, [route, "/other" + route])
        result.facts.append((
            f"two {len(body) / MB:.1f} MB answers fetched concurrently in one run",
            f"peak +{pair['peak_above_base_mb']:.0f} MB in {pair['seconds']:.1f} s (baseline {pair['base_mb']:.0f} MB)",
        ))
        result.facts.append(("process baseline (Python, the fetch path imported, a fetcher built)",
                             f"{pair['base_mb']:.0f} MB"))
    result.goals.append(Goal(f"answer memory: worst {fmt(largest)} MB answer, peak above baseline",
                             GOAL_LARGEST_ANSWER_MB, "MB", worst_largest,
                             detail=f"worst of {len(SHAPES)} shapes; 32 MB is the body cap"))
    result.goals.append(Goal(f"answer memory: {at_limit:,} tiny models (the per-provider limit), peak above baseline",
                             GOAL_MODEL_LIMIT_MB, "MB", limit_peak["peak_above_base_mb"],
                             detail=f"{len(limit_body) / MB:.1f} MB answer"))
    result.notes.append(
        "Before issue 12 the same measurement of a 32 MB answer peaked at "
        + ", ".join(f"+{mb:.0f} MB ({name})" for name, mb in BEFORE.items())
        + ": chunks and their joined copy, the decoded text, the parsed tree, every `Model`, every record and the "
        "fingerprint's text were alive together."
    )
    return result


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "child":
        sys.exit(child(sys.argv[2], sys.argv[3:]))
    raise SystemExit("usage: python -m tests.bench.answer_memory child <kind> <url> [<url> …]")
