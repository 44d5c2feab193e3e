"""How the CLI reads field-level changes (docs/reference.md §10, "How a change reads"): the phrases of each field,
and `refresh` / `watch` printing them under each updated model. Stub servers from tests/unit/test_cli.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import catalog_cli as cli
from catalog_cli.format import describe_change, dollars, format_changes, tokens
from tests.unit.test_cli import StubApi, StubWs, _no_cli_env, run, stub, ws_script  # noqa: F401 - fixtures

PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cache_read_per_mtok": None, "cache_write_per_mtok": None}


def change(field: str, before: Any, after: Any, model_id: str = "gpt-4o") -> dict[str, Any]:
    return {"model_id": model_id, "field": field, "before": before, "after": after}


@pytest.mark.parametrize(
    ("field", "before", "after", "phrases"),
    [
        ("context_length", 128_000, 200_000, ["context 128K → 200K"]),
        ("context_length", 131_072, 1_048_576, ["context 131.1K → 1.05M"]),
        ("context_length", None, 8_192, ["context — → 8.2K"]),
        ("context_length", 131_072, 131_100, ["context 131,072 → 131,100"]),  # same short form: exact numbers
        ("max_output_tokens", 16_384, 32_768, ["max output 16.4K → 32.8K"]),
        ("display_name", "GPT-4o", "GPT-4o (2024-08-06)", ['name "GPT-4o" → "GPT-4o (2024-08-06)"']),
        ("pricing", PRICE, {**PRICE, "input_per_mtok": 2.5}, ["input $3.00 → $2.50"]),
        ("pricing", PRICE, {**PRICE, "output_per_mtok": 10.0, "cache_read_per_mtok": 0.075},
         ["output $15.00 → $10.00", "cache read — → $0.075"]),
        ("pricing", None, PRICE, ["input — → $3.00", "output — → $15.00"]),
        ("pricing", {**PRICE, "cache_write_per_mtok": 3.75}, None,
         ["input $3.00 → —", "output $15.00 → —", "cache write $3.75 → —"]),
        ("pricing", {**PRICE, "input_per_mtok": 0.1}, {**PRICE, "input_per_mtok": 0.0}, ["input $0.10 → $0"]),
        ("status", "active", "deprecated", ["deprecated"]),
        ("status", "deprecated", "active", ["no longer deprecated"]),
        ("retires_at", None, "2026-10-23", ["retires 2026-10-23"]),
        ("retires_at", "2026-10-23", "2026-12-31", ["retirement 2026-10-23 → 2026-12-31"]),
        ("retires_at", "2026-10-23", None, ["retirement date withdrawn (was 2026-10-23)"]),
        ("capabilities", ["tools"], ["reasoning", "tools", "vision"], ["capabilities +reasoning +vision"]),
        ("capabilities", ["tools", "vision"], [], ["capabilities -tools -vision"]),
        ("modalities", None, {"input": ["text", "image"], "output": ["text"]},
         ["input modalities +image +text", "output modalities +text"]),
        ("modalities", {"input": ["text"], "output": ["text"]}, {"input": ["text", "pdf"], "output": ["text"]},
         ["input modalities +pdf"]),
        ("colour", "red", "blue", ["colour changed"]),  # a field this CLI does not know yet
    ],
)
def test_each_field_change_reads_as_its_phrases(field: str, before: Any, after: Any, phrases: list[str]) -> None:
    assert describe_change(change(field, before, after)) == phrases


def test_short_numbers_and_prices() -> None:
    assert [tokens(v) for v in (None, 950, 8_192, 128_000, 200_000, 1_000_000, 2_097_152)] == [
        "—", "950", "8.2K", "128K", "200K", "1M", "2.1M"
    ]
    assert [dollars(v) for v in (None, 0, 0.0028, 0.075, 0.15, 3, 6.25)] == [
        "—", "$0", "$0.0028", "$0.075", "$0.15", "$3.00", "$6.25"
    ]


RESULT = {
    "revision": 9,
    "changed": [{
        "provider_id": "demo", "provider_name": "Demo registry", "added": [], "removed": [],
        "updated": ["acme/big", "acme/old"],
        "changes": [
            change("context_length", 128_000, 200_000, "acme/big"),
            change("pricing", PRICE, {**PRICE, "input_per_mtok": 2.5}, "acme/big"),
            change("status", "active", "deprecated", "acme/old"),
            change("retires_at", None, "2026-10-23", "acme/old"),
        ],
    }],
    "unchanged": [],
    "failed": [],
}


def test_format_changes_puts_the_phrases_on_the_updated_line() -> None:
    assert format_changes(RESULT["changed"]) == [
        "  demo (Demo registry): 0 added, 0 removed, 2 updated",
        "    ~ acme/big: context 128K → 200K; input $3.00 → $2.50",
        "    ~ acme/old: deprecated; retires 2026-10-23",
    ]
    # A truncated result (changes dropped to fit) or one from before field-level changes: the ids alone.
    truncated = [{**RESULT["changed"][0], "changes": [], "changes_count": 4}]
    assert format_changes(truncated)[1:] == ["    ~ acme/big", "    ~ acme/old"]
    legacy = [{k: v for k, v in RESULT["changed"][0].items() if k != "changes"}]
    assert format_changes(legacy)[1:] == ["    ~ acme/big", "    ~ acme/old"]


def test_refresh_prints_what_changed(stub: StubApi, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    stub.route("POST", "/api/v1/providers:refresh", body=RESULT)
    assert run(stub, "refresh") == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "    ~ acme/big: context 128K → 200K; input $3.00 → $2.50\n" in out
    assert "    ~ acme/old: deprecated; retires 2026-10-23\n" in out


def test_watch_prints_what_changed(
    stub: StubApi, ws_script: Callable[..., StubWs], capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    message = {"type": "event.model_catalog.changed", "seq": 2, "epoch": "e1", "timestamp": "2026-01-01T00:00:00Z",
               "payload": RESULT}
    ws = ws_script([{"type": "subscribed", "seq": 1, "epoch": "e1", "revision": 8}, message])
    assert run(stub, "watch", "--ws-url", ws.url, "--count", "1") == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "#2 catalog changed, revision 9" in out
    assert "    ~ acme/big: context 128K → 200K; input $3.00 → $2.50\n" in out
    assert "    ~ acme/old: deprecated; retires 2026-10-23\n" in out
