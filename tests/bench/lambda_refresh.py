"""A refresh in a fresh process, like a cold Lambda: ``import app``, then ``POST /providers:refresh``'s service call.

    python -m tests.bench.lambda_refresh      # env: the app's MODEL_CATALOG_* pointing at a running local stack

Prints one JSON line: the refresh's wall time, the process's RSS after the imports and wiring, its peak RSS
(``VmHWM``: the whole process's high-water mark, imports included) and the RefreshResult's counts. Unlike the stack
process it has no HTTP server, WebSocket gateway or cache from earlier requests: the memory a refresh Lambda needs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tests.bench.common import REPO


def _status_mb(name: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(text.split(f"{name}:", 1)[1].split()[0]) / 1024


def main() -> int:
    sys.path.insert(0, str(REPO))
    import app  # what the Lambda imports first

    service = app.runtime().service  # the wiring and its DynamoDB client exist in a warm Lambda: built before the baseline
    before = _status_mb("VmRSS")
    started = time.perf_counter()
    result = service.refresh("all", trigger="manual")
    seconds = time.perf_counter() - started
    print(json.dumps({
        "seconds": seconds,
        "rss_before_mb": before,
        "peak_mb": _status_mb("VmHWM"),
        "added": sum(len(c["added"]) for c in result["changed"]),
        "removed": sum(len(c["removed"]) for c in result["changed"]),
        "failed": len(result["failed"]),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
