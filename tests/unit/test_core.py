"""The pure core: diff, shrink guard and due-time logic (fake clock: plain integers)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.diff import ShrinkPolicy, apply_diff, diff_models, shrink_failure
from chalicelib.core.schedule import ScheduleState, check_due, next_due_ms


def model(model_id: str, context: int | None = None, caps: tuple[str, ...] = ()) -> dict:
    return {"id": model_id, "display_name": None, "context_length": context, "max_output_tokens": None,
            "capabilities": list(caps), "pricing": None}


def test_diff_reports_added_removed_updated_sorted() -> None:
    old = [model("b", 8), model("a", 4), model("c", 1)]
    new = [model("d"), model("c", 2), model("a", 4), model("e")]
    diff = diff_models(old, new)
    assert diff.ids() == {"added": ["d", "e"], "removed": ["b"], "updated": ["c"]}
    assert not diff.is_empty


def test_identical_lists_have_an_empty_diff() -> None:
    models = [model("a", 1, ("tools",)), model("b")]
    assert diff_models(models, list(reversed(models))).is_empty


def test_capability_or_pricing_change_is_an_update() -> None:
    old = [model("a", 1, ("tools",))]
    assert diff_models(old, [model("a", 1, ("tools", "vision"))]).ids()["updated"] == ["a"]
    priced = {**model("a", 1, ("tools",)), "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
    assert diff_models(old, [priced]).ids()["updated"] == ["a"]


model_ids = st.text(alphabet="abcdefgh-./", min_size=1, max_size=6)
records = st.builds(
    model,
    model_ids,
    st.one_of(st.none(), st.integers(min_value=1, max_value=2_000_000)),
    st.lists(st.sampled_from(["tools", "vision", "reasoning"]), unique=True).map(lambda caps: tuple(sorted(caps))),
)
model_lists = st.lists(records, max_size=30, unique_by=lambda m: m["id"])


@given(model_lists, model_lists)
def test_applying_the_diff_to_the_old_list_gives_the_new_one(old: list[dict], new: list[dict]) -> None:
    diff = diff_models(old, new)
    assert apply_diff(old, diff) == sorted(new, key=lambda m: m["id"])
    assert set(diff.ids()["added"]).isdisjoint(diff.ids()["removed"])
    assert diff.is_empty == (sorted(old, key=lambda m: m["id"]) == sorted(new, key=lambda m: m["id"]))


def test_empty_answer_is_never_a_wipe() -> None:
    assert "empty model list" in shrink_failure(10, 0)
    assert "empty model list" in shrink_failure(10, 0, ShrinkPolicy(allow_shrink=True))
    assert shrink_failure(0, 0) is None


def test_large_drop_is_flagged_unless_allowed() -> None:
    assert shrink_failure(10, 5) is None  # exactly 50 % is tolerated
    assert "dropped from 10 to 4" in shrink_failure(10, 4)
    assert shrink_failure(10, 4, ShrinkPolicy(allow_shrink=True)) is None
    assert shrink_failure(10, 8, ShrinkPolicy(threshold=0.1)) is not None


HOUR = 3_600_000


def test_refresh_on_start_runs_once_per_deployment() -> None:
    fresh = ScheduleState()
    assert check_due(0, 6 * HOUR, True, fresh, "d1").due
    done = ScheduleState(last_scheduled_at_ms=0, started_deployment="d1")
    assert not check_due(1000, 6 * HOUR, True, done, "d1").due
    assert check_due(1000, 6 * HOUR, True, done, "d2").due  # a new deployment refreshes on start again
    assert not check_due(1000, 6 * HOUR, False, ScheduleState(), "d1").due


def test_interval_elapses_exactly_at_the_boundary() -> None:
    state = ScheduleState(last_scheduled_at_ms=1_000, started_deployment="d")
    assert not check_due(1_000 + 6 * HOUR - 1, 6 * HOUR, True, state, "d").due
    assert check_due(1_000 + 6 * HOUR, 6 * HOUR, True, state, "d").due
    assert next_due_ms(5_000, 6 * HOUR, True, state, "d") == 1_000 + 6 * HOUR


def test_zero_interval_disables_scheduled_refresh() -> None:
    state = ScheduleState(last_scheduled_at_ms=0, started_deployment="d")
    assert not check_due(10**12, 0, True, state, "d").due
    assert next_due_ms(10**12, 0, True, state, "d") is None
    assert next_due_ms(7, 0, True, ScheduleState(), "d") == 7  # the start refresh is still due


def test_interval_without_history_counts_from_the_first_tick() -> None:
    assert not check_due(0, HOUR, False, ScheduleState(), "d").due
    anchored = ScheduleState(interval_anchor_ms=0)
    assert not check_due(HOUR - 1, HOUR, False, anchored, "d").due
    assert check_due(HOUR, HOUR, False, anchored, "d").due
    assert next_due_ms(10, HOUR, False, ScheduleState(), "d") == 10 + HOUR
    assert next_due_ms(HOUR * 5, HOUR, False, anchored, "d") == HOUR * 5  # overdue → now
