"""Cold start: ``python -X importtime -c "import app"`` ≤ 300 ms (issue 8), and the heaviest imports."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

from tests.bench.common import REPO, Goal, ScenarioResult, fmt
from tests.stack import isolated_env

GOAL_MS = 300.0
_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S.*)$")


def parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """(self µs, cumulative µs, depth, module) per ``-X importtime`` line, in output order."""
    rows = []
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if match:
            self_us, cumulative_us, indent, module = match.groups()
            rows.append((int(self_us), int(cumulative_us), len(indent) // 2, module.strip()))
    return rows


def app_subtree(rows: list[tuple[int, int, int, str]]) -> list[tuple[int, int, int, str]]:
    """The lines of what ``import app`` imported: -X importtime prints children before their parent, so they are
    the lines right before the last (``app``) line, back to the previous top-level line."""
    start = len(rows) - 1
    while start > 0 and rows[start - 1][2] > 0:
        start -= 1
    return rows[start:-1]


def _one_run(env: dict[str, str]) -> tuple[float, float, list[tuple[int, int, int, str]]]:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import app"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"import app failed: {completed.stderr[-2000:]}")
    rows = parse_importtime(completed.stderr)
    if not rows or rows[-1][3] != "app":
        raise RuntimeError(f"unexpected -X importtime output; last line: {completed.stderr.splitlines()[-1:]}")
    return rows[-1][1] / 1000, wall, rows


def run(quick: bool) -> ScenarioResult:
    reps = 2 if quick else 9
    result = ScenarioResult("cold_start", "Cold start: `import app`")
    result.method = [
        '`python -X importtime -c "import app"` in the repository with the test isolation environment (no '
        "MODEL_CATALOG_*, dummy AWS credentials), one untimed warm-up run (OS file cache), then "
        f"{reps} runs; the measure is the last line's cumulative µs (`app` and everything it imports that Python's "
        "own start-up had not imported yet). Medians.",
        "Two bytecode situations: `PYTHONDONTWRITEBYTECODE=1` as `make` runs it (site-packages have the .pyc that pip "
        "wrote; the project's own modules are compiled on every start, like a Lambda bundle without .pyc), and a "
        "warmed private `PYTHONPYCACHEPREFIX` (everything from cached bytecode; the tree is not touched).",
        "Heaviest imports, from the default runs (medians): the 5 modules `app` imports directly, by cumulative "
        "time (with everything they import), and the 5 modules below `app` with the largest own (self) time.",
    ]
    default_env = isolated_env({"PYTHONDONTWRITEBYTECODE": "1"})
    default_env.pop("PYTHONPYCACHEPREFIX", None)
    default = result.new_series("`import app` (-X importtime cumulative), project compiled at start", "ms")
    wall = result.new_series("whole interpreter run `python -c 'import app'` (wall, incl. Python start)", "ms")
    cumulative: dict[str, list[int]] = defaultdict(list)
    own: dict[str, list[int]] = defaultdict(list)
    depth_of: dict[str, int] = {}
    _one_run(default_env)
    for _ in range(reps):
        total_ms, wall_s, rows = _one_run(default_env)
        default.add(total_ms)
        wall.add(wall_s * 1000)
        for self_us, cumulative_us, depth, module in app_subtree(rows):
            cumulative[module].append(cumulative_us)
            own[module].append(self_us)
            depth_of[module] = depth
    with tempfile.TemporaryDirectory(prefix="model-catalog-pycache-") as cache:
        cached_env = {**default_env, "PYTHONPYCACHEPREFIX": cache}
        cached_env.pop("PYTHONDONTWRITEBYTECODE")
        _one_run(cached_env)  # fills the private bytecode cache
        cached = result.new_series("`import app`, all modules from cached bytecode", "ms")
        for _ in range(reps):
            cached.add(_one_run(cached_env)[0])

    # `app` is the last line at depth 0: the modules it imports itself are the depth-1 lines.
    direct = sorted(((statistics.median(v) / 1000, m) for m, v in cumulative.items() if depth_of[m] == 1),
                    reverse=True)[:5]
    result.facts += [(f"`app` imports, #{i + 1} by cumulative time: `{module}`", f"{ms:.1f} ms")
                     for i, (ms, module) in enumerate(direct)]
    selfish = sorted(((statistics.median(v) / 1000, m) for m, v in own.items() if m != "app"), reverse=True)[:5]
    result.facts += [(f"module #{i + 1} by own (self) import time: `{module}`", f"{ms:.1f} ms")
                     for i, (ms, module) in enumerate(selfish)]
    lazily = [m for m in ("boto3", "botocore", "pydantic", "requests", "websockets", "cryptography")
              if m not in cumulative]
    result.facts.append(("not imported by `import app` (lazy)", ", ".join(f"`{m}`" for m in lazily) or "—"))
    result.goals.append(
        Goal('cold start: `python -X importtime -c "import app"`', GOAL_MS, "ms", default.median,
             detail=f"median of {reps}; from cached bytecode {fmt(cached.median)} ms")
    )
    return result
