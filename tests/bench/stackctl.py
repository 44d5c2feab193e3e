"""Starting and stopping local stacks for the benchmarks, and reading their structured logs."""

from __future__ import annotations

import contextlib
import json
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.stack import LocalStack

BENCH_TOKEN = "bench-token-0123456789abcdef"


def config_text(options: dict[str, Any], providers: list[dict[str, Any]]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        return json.dumps(v)

    lines = ["[model_catalog]", "refresh_on_start = false"]
    lines += [f"{k} = {value(v)}" for k, v in options.items()]
    for provider in providers:
        lines += ["", "[[providers]]"] + [f"{k} = {value(v)}" for k, v in provider.items()]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def running_stack(
    options: dict[str, Any], providers: list[dict[str, Any]], env: dict[str, str] | None = None
) -> Iterator[LocalStack]:
    """A fresh local stack (own temp state dir) with this config; stopped (or killed) on the way out."""
    with tempfile.TemporaryDirectory(prefix="model-catalog-bench-") as tmp:
        config = Path(tmp) / "catalog.toml"
        config.write_text(textwrap.dedent(config_text(options, providers)))
        stack = LocalStack(
            Path(tmp),
            config=config,
            env={"MODEL_CATALOG_REFRESH_ON_START": "0", "MODEL_CATALOG_LOG_LEVEL": "INFO", **(env or {})},
            token=BENCH_TOKEN,
            tick_seconds=3600,
        )
        stack.start()
        try:
            yield stack
        finally:
            try:
                stack.stop(expect_clean=False, timeout_s=60)
            finally:
                stack.kill()


def log_entries(stack: LocalStack, message: str) -> list[dict[str, Any]]:
    """The stack's structured log lines (stderr, one JSON object each) with this ``message``."""
    entries = []
    for line in list(stack.stderr.lines if stack.stderr else []):
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == message:
            entries.append(entry)
    return entries


def next_log_entry(stack: LocalStack, message: str, seen: int, timeout_s: float = 3.0) -> dict[str, Any]:
    """The newest ``message`` log entry once there are more than ``seen`` of them ({} if none came in time)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        entries = log_entries(stack, message)
        if len(entries) > seen:
            return entries[-1]
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.02)
