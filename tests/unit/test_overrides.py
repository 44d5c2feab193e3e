"""``[[overrides]]`` (docs/reference.md §10): validated at load (file, key, problem), applied by the pure core."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chalicelib.catalog_config import load_config
from chalicelib.core.domain import Model, model_record
from chalicelib.core.overrides import Override, apply_overrides
from chalicelib.errors import ConfigError

PROVIDERS = """
[[providers]]
id = "openai"
kind = "openai"

[[providers]]
id = "or"
kind = "openrouter"
"""


def load(tmp_path: Path, overrides: str):
    path = tmp_path / "catalog.toml"
    path.write_text(textwrap.dedent(PROVIDERS) + textwrap.dedent(overrides))
    return load_config(path, {})


def record(model_id: str, **fields):
    return {**model_record(Model(provider_id="p", id=model_id)), **fields}


PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cache_read_per_mtok": 0.3, "cache_write_per_mtok": None}


# --- the config -----------------------------------------------------------------------------------------------
def test_every_overridable_field_in_both_spellings(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [[overrides]]
        provider_id = "openai"
        model = "gpt-4-*"
        status = "deprecated"
        retires_at = "2026-12-31"

        [[overrides]]
        providerId = "openai"
        model = "gpt-4o"
        displayName = "GPT-4o (ours)"
        contextLength = 128000
        max_output_tokens = 16384
        capabilities = ["vision", "tools", "vision"]
        pricing = { input_per_mtok = 2, outputPerMtok = 10.5, cache_read_per_mtok = 1.25 }
        modalities = { input = ["image", "text"], output = ["text"] }
        retires_at = 2027-01-31
        """,
    )
    first, second = config.overrides_for("openai")
    assert first == Override(model="gpt-4-*", values={"status": "deprecated", "retires_at": "2026-12-31"})
    assert second.values == {
        "display_name": "GPT-4o (ours)",
        "context_length": 128000,
        "max_output_tokens": 16384,
        "capabilities": ["tools", "vision"],  # record shape: sorted, unique
        "pricing": {"input_per_mtok": 2.0, "output_per_mtok": 10.5, "cache_read_per_mtok": 1.25},
        "retires_at": "2027-01-31",  # a TOML date works as well as a string
        "modalities": {"input": ["text", "image"], "output": ["text"]},  # vocabulary order
    }
    assert config.overrides_for("or") == ()


OVERRIDE = '[[overrides]]\nprovider_id = "openai"\nmodel = "gpt-4o"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (OVERRIDE + 'colour = "red"\n', "overrides[0].colour: unknown key"),
        (OVERRIDE + 'input_price = 3\n', "overrides[0].input_price: unknown key"),
        (OVERRIDE.replace('"openai"', '"opnai"') + 'status = "deprecated"\n',
         "overrides[0].provider_id: unknown provider 'opnai' (the config's providers: 'openai', 'or')"),
        (OVERRIDE, "overrides[0]: Value error, names no field to override"),
        ('[[overrides]]\nprovider_id = "openai"\nstatus = "deprecated"\n', "overrides[0].model: Field required"),
        (OVERRIDE + 'status = "retired"\n', "overrides[0].status: Input should be 'active' or 'deprecated'"),
        (OVERRIDE + 'retires_at = "31/12/2026"\n', "overrides[0].retires_at: Value error, expected a date like 2026-12-31"),
        (OVERRIDE + "retires_at = 2026-12-31T10:00:00Z\n", "not a date-time"),
        (OVERRIDE + "context_length = 0\n", "overrides[0].context_length: Input should be greater than 0"),
        (OVERRIDE + 'context_length = "128k"\n', "overrides[0].context_length: Input should be a valid integer"),
        (OVERRIDE + 'capabilities = ["telepathy"]\n', "overrides[0].capabilities[0]: Input should be 'audio'"),
        (OVERRIDE + "pricing = { input_per_mtok = 2 }\n", "overrides[0].pricing.output_per_mtok: Field required"),
        (OVERRIDE + "pricing = { input_per_mtok = -2, output_per_mtok = 1 }\n",
         "overrides[0].pricing.input_per_mtok: Input should be greater than or equal to 0"),
        (OVERRIDE + "pricing = { input_per_mtok = 2, output_per_mtok = 1, surge = 3 }\n",
         "overrides[0].pricing.surge: unknown key"),
        (OVERRIDE + 'modalities = { input = ["smell"], output = ["text"] }\n',
         "overrides[0].modalities.input[0]: Input should be 'text'"),
        (OVERRIDE + 'modalities = { input = ["text"] }\n', "overrides[0].modalities.output: Field required"),
        (OVERRIDE + 'status = "deprecated"\n' + OVERRIDE + 'display_name = ""\n',
         "overrides[1].display_name: String should have at least 1 character"),
    ],
)
def test_a_bad_override_names_file_key_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert expected in str(caught.value)
    assert str(tmp_path / "catalog.toml") in str(caught.value)


