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
    chunks_to_check,
    lists_to_read,
    plan_refresh,
    select_providers,
    stored_chunks_to_read,
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
    manifest = result.next_manifest(Manifest(0, "ep", 0))
    assert (manifest.revision, manifest.seq, manifest.epoch) == (1, 1, "ep")
    entry = manifest.providers["a"]
    assert (entry.generation, entry.chunks, entry.count) == ("r00000001-t7", 1, 2)
    assert entry.fingerprint == models_fingerprint(records("m1", "m2"))
    assert [(ref.key, ref.first, ref.count) for ref in entry.parts] == [("r00000001-t7#00000", "m1", 2)]
    assert entry.retired == ()
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
    assert "gone" not in full.next_manifest(manifest).providers
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
    flipped = repair.next_manifest(manifest)
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


def test_a_sample_of_stored_chunks_rotates_over_the_whole_catalog() -> None:
    manifest = stored_manifest(a=records("m1"), b=records("x"), c=records("y"))
    manifest = Manifest(3, "ep", 3, {**manifest.providers, "b": ProviderEntry("g-b", 3, 9, "f")})
    every = [("a", "g-a#00000"), ("b", "g-b#00000"), ("b", "g-b#00001"), ("b", "g-b#00002"), ("c", "g-c#00000")]
    assert chunks_to_check(manifest, token=0, count=2) == every[:2]
    assert chunks_to_check(manifest, token=1, count=2) == every[2:4]
    seen = {key for token in range(3) for key in chunks_to_check(manifest, token, count=2)}
    assert seen == set(every)  # runs with consecutive tokens cover every chunk
    assert chunks_to_check(manifest, token=5, count=99) == every[0:] and chunks_to_check(Manifest(0, "e", 0), 1, 4) == []


# -- chunk-level plans: cost follows the change ------------------------------------------------------------------


def many(prefix: str, count: int, **fields: Any) -> list[ModelRecord]:
    return [{**records(f"{prefix}{n:05d}")[0], **fields} for n in range(count)]


def committed(result: RefreshPlan, manifest: Manifest) -> Manifest:
    """The manifest after ``result`` commits (a plan of ``plan``, whose stored lists a test hands it)."""
    return result.next_manifest(manifest)


def test_a_change_in_one_place_keeps_the_other_chunks_and_diffs_only_the_replaced_ones() -> None:
    old = many("m", 3_000)
    first = plan(config(openai("a")), Manifest(0, "ep", 0), [FetchOutcome.succeeded("a", old)])
    manifest = committed(first, Manifest(0, "ep", 0))
    stored_refs = manifest.providers["a"].parts
    assert len(stored_refs) > 5  # content-defined boundaries: about one id in 256 ends a chunk

    new = sorted([*old[100:], *many("n", 100)], key=lambda m: m["id"])  # 100 removed at the start, 100 added at the end
    outcome = FetchOutcome.succeeded("a", new)
    to_read = stored_chunks_to_read(manifest.providers["a"], outcome)
    assert 0 < len(to_read) <= 3, [ref.first for ref in to_read]  # the first chunk(s) and the last one
    stored_models = [m for m in old if any(_in(ref, stored_refs, m["id"]) for ref in to_read)]  # what the engine reads
    assert len(stored_models) == sum(ref.count for ref in to_read) < len(old) / 2
    result = plan(config(openai("a")), manifest, [outcome], stored={"a": stored_models})
    change = result.result.changed[0]
    assert change.added == [m["id"] for m in many("n", 100)] and change.removed == [m["id"] for m in old[:100]]
    write = result.writes["a"]
    assert write.kept >= len(write.refs) - 4  # only the chunks around the change are new
    assert all(ref.key.startswith("r00000002-t7#") for ref, _piece in write.writes)
    flipped = committed(result, manifest)
    entry = flipped.providers["a"]
    assert entry.count == len(new) and entry.chunks == len(write.refs)
    assert set(entry.retired) == {ref.key for ref in stored_refs} - {ref.key for ref in write.refs}


