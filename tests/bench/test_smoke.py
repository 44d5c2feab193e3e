"""`make bench` still works: the runner in quick mode (1 repetition, small sizes) measures every goal, writes the
report, and leaves no process behind. No timing is asserted here (speed goals live in docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.cold_start import app_subtree, parse_importtime
from tests.bench.common import attribute_size, item_size
from tests.stack import REPO, isolated_env, pid_alive

pytestmark = pytest.mark.stack


def processes_using(directory: Path) -> list[int]:
    """Live processes whose environment mentions ``directory`` (the bench's stacks keep their state there)."""
    needle = str(directory).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes() and pid_alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_the_quick_benchmark_measures_every_goal_and_cleans_up(tmp_path: Path) -> None:
    report, raw = tmp_path / "benchmarks.md", tmp_path / "benchmarks.json"
    work = tmp_path / "tmp"
    work.mkdir()
    completed = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--quick", "--output", str(report), "--json", str(raw)],
        cwd=REPO, env=isolated_env({"TMPDIR": str(work)}), capture_output=True, text=True, timeout=480,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = json.loads(raw.read_text())["results"]
    assert [r["key"] for r in results] == ["cold_start", "refresh_all", "fanout", "large_registry", "revalidate",
                                           "answer_memory", "catalog_scale", "client_scale", "webhooks",
                                           "web_page"]
    assert all(r["error"] is None for r in results), [r["error"] for r in results if r["error"]]
    goals = {g["name"]: g for r in results for g in r["goals"]}
    assert len(goals) == 20, sorted(goals)
    assert all(g["measured"] is not None for g in goals.values()), goals
    # Correctness that the numbers rely on (not speed): no writes on a no-change run, every client got every event.
    assert goals["no-change refresh: catalog writes (max over all runs)"]["measured"] == 0
    fanout = next(r for r in results if r["key"] == "fanout")
    assert fanout["facts"]["clients that missed an event (all repetitions)"] == "0"
    assert fanout["facts"]["events whose payload differed from the REST RefreshResult"] == "0"
    clients = next(r for r in results if r["key"] == "client_scale")
    assert all(row["missing"] == 0 for row in clients["extra"]["rows"].values())
    scale = next(r for r in results if r["key"] == "catalog_scale")
    assert any("page_required" in row[1] or row[1].startswith("200") for row in scale["extra"]["rows"])

    text = report.read_text()
    for heading in ("## Machine", "## Goals", "## Profile notes", "Quick mode"):
        assert heading in text
    for goal in goals:
        assert goal in text.replace("\\|", "|")
    assert processes_using(work) == [], "the benchmark left processes running"


def test_importtime_parsing_keeps_only_what_import_app_imported() -> None:
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       100 |        100 |   encodings.aliases",
        "import time:       200 |        300 | encodings",
        "import time:        50 |         50 |     chalice.compat",
        "import time:       400 |        450 |   chalice",
        "import time:        10 |         10 |   chalicelib",
        "import time:       900 |       1360 | app",
    ])
    rows = parse_importtime(stderr)
    assert rows[-1] == (900, 1360, 0, "app")
    assert [module for *_, module in app_subtree(rows)] == ["chalice.compat", "chalice", "chalicelib"]


def test_item_size_follows_dynamodb_rules() -> None:
    assert attribute_size({"S": "héllo"}) == 6  # UTF-8 bytes
    assert attribute_size({"B": b"\x00" * 10}) == 10
    assert attribute_size({"N": "12345"}) == 4  # (5 significant digits + 1) // 2 + 1
    assert attribute_size({"BOOL": True}) == 1
    assert attribute_size({"L": [{"S": "ab"}]}) == 3 + 1 + 2
    assert attribute_size({"M": {"k": {"S": "ab"}}}) == 3 + 1 + 1 + 2
    assert item_size({"pk": {"S": "MANIFEST"}, "body": {"B": b"xyz"}}) == 2 + 8 + 4 + 3
