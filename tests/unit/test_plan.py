"""The refresh rules, decided by the pure plan (chalicelib.core.plan): no moto, no clock, no network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from chalicelib.catalog_config import CatalogConfig
from chalicelib.core.domain import ModelRecord, models_fingerprint
from chalicelib.core.manifest import Manifest, ProviderEntry
from chalicelib.core.plan import (
    FetchOutcome,
    RefreshPlan,
    lists_to_read,
    lists_to_verify,
    plan_refresh,
    select_providers,
)
from chalicelib.core.schedule import ScheduleState
from chalicelib.core.state import ProviderStatus, RefreshState
from chalicelib.errors import ProviderNotFound

NOW = 1_700_000_000.0
STAMP = "2023-11-14T22:13:20.000Z"


def config(*providers: dict[str, Any], **options: Any) -> CatalogConfig:
    return CatalogConfig.model_validate({"model_catalog": options, "providers": list(providers)})


def openai(provider_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": provider_id, "kind": "openai", "base_url": "https://api.example.com/v1", **extra}


def records(*ids: str, context: int | None = None) -> list[ModelRecord]:
    return [
        {"id": i, "display_name": None, "context_length": context, "max_output_tokens": None,
         "capabilities": [], "pricing": None}
        for i in sorted(ids)
    ]


def stored_manifest(**lists: Sequence[ModelRecord]) -> Manifest:
    entries = {pid: ProviderEntry(f"g-{pid}", 1, len(models), models_fingerprint(models)) for pid, models in lists.items()}
    return Manifest(revision=3, epoch="ep", seq=3, providers=entries)


def plan(
    catalog: CatalogConfig,
    manifest: Manifest,
    outcomes: list[FetchOutcome],
    stored: dict[str, Sequence[ModelRecord]] | None = None,
    scope: str = "all",
    state: RefreshState | None = None,
    trigger: str = "manual",
) -> RefreshPlan:
    return plan_refresh(
        manifest=manifest,
        state=state or RefreshState(),
        outcomes=outcomes,
        stored=stored or {},
        config=catalog,
        scope=scope,  # type: ignore[arg-type]
        trigger=trigger,  # type: ignore[arg-type]
        now=NOW,
        deployment_id="deploy-1",
        lease_token=7,
    )


def test_a_first_answer_adds_everything_in_one_new_generation() -> None:
    result = plan(config(openai("a")), Manifest(0, "ep", 0), [FetchOutcome.succeeded("a", records("m2", "m1"))])
    assert result.changes_catalog
    assert result.result.revision == 1
    assert [c.model_dump() for c in result.result.changed] == [
        {"provider_id": "a", "provider_name": "a", "added": ["m1", "m2"], "removed": [], "updated": [], "changes": []}
    ]
    assert result.generation == "r00000001-t7"
    assert list(result.new_lists) == ["a"]
    manifest = result.next_manifest(Manifest(0, "ep", 0), {"a": 1})
    assert (manifest.revision, manifest.seq, manifest.epoch) == (1, 1, "ep")
    assert manifest.providers["a"] == ProviderEntry("r00000001-t7", 1, 2, models_fingerprint(records("m1", "m2")))
    event = result.event(Manifest(0, "ep", 0))
    assert (event["seq"], event["epoch"], event["timestamp"]) == (1, "ep", STAMP)
    assert event["payload"] == result.result.model_dump(mode="json")


def test_a_failed_provider_keeps_its_models_and_records_the_reason() -> None:
    previous = RefreshState(providers={"a": ProviderStatus(last_refreshed_at="earlier")})
    result = plan(config(openai("a")), stored_manifest(a=records("m1")), [FetchOutcome.failed("a", "HTTP 401")],
                  state=previous)
    assert not result.changes_catalog and result.new_lists == {}
    assert [f.model_dump() for f in result.result.failed] == [{"provider_id": "a", "reason": "HTTP 401"}]
    assert result.state.status("a") == ProviderStatus(last_refreshed_at="earlier", last_error="HTTP 401")
    assert result.result.revision == 3


def test_an_empty_answer_is_a_failure_not_a_wipe() -> None:
    old = records("m1", "m2")
    outcome = FetchOutcome.succeeded("a", [])
    manifest = stored_manifest(a=old)
    assert lists_to_read(manifest, [outcome], config(openai("a")), "all") == ["a"]
    result = plan(config(openai("a")), manifest, [outcome], stored={"a": old})
    assert not result.changes_catalog
    assert "empty model list" in result.result.failed[0].reason


@pytest.mark.parametrize(
    ("allow_shrink", "refused"), [(False, True), (True, False)]
)
def test_the_shrink_guard_refuses_a_large_drop_unless_allowed(allow_shrink: bool, refused: bool) -> None:
    old = records(*[f"m{i}" for i in range(10)])
    catalog = config(openai("a", allow_shrink=allow_shrink), shrink_threshold=0.5)
    result = plan(catalog, stored_manifest(a=old), [FetchOutcome.succeeded("a", records("m0", "m1"))], stored={"a": old})
    assert bool(result.result.failed) is refused
    assert result.changes_catalog is not refused
    if refused:
        assert "dropped from 10 to 2" in result.result.failed[0].reason
    else:
        assert result.result.changed[0].removed == [f"m{i}" for i in range(2, 10)]


def test_a_drop_within_the_threshold_is_a_change() -> None:
    old = records("m1", "m2", "m3", "m4")
    result = plan(config(openai("a")), stored_manifest(a=old), [FetchOutcome.succeeded("a", records("m1", "m2", "m3"))],
                  stored={"a": old})
    assert result.result.changed[0].removed == ["m4"]


def test_a_provider_removed_from_the_config_leaves_at_a_full_refresh_only() -> None:
    manifest = stored_manifest(a=records("m1"), gone=records("g1", "g2"))
    outcomes = [FetchOutcome.succeeded("a", records("m1"))]
    catalog = config(openai("a"))
    assert lists_to_read(manifest, outcomes, catalog, "provider") == []
    one = plan(catalog, manifest, outcomes, scope="provider")
    assert not one.changes_catalog and one.removed == ()

    assert lists_to_read(manifest, outcomes, catalog, "all") == ["gone"]
    state = RefreshState(providers={"gone": ProviderStatus(last_error="x"), "a": ProviderStatus()})
    full = plan(catalog, manifest, outcomes, stored={"gone": records("g1", "g2")}, state=state)
    assert [c.model_dump() for c in full.result.changed] == [
        {"provider_id": "gone", "provider_name": "gone", "added": [], "removed": ["g1", "g2"], "updated": [],
         "changes": []}
    ]
    assert full.removed == ("gone",) and full.new_lists == {}
    assert "gone" not in full.next_manifest(manifest, {}).providers
    assert "gone" not in full.state.providers  # its status leaves with it


def test_an_unchanged_answer_costs_no_read_and_no_write() -> None:
    models = records("m1", "m2")
    manifest = stored_manifest(a=models)
    outcomes = [FetchOutcome.succeeded("a", records("m2", "m1"))]
    assert lists_to_read(manifest, outcomes, config(openai("a")), "all") == []  # judged by fingerprint alone
    result = plan(config(openai("a")), manifest, outcomes)
    assert not result.changes_catalog and result.generation is None and result.new_lists == {}
    assert result.result.unchanged == ["a"] and result.result.revision == 3
    assert result.state.status("a") == ProviderStatus(last_refreshed_at=STAMP, last_error=None)


def test_a_metadata_change_is_an_update() -> None:
    old = records("m1", context=1000)
    result = plan(config(openai("a")), stored_manifest(a=old), [FetchOutcome.succeeded("a", records("m1", context=2000))],
                  stored={"a": old})
    assert result.result.changed[0].updated == ["m1"]


def test_every_covered_provider_is_in_exactly_one_list() -> None:
    catalog = config(openai("changed"), openai("same"), openai("broken"), openai("shrunk"))
    same, shrunk = records("s1"), records("x1", "x2", "x3", "x4")
    manifest = stored_manifest(same=same, shrunk=shrunk)
    outcomes = [
        FetchOutcome.succeeded("changed", records("c1")),
        FetchOutcome.succeeded("same", same),
        FetchOutcome.failed("broken", "timeout"),
        FetchOutcome.succeeded("shrunk", records("x1")),
    ]
    result = plan(catalog, manifest, outcomes, stored={"shrunk": shrunk}).result
    lists = [c.provider_id for c in result.changed] + result.unchanged + [f.provider_id for f in result.failed]
    assert sorted(lists) == ["broken", "changed", "same", "shrunk"]
    assert [f.provider_id for f in result.failed] == ["broken", "shrunk"]


def test_a_scheduled_run_records_the_schedule_bookkeeping() -> None:
    manual = plan(config(openai("a")), Manifest(0, "ep", 0), [FetchOutcome.failed("a", "x")])
    assert manual.state.schedule == ScheduleState()
    scheduled = plan(config(openai("a")), Manifest(0, "ep", 0), [FetchOutcome.failed("a", "x")], trigger="scheduled")
    assert scheduled.state.schedule == ScheduleState(last_scheduled_at_ms=int(NOW * 1000), started_deployment="deploy-1")
    assert scheduled.state.last_run == scheduled.result.model_dump(mode="json")


def test_scopes_select_their_providers() -> None:
    catalog = config(openai("a"), {"id": "o", "kind": "managed_oauth", "base_url": "https://x.example/v1",
                                   "token_url": "https://x.example/token", "client_id": "c", "refresh_token_env": "RT"})
    assert [p.id for p in select_providers(catalog, "all")] == ["a", "o"]
    assert [p.id for p in select_providers(catalog, "oauth")] == ["o"]
    assert [p.id for p in select_providers(catalog, "provider", "a")] == ["a"]
    with pytest.raises(ProviderNotFound):
        select_providers(catalog, "provider", "nope")


# -- broken stored lists (missing or unreadable chunks) -------------------------------------------------------


def test_an_unchanged_provider_whose_stored_list_is_broken_is_written_again_without_an_event() -> None:
    stored = records("m1", "m2")
    manifest = stored_manifest(a=stored, b=records("x"))
    outcomes = [FetchOutcome.succeeded("a", stored), FetchOutcome.succeeded("b", records("x"))]
    healthy = plan(config(openai("a"), openai("b")), manifest, outcomes)
    assert not healthy.writes_catalog and healthy.generation is None  # the negative control: nothing to write

    repair = plan_refresh(
        manifest=manifest, state=RefreshState(), outcomes=outcomes, stored={}, config=config(openai("a"), openai("b")),
        scope="all", trigger="manual", now=NOW, deployment_id="d", lease_token=7,
        broken={"a": "its stored models are incomplete (0 of 1 chunks found)"},
    )
    assert repair.writes_catalog and not repair.changes_catalog
    assert repair.repaired == ("a",) and list(repair.new_lists) == ["a"]
    assert repair.result.unchanged == ["a", "b"] and repair.result.changed == []
    assert repair.result.revision == 3 and repair.generation == "r00000003-t7"
    flipped = repair.next_manifest(manifest, {"a": 1})
    assert (flipped.revision, flipped.epoch, flipped.seq) == (3, "ep", 3)  # same content: no revision, no event seq
    assert flipped.providers["a"].generation == "r00000003-t7" and flipped.providers["b"] == manifest.providers["b"]
    assert flipped.providers["a"].fingerprint == manifest.providers["a"].fingerprint


def test_a_changed_provider_whose_stored_list_is_broken_is_diffed_against_nothing() -> None:
    manifest = stored_manifest(a=records("m1", "m2", "m3", "m4"))
    shrunk = [FetchOutcome.succeeded("a", records("m1"))]
    broken = {"a": "chunk MODELS#a/g#00000 of its stored models cannot be decoded (error)"}
    refused = plan_refresh(
        manifest=manifest, state=RefreshState(), outcomes=shrunk, stored={}, config=config(openai("a")),
        scope="all", trigger="manual", now=NOW, deployment_id="d", lease_token=7, broken=broken,
    )
    assert "dropped from 4 to 1" in refused.result.failed[0].reason  # the shrink guard still knows the count
    grown = [FetchOutcome.succeeded("a", records("m1", "m2", "m3", "m5"))]
    decided = plan_refresh(
        manifest=manifest, state=RefreshState(), outcomes=grown, stored={}, config=config(openai("a")),
        scope="all", trigger="manual", now=NOW, deployment_id="d", lease_token=7, broken=broken,
    )
    assert decided.result.changed[0].added == ["m1", "m2", "m3", "m5"] and decided.changes_catalog


def test_lists_to_verify_are_the_stored_lists_nobody_reads() -> None:
    manifest = stored_manifest(a=records("m1"), b=records("x"), c=records("y"))
    outcomes = [
        FetchOutcome.succeeded("a", records("m1")),  # unchanged: judged by fingerprint, so checked
        FetchOutcome.succeeded("b", records("x", "z")),  # changed: read for the diff
        FetchOutcome.failed("c", "down"),  # failed: its list is kept as is
        FetchOutcome.succeeded("d", records("new")),  # new: nothing stored
    ]
    read = lists_to_read(manifest, outcomes, config(openai("a"), openai("b"), openai("c"), openai("d")), "all")
    assert read == ["b"]
    assert lists_to_verify(manifest, outcomes, read) == ["a"]
