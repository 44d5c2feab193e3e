# ruff: noqa: F811
"""The CLI's ``changes`` command and the ``models`` filters (docs/reference.md §5.3) against the stub API of
tests/unit/test_cli.py. End to end against the local stack: tests/e2e/test_feeds_e2e.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

import catalog_cli as cli

# `stub` and `_no_cli_env` are test_cli.py's fixtures, used here by name (hence F401/F811).
from tests.unit.test_cli import MODELS, StubApi, _no_cli_env, run, stub  # noqa: F401

EPOCH = "ep1"


def event(seq: int, added: str = "m") -> dict[str, Any]:
    return {"type": "event.model_catalog.changed", "seq": seq, "epoch": EPOCH,
            "timestamp": f"2026-12-01T00:00:0{seq % 10}.000Z",
            "payload": {"revision": seq, "changed": [{"provider_id": "openai", "provider_name": "OpenAI",
                                                       "added": [f"{added}-{seq}"], "removed": [], "updated": []}],
                        "unchanged": [], "failed": []}}


def page(events: list[dict[str, Any]], seq: int, has_more: bool = False, resync: bool = False) -> dict[str, Any]:
    return {"epoch": EPOCH, "seq": seq, "events": events, "has_more": has_more, "resync_required": resync}


def test_models_filters_are_sent_as_the_query(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/models", body=MODELS)
    assert run(stub, "models", "--capability", "tools", "--capability", "vision", "--min-context", "128000",
               "--query", "GPT", "--status", "active", "--provider", "openai") == cli.EXIT_OK
    assert stub.seen[-1].query == {"capability": ["tools", "vision"], "min_context": ["128000"], "q": ["GPT"],
                                   "status": ["active"], "provider_id": ["openai"], "limit": ["5000"]}
    assert "2 models, revision 7" in capsys.readouterr().out


def test_models_without_filters_asks_only_for_pages(stub: StubApi) -> None:
    stub.route("GET", "/api/v1/models", body=MODELS)
    assert run(stub, "models") == cli.EXIT_OK
    assert stub.seen[-1].query == {"limit": ["5000"]}


def test_models_reads_every_page(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    """One answer carries at most ~20,000 models (past that, 400 page_required): the CLI follows next_cursor."""
    first, second = MODELS["models"]
    stub.route("GET", "/api/v1/models", body={"revision": 7, "models": [first], "next_cursor": "c1"})
    stub.route("GET", "/api/v1/models", body={"revision": 7, "models": [second], "next_cursor": None})
    assert run(stub, "models", "--json") == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out) == MODELS
    assert [s.query.get("cursor") for s in stub.seen] == [None, ["c1"]]


@pytest.mark.parametrize("argv", [["models", "--min-context", "-1"], ["models", "--status", "retired"],
                                  ["changes", "--since", "x"], ["changes", "--limit", "0"]])
def test_bad_options_are_usage_errors(stub: StubApi, argv: list[str]) -> None:
    assert run(stub, *argv) == cli.EXIT_USAGE
    assert stub.seen == []


def test_an_invalid_parameter_answer_is_a_usage_error(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/models", status=400, body={"error": {
        "code": "invalid_parameter", "message": "query parameter 'capability': unknown capability 'telepathy'"}})
    assert run(stub, "models", "--capability", "telepathy") == cli.EXIT_USAGE
    assert "unknown capability 'telepathy'" in capsys.readouterr().err


def test_changes_prints_the_newest_events(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/changes", body=page([event(4), event(5)], seq=5))
    assert run(stub, "changes") == cli.EXIT_OK
    assert stub.seen[-1].query == {"limit": ["100"]}
    out = capsys.readouterr().out
    assert "#4 catalog changed, revision 4" in out and "    + m-5" in out
    assert out.rstrip().endswith(f"latest: #5 of epoch {EPOCH}; next: changes --since 5 --epoch {EPOCH}")


def test_changes_since_follows_has_more(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/changes", body=page([event(3), event(4)], seq=5, has_more=True))
    stub.route("GET", "/api/v1/changes", body=page([event(5)], seq=5))
    assert run(stub, "changes", "--since", "2", "--epoch", EPOCH, "--json") == cli.EXIT_OK
    assert [seen.query for seen in stub.seen] == [
        {"since": ["2"], "epoch": [EPOCH], "limit": ["500"]},
        {"since": ["4"], "epoch": [EPOCH], "limit": ["500"]},
    ]
    assert json.loads(capsys.readouterr().out) == page([event(3), event(4), event(5)], seq=5)


def test_changes_since_takes_the_current_epoch_when_none_is_given(stub: StubApi) -> None:
    stub.route("GET", "/api/v1/changes", body=page([event(5)], seq=5))
    stub.route("GET", "/api/v1/changes", body=page([], seq=5))
    assert run(stub, "changes", "--since", "5") == cli.EXIT_OK
    assert [seen.query for seen in stub.seen] == [{"limit": ["1"]},
                                                  {"since": ["5"], "epoch": [EPOCH], "limit": ["500"]}]


def test_changes_limit_stops_early_and_says_where_to_go_on(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/changes", body=page([event(3), event(4)], seq=9, has_more=True))
    assert run(stub, "changes", "--since", "2", "--epoch", EPOCH, "--limit", "2") == cli.EXIT_OK
    assert stub.seen[-1].query["limit"] == ["2"] and len(stub.seen) == 1
    assert f"latest: #9 of epoch {EPOCH} (more follow); next: changes --since 4 --epoch {EPOCH}" in \
        capsys.readouterr().out


def test_changes_resync_required(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    stub.route("GET", "/api/v1/changes", body=page([], seq=9, resync=True))
    assert run(stub, "changes", "--since", "1", "--epoch", "old") == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "resync required" in out and f"next: changes --since 9 --epoch {EPOCH}" in out
    assert run(stub, "changes", "--since", "1", "--epoch", "old", "--json") == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out) == page([], seq=9, resync=True)