# --- applying them --------------------------------------------------------------------------------------------
def test_an_exact_id_matches_only_that_model() -> None:
    records = [record("gpt-4o"), record("gpt-4o-mini")]
    [exact, other] = apply_overrides(records, [Override("gpt-4o", {"context_length": 200_000})])
    assert exact == {**records[0], "context_length": 200_000}
    assert other is records[1]  # untouched, not copied


def test_a_glob_matches_every_model_it_names_and_is_case_sensitive() -> None:
    records = [record(i) for i in ("GPT-4-turbo", "gpt-4-0613", "gpt-4-turbo", "gpt-4o", "o1/gpt-4-x")]
    done = apply_overrides(records, [Override("gpt-4-*", {"status": "deprecated", "retires_at": "2026-12-31"})])
    assert [r["id"] for r in done if r["status"] == "deprecated"] == ["gpt-4-0613", "gpt-4-turbo"]
    assert {r["retires_at"] for r in done if r["status"] == "active"} == {None}
    assert [r["id"] for r in apply_overrides(records, [Override("*/gpt-4-?", {"status": "deprecated"})])
            if r["status"] == "deprecated"] == ["o1/gpt-4-x"]


def test_an_id_with_glob_characters_matches_itself_exactly() -> None:
    [done] = apply_overrides([record("model[beta]")], [Override("model[beta]", {"display_name": "Beta"})])
    assert done["display_name"] == "Beta"  # as a glob, [beta] would be one character out of b, e, t, a


def test_pricing_is_merged_over_the_providers_and_other_tables_replace() -> None:
    provider = record("m", pricing=PRICE, modalities={"input": ["text", "image"], "output": ["text"]})
    [done] = apply_overrides(
        [provider],
        [Override("m", {"pricing": {"input_per_mtok": 2.5, "output_per_mtok": 10.0},
                        "modalities": {"input": ["text"], "output": ["text"]}})],
    )
    assert done["pricing"] == {**PRICE, "input_per_mtok": 2.5, "output_per_mtok": 10.0}  # the cache read price stays
    assert done["modalities"] == {"input": ["text"], "output": ["text"]}
    [unpriced] = apply_overrides([record("m")], [Override("m", {"pricing": {"input_per_mtok": 1.0,
                                                                             "output_per_mtok": 2.0}})])
    assert unpriced["pricing"] == {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "cache_read_per_mtok": None,
                                   "cache_write_per_mtok": None}  # every price key, as in any record
    assert Model(provider_id="p", **unpriced) is not None  # still a valid Model


def test_later_overrides_win_for_the_same_field() -> None:
    overrides = [Override("*", {"display_name": "all", "status": "deprecated"}), Override("a", {"display_name": "A"})]
    [a, b] = apply_overrides([record("a"), record("b")], overrides)
    assert (a["display_name"], a["status"]) == ("A", "deprecated")
    assert (b["display_name"], b["status"]) == ("all", "deprecated")


def test_no_overrides_returns_the_same_list() -> None:
    records = [record("a")]
    assert apply_overrides(records, ()) is records
