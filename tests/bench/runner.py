"""The ``make bench`` command line: run the scenarios, write the report (and optionally the raw JSON)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from tests.bench import (
    answer_memory,
    catalog_scale,
    client_scale,
    cold_start,
    fanout,
    large_registry,
    refresh_all,
    revalidate,
    web_page,
    webhooks,
)
from tests.bench.common import REPO, ScenarioResult, machine_info
from tests.bench.report import render

SCENARIOS: dict[str, tuple[str, Callable[[bool], ScenarioResult]]] = {
    # Cold start first: it needs a quiet machine most and starts no stack.
    "cold_start": ("Cold start", cold_start.run),
    "refresh_all": ("Refresh-all", refresh_all.run),
    "fanout": ("Fan-out", fanout.run),
    "large_registry": ("20,000-model registry", large_registry.run),
    "revalidate": ("Conditional GET at 20,000 models", revalidate.run),
    "answer_memory": ("Memory per MB of provider answer", answer_memory.run),
    "catalog_scale": ("Catalog at scale", catalog_scale.run),
    "client_scale": ("Clients at scale", client_scale.run),
    "webhooks": ("Webhooks", webhooks.run),
    "web_page": ("The web page with 50,000 models", web_page.run),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md",
                        help="the Markdown report to write (default: docs/benchmarks.md)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results as JSON here")
    parser.add_argument("--quick", action="store_true",
                        help="1 repetition and small sizes: proves the runner works (numbers not comparable)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    args.selected = [s.strip() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    unknown = [s for s in args.selected if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return args


def run_scenario(key: str, quick: bool) -> ScenarioResult:
    title, function = SCENARIOS[key]
    started = time.monotonic()
    print(f"bench: {title} …", file=sys.stderr, flush=True)
    try:
        result = function(quick)
    except Exception:
        result = ScenarioResult(key, title, error=traceback.format_exc())
        print(f"bench: {title} FAILED\n{result.error}", file=sys.stderr, flush=True)
    result.seconds = time.monotonic() - started
    result.sample_load()
    for goal in result.goals:
        print(f"bench:   {goal.name}: {goal.measured} {goal.unit} → {goal.verdict}", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    started = time.time()
    machine = machine_info()
    results = [run_scenario(key, args.quick) for key in args.selected]
    report = render(results, machine, {"quick": args.quick}, started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": machine,
            "quick": args.quick,
            "started": started,
            "results": [r.to_json() for r in results],
        }, indent=2, default=str), encoding="utf-8")
    print(f"bench: wrote {args.output}", file=sys.stderr, flush=True)
    return 1 if any(r.error for r in results) else 0
