"""Field-level changes (docs/reference.md §10), computed by the pure core: the diff, the plan, and records stored
before the new fields existed. No moto, no clock, no network."""

from __future__ import annotations

import json
from typing import Any, get_args

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.catalog_config import OVERRIDABLE, CatalogConfig
from chalicelib.core.diff import apply_changes, diff_models, field_changes
from chalicelib.core.domain import (
    CAPABILITIES,
    CHANGE_FIELDS,
    MODALITIES,
    MODEL_FIELDS,
    ChangeField,
    FieldChange,
    Model,
    ModelRecord,
    api_model,
    current_record,
    model_record,
    models_fingerprint,
)
from chalicelib.core.manifest import Manifest, ProviderEntry
from chalicelib.core.plan import FetchOutcome, lists_to_read, plan_refresh
from chalicelib.core.state import RefreshState


def record(model_id: str, **fields: Any) -> ModelRecord:
    """A record in today's shape (every field), with ``fields`` changed."""
    return {**model_record(Model(provider_id="p", id=model_id)), **fields}


def v1_record(model_id: str, **fields: Any) -> ModelRecord:
    """A record as version 1 stored it: no status, retires_at, modalities, and no cache prices."""
    base = {"id": model_id, "display_name": None, "context_length": None, "max_output_tokens": None,
            "capabilities": [], "pricing": None}
    return {**base, **fields}


PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cache_read_per_mtok": None, "cache_write_per_mtok": None}


# --- the diff's changes ---------------------------------------------------------------------------------------
def test_one_change_per_changed_field_with_before_and_after() -> None:
    old = [record("a", context_length=128_000, pricing=PRICE), record("b", status="deprecated", retires_at="2026-06-30"),
           record("c")]
    new = [record("a", context_length=200_000, pricing={**PRICE, "input_per_mtok": 2.5}), record("b"), record("c")]
    diff = diff_models(old, new)
    assert diff.ids()["updated"] == ["a", "b"]
    assert [c.model_dump() for c in diff.changes] == [
        {"model_id": "a", "field": "context_length", "before": 128_000, "after": 200_000},
        {"model_id": "a", "field": "pricing", "before": PRICE, "after": {**PRICE, "input_per_mtok": 2.5}},
        {"model_id": "b", "field": "status", "before": "deprecated", "after": "active"},
        {"model_id": "b", "field": "retires_at", "before": "2026-06-30", "after": None},
    ]


def test_added_and_removed_models_carry_no_field_changes() -> None:
    diff = diff_models([record("gone", context_length=1)], [record("new", context_length=2)])
    assert diff.ids() == {"added": ["new"], "removed": ["gone"], "updated": []}
    assert diff.changes == ()


def test_capabilities_and_modalities_are_reported_whole() -> None:
    before = record("a", capabilities=["tools"], modalities={"input": ["text"], "output": ["text"]})
    after = record("a", capabilities=["tools", "vision"], modalities={"input": ["text", "image"], "output": ["text"]})
    assert field_changes(before, after) == [
        FieldChange(model_id="a", field="capabilities", before=["tools"], after=["tools", "vision"]),
        FieldChange(
            model_id="a",
            field="modalities",
            before={"input": ["text"], "output": ["text"]},
            after={"input": ["text", "image"], "output": ["text"]},
        ),
    ]


def test_change_fields_are_the_model_fields_but_the_id() -> None:
    assert tuple(name for name in Model.model_fields if name not in ("provider_id", "id")) == CHANGE_FIELDS
    assert set(CHANGE_FIELDS) | {"id"} == set(MODEL_FIELDS)
    assert get_args(ChangeField) == CHANGE_FIELDS  # what the OpenAPI document lists for `field`
    assert OVERRIDABLE == CHANGE_FIELDS  # and what an override may set


# --- property: applying the changes to the old model gives the new one ----------------------------------------
def _sublist(vocabulary: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    return st.sets(st.sampled_from(vocabulary)).map(lambda chosen: [v for v in vocabulary if v in chosen])


# Small domains, so two draws often agree on some fields and differ on others.
_prices = st.sampled_from([None, 0.0, 0.3, 3.0])
_pricing = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "input_per_mtok": st.sampled_from([0.0, 2.5, 3.0]),
            "output_per_mtok": st.sampled_from([10.0, 15.0]),
            "cache_read_per_mtok": _prices,
            "cache_write_per_mtok": _prices,
        }
    ),
)
_fields = st.fixed_dictionaries(
    {
        "display_name": st.sampled_from([None, "GPT-4o", "GPT 4o"]),
        "context_length": st.sampled_from([None, 8_192, 128_000, 200_000]),
        "max_output_tokens": st.sampled_from([None, 4_096, 16_384]),
        "capabilities": _sublist(CAPABILITIES),
        "pricing": _pricing,
        "status": st.sampled_from(["active", "deprecated"]),
        "retires_at": st.sampled_from([None, "2026-06-30", "2026-12-31"]),
        "modalities": st.one_of(st.none(), st.fixed_dictionaries({"input": _sublist(MODALITIES),
                                                                   "output": _sublist(MODALITIES)})),
    }
)
_records = st.builds(lambda model_id, fields: {"id": model_id, **fields}, st.sampled_from("abcdef"), _fields)
_lists = st.lists(_records, max_size=6, unique_by=lambda r: r["id"])