def _in(ref: Any, refs: Sequence[Any], model_id: str) -> bool:
    """Whether ``model_id`` lies in the id range of chunk ``ref`` among ``refs``."""
    index = list(refs).index(ref)
    following = refs[index + 1].first if index + 1 < len(refs) else None
    return ref.first <= model_id and (following is None or model_id < following)


def test_a_list_stored_in_one_generation_is_read_whole_and_written_whole_in_chunks() -> None:
    old = many("m", 600)
    manifest = stored_manifest(a=old)  # version 1/2 layout: one generation, no chunk refs
    outcome = FetchOutcome.succeeded("a", [*old, *many("z", 1)])
    assert stored_chunks_to_read(manifest.providers["a"], outcome) is None  # the whole list
    result = plan(config(openai("a")), manifest, [outcome], stored={"a": old})
    assert result.result.changed[0].added == ["z00000"] and result.writes["a"].kept == 0
    flipped = committed(result, manifest)
    assert flipped.providers["a"].parts is not None and flipped.providers["a"].retired == ("g-a#00000",)
    keys, sweeps = result.collectable(manifest, flipped)
    # its previous generation is not named anywhere: the chunks are listed, keeping the two newest generations
    assert keys == {} and sweeps == {"a": {"g-a", "r00000004-t7"}}


def test_garbage_is_what_the_previous_list_retired_never_what_the_new_one_references() -> None:
    manifest = Manifest(0, "ep", 0)
    lists = [many("m", 2_000), many("m", 2_000, context_length=5), many("m", 2_000, context_length=6)]
    history = []
    for token, models in enumerate(lists, start=1):
        stored = {"a": [m for ref in (manifest.providers["a"].parts if "a" in manifest.providers else ())
                        for m in lists[token - 2] if _in(ref, manifest.providers["a"].parts, m["id"])]}
        result = plan_refresh(
            manifest=manifest, state=RefreshState(), outcomes=[FetchOutcome.succeeded("a", models)], stored=stored,
            config=config(openai("a")), scope="all", trigger="manual", now=NOW, deployment_id="d", lease_token=token,
        )
        new = result.next_manifest(manifest)
        history.append((manifest, new, result))
        manifest = new
    (_, first, _), (_, second, result_2), (before_3, third, result_3) = history
    assert result_2.collectable(first, second) == ({}, {})  # the first list had nothing retired yet
    keys, sweeps = result_3.collectable(before_3, third)
    assert sweeps == {} and set(keys["a"]) == set(first.providers["a"].chunk_keys())
    live = set(third.providers["a"].chunk_keys()) | set(second.providers["a"].chunk_keys())
    assert not live & set(keys["a"])  # neither the new list nor the one readers may still hold


def test_a_provider_that_leaves_has_its_chunks_listed_and_deleted() -> None:
    manifest = stored_manifest(a=records("m1"), gone=records("g1"))
    outcomes = [FetchOutcome.succeeded("a", records("m1"))]
    result = plan(config(openai("a")), manifest, outcomes, stored={"gone": records("g1")})
    assert result.collectable(manifest, result.next_manifest(manifest)) == ({}, {"gone": set()})


def test_a_repair_writes_every_chunk_again_and_retires_the_broken_ones() -> None:
    models = many("m", 1_000)
    first = plan(config(openai("a")), Manifest(0, "ep", 0), [FetchOutcome.succeeded("a", models)])
    manifest = committed(first, Manifest(0, "ep", 0))
    repair = plan_refresh(
        manifest=manifest, state=RefreshState(), outcomes=[FetchOutcome.succeeded("a", models)], stored={},
        config=config(openai("a")), scope="all", trigger="manual", now=NOW, deployment_id="d", lease_token=8,
        broken={"a": "its stored models are incomplete (3 of 4 chunks found)"},
    )
    write = repair.writes["a"]
    assert write.kept == 0 and all(ref.key.startswith("r00000001-t8#") for ref in write.refs)
    flipped = committed(repair, manifest)
    assert set(flipped.providers["a"].retired) == set(manifest.providers["a"].chunk_keys())