@given(_lists, _lists)
def test_applying_the_changes_to_the_old_model_gives_the_new_one(old: list[ModelRecord], new: list[ModelRecord]) -> None:
    diff = diff_models(old, new)
    before = {r["id"]: r for r in old}
    after = {r["id"]: r for r in new}
    # What a client receives: the changes as JSON (the event's payload), applied to the model it holds.
    wire = [FieldChange.model_validate(c) for c in json.loads(json.dumps([c.model_dump() for c in diff.changes]))]
    for model_id in diff.ids()["updated"]:
        mine = [c for c in wire if c.model_id == model_id]
        assert mine, f"{model_id} is updated but has no change"
        assert apply_changes(before[model_id], wire) == after[model_id]
        assert [c.field for c in mine] == [f for f in CHANGE_FIELDS if f in {c.field for c in mine}]  # field order
    assert {c.model_id for c in diff.changes} == set(diff.ids()["updated"])
    assert all(c.before != c.after and c.field in CHANGE_FIELDS for c in diff.changes)


def test_the_property_can_fail_negative_control() -> None:
    """A change list that misses a field does not rebuild the new model: the property above has teeth."""
    old, new = record("a", context_length=1, status="active"), record("a", context_length=2, status="deprecated")
    changes = field_changes(old, new)
    assert apply_changes(old, changes) == new
    assert apply_changes(old, changes[:1]) != new


# --- records stored by version 1 -------------------------------------------------------------------------------
def test_a_version_1_record_reads_with_the_defaults() -> None:
    old = v1_record("gpt-4o", context_length=128_000, pricing={"input_per_mtok": 3.0, "output_per_mtok": 15.0})
    assert current_record(old) == {**old, "status": "active", "retires_at": None, "modalities": None, "pricing": PRICE}
    assert current_record(old) == model_record(
        Model.model_validate({"provider_id": "p", **old})
    )  # exactly what today's adapters produce for the same answer
    today = current_record(old)
    assert current_record(today) is today  # a current record is passed through as is (no copy per read)
    assert api_model("openai", old) == {"provider_id": "openai", **today}


def test_an_unchanged_provider_is_not_updated_after_the_upgrade() -> None:
    """Version 1 stored this list (and its fingerprint); version 2 fetches the same answer. The fingerprints differ
    (the records gained keys), so the plan reads the stored list — and finds nothing to report or write."""
    stored_v1 = [v1_record("a", context_length=8_192, pricing={"input_per_mtok": 1.0, "output_per_mtok": 2.0}),
                 v1_record("b", capabilities=["tools"])]
    fetched = [current_record(r) for r in stored_v1]  # what version 2's adapter returns for the same answer
    manifest = Manifest(revision=5, epoch="ep", seq=5,
                        providers={"p": ProviderEntry("g1", 1, 2, models_fingerprint(stored_v1))})
    outcome = FetchOutcome.succeeded("p", fetched)
    catalog = CatalogConfig.model_validate({"providers": [{"id": "p", "kind": "openai",
                                                           "base_url": "https://api.example.com/v1"}]})
    assert outcome.fingerprint != manifest.providers["p"].fingerprint
    assert lists_to_read(manifest, [outcome], catalog, "all") == ["p"]
    read = [current_record(r) for r in stored_v1]  # the store reads chunks through current_record
    plan = plan_refresh(manifest=manifest, state=RefreshState(), outcomes=[outcome], stored={"p": read},
                        config=catalog, scope="all", trigger="manual", now=0.0, deployment_id="d", lease_token=1)
    assert plan.result.unchanged == ["p"] and plan.result.changed == []
    assert not plan.changes_catalog and plan.new_lists == {} and plan.result.revision == 5  # no event, no write
    # Negative control: without the defaults, the old records would all look updated.
    raw = plan_refresh(manifest=manifest, state=RefreshState(), outcomes=[outcome], stored={"p": stored_v1},
                       config=catalog, scope="all", trigger="manual", now=0.0, deployment_id="d", lease_token=1)
    assert raw.result.changed[0].updated == ["a", "b"]


def test_the_plan_puts_the_changes_on_the_provider_change() -> None:
    old = [record("m", context_length=128_000)]
    new = [record("m", context_length=200_000)]
    manifest = Manifest(revision=1, epoch="ep", seq=1, providers={"p": ProviderEntry("g", 1, 1, models_fingerprint(old))})
    catalog = CatalogConfig.model_validate({"providers": [{"id": "p", "name": "P", "kind": "openai",
                                                           "base_url": "https://api.example.com/v1"}]})
    plan = plan_refresh(manifest=manifest, state=RefreshState(), outcomes=[FetchOutcome.succeeded("p", new)],
                        stored={"p": old}, config=catalog, scope="all", trigger="manual", now=0.0,
                        deployment_id="d", lease_token=1)
    payload = plan.event(manifest)["payload"]
    assert payload["changed"] == [
        {"provider_id": "p", "provider_name": "P", "added": [], "removed": [], "updated": ["m"],
         "changes": [{"model_id": "m", "field": "context_length", "before": 128_000, "after": 200_000}]}
    ]
    assert plan.state.last_run == payload  # the REST status's last_run is the same result
