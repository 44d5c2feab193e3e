"""Filters and keyset pages of GET /api/v1/models (docs/reference.md §8): the pure predicate and pager
(``chalicelib.core.query``) and the query-string rules (``chalicelib.entrypoints.query_params``). No DynamoDB."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.core.domain import CAPABILITIES, api_model
from chalicelib.core.query import ModelQuery, decode_cursor, encode_cursor, select_models
from chalicelib.entrypoints.query_params import changes_query, model_query
from chalicelib.errors import InvalidParameter


def record(model_id: str, *, name: str | None = None, context: int | None = None, caps: tuple[str, ...] = (),
           status: str | None = None) -> dict[str, Any]:
    body = {"id": model_id, "display_name": name, "context_length": context, "max_output_tokens": None,
            "capabilities": sorted(caps), "pricing": None}
    if status is not None:
        body["status"] = status
    return body


CATALOG = {
    "anthropic": [
        record("claude-haiku", name="Claude Haiku", context=200_000, caps=("tools", "vision")),
        record("claude-old", name="Claude 2", context=100_000, caps=("tools",), status="deprecated"),
    ],
    "openai": [
        record("gpt-4o", name="GPT-4o", context=128_000, caps=("tools", "vision")),
        record("gpt-5", name=None, context=None, caps=("reasoning", "tools")),
        record("text-embedding-3", name="Text Embedding", context=8_191, caps=("embedding",), status="active"),
    ],
}


def providers(catalog: dict[str, list[dict[str, Any]]], loaded: list[str] | None = None):
    for provider_id in sorted(catalog):
        def load(pid: str = provider_id) -> list[dict[str, Any]]:
            if loaded is not None:
                loaded.append(pid)
            return catalog[pid]

        yield provider_id, load


def ids(query: ModelQuery, catalog: dict[str, list[dict[str, Any]]] = CATALOG) -> list[str]:
    return [f"{m['provider_id']}/{m['id']}" for m in select_models(providers(catalog), query).models]


# --- the predicate ----------------------------------------------------------------------------------------


def test_no_filter_lists_everything_sorted_by_provider_then_id() -> None:
    assert ids(ModelQuery()) == ["anthropic/claude-haiku", "anthropic/claude-old", "openai/gpt-4o", "openai/gpt-5",
                                 "openai/text-embedding-3"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (ModelQuery(provider_id="openai"), ["openai/gpt-4o", "openai/gpt-5", "openai/text-embedding-3"]),
        (ModelQuery(capabilities=frozenset({"tools"})),
         ["anthropic/claude-haiku", "anthropic/claude-old", "openai/gpt-4o", "openai/gpt-5"]),
        (ModelQuery(capabilities=frozenset({"tools", "vision"})), ["anthropic/claude-haiku", "openai/gpt-4o"]),
        (ModelQuery(capabilities=frozenset({"audio"})), []),
        # An unknown context length is not "at least" anything, not even 0.
        (ModelQuery(min_context=128_000), ["anthropic/claude-haiku", "openai/gpt-4o"]),
        (ModelQuery(min_context=0), ["anthropic/claude-haiku", "anthropic/claude-old", "openai/gpt-4o",
                                     "openai/text-embedding-3"]),
        # q: case-insensitive, id or display name.
        (ModelQuery(text="claude"), ["anthropic/claude-haiku", "anthropic/claude-old"]),
        (ModelQuery(text="haiku"), ["anthropic/claude-haiku"]),
        (ModelQuery(text="embedding"), ["openai/text-embedding-3"]),
        (ModelQuery(text="gpt-4o"), ["openai/gpt-4o"]),
        (ModelQuery(text="claude 2"), ["anthropic/claude-old"]),  # only in the display name
        # A record without a status (stored before the field existed) is active.
        (ModelQuery(status="deprecated"), ["anthropic/claude-old"]),
        (ModelQuery(status="active"), ["anthropic/claude-haiku", "openai/gpt-4o", "openai/gpt-5",
                                       "openai/text-embedding-3"]),
        (ModelQuery(provider_id="openai", capabilities=frozenset({"tools"}), min_context=1, text="gpt"),
         ["openai/gpt-4o"]),
        (ModelQuery(provider_id="nobody"), []),
    ],
)
def test_every_filter_must_hold(query: ModelQuery, expected: list[str]) -> None:
    assert ids(query) == expected


def test_q_is_matched_casefolded() -> None:
    catalog = {"p": [record("STRASSE-1", name="Große Straße"), record("other")]}
    assert ids(model_query({"q": "straße"}), catalog) == ["p/STRASSE-1"]
    assert ids(model_query({"q": "GROSSE"}), catalog) == ["p/STRASSE-1"]


def test_the_models_are_the_api_shape() -> None:
    (model,) = select_models(providers(CATALOG), ModelQuery(text="haiku")).models
    assert model == api_model("anthropic", CATALOG["anthropic"][0])


# --- pages ------------------------------------------------------------------------------------------------


def test_pages_follow_next_cursor_and_the_last_page_says_none() -> None:
    first = select_models(providers(CATALOG), ModelQuery(limit=2))
    assert [m["id"] for m in first.models] == ["claude-haiku", "claude-old"]
    assert decode_cursor(first.next_cursor) == ("anthropic", "claude-old")
    second = select_models(providers(CATALOG), ModelQuery(limit=2, after=decode_cursor(first.next_cursor)))
    assert [m["id"] for m in second.models] == ["gpt-4o", "gpt-5"]
    third = select_models(providers(CATALOG), ModelQuery(limit=2, after=decode_cursor(second.next_cursor)))
    assert [m["id"] for m in third.models] == ["text-embedding-3"] and third.next_cursor is None


def test_a_full_page_with_nothing_after_it_is_the_last_page() -> None:
    page = select_models(providers(CATALOG), ModelQuery(limit=2, capabilities=frozenset({"vision"})))
    assert len(page.models) == 2 and page.next_cursor is None


def test_a_page_reads_only_the_providers_it_reaches() -> None:
    loaded: list[str] = []
    page = select_models(providers(CATALOG, loaded), ModelQuery(limit=1))
    assert [m["id"] for m in page.models] == ["claude-haiku"] and loaded == ["anthropic"]
    loaded.clear()
    select_models(providers(CATALOG, loaded), ModelQuery(limit=1, after=("openai", "gpt-4o")))
    assert loaded == ["openai"]  # providers before the cursor are skipped unread
    loaded.clear()
    select_models(providers(CATALOG, loaded), ModelQuery(provider_id="openai"))
    assert loaded == ["openai"]


def test_a_cursor_stays_valid_when_its_model_is_gone() -> None:
    catalog = {"p": [record("a"), record("c"), record("d")]}
    page = select_models(providers(catalog), ModelQuery(limit=5, after=("p", "b")))
    assert [m["id"] for m in page.models] == ["c", "d"]


@pytest.mark.parametrize("cursor", ["", "%%", "bm90IGpzb24", encode_cursor("a", "b")[:-2] + "!!", "WzFd", "eyJhIjoxfQ"])
def test_a_cursor_this_api_did_not_return_is_an_invalid_parameter(cursor: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        decode_cursor(cursor)
    assert refused.value.code == "invalid_parameter" and refused.value.status == 400
    assert "cursor" in refused.value.message


def test_cursors_round_trip() -> None:
    assert decode_cursor(encode_cursor("open.ai", "gpt/4o:ü")) == ("open.ai", "gpt/4o:ü")


model_ids = st.text(alphabet="abcdeXYZ-/é", min_size=1, max_size=6)
records = st.builds(
    lambda model_id, name, context, caps, status: record(model_id, name=name, context=context, caps=caps,
                                                         status=status),
    model_ids,
    st.none() | st.text(alphabet="abAB é", max_size=5),
    st.none() | st.integers(0, 10),
    st.lists(st.sampled_from(CAPABILITIES[:3]), unique=True).map(tuple),
    st.sampled_from([None, "active", "deprecated"]),
)
catalogs = st.dictionaries(
    st.text(alphabet="pqr.-", min_size=1, max_size=3),
    st.lists(records, max_size=8, unique_by=lambda r: r["id"]).map(lambda rs: sorted(rs, key=lambda r: r["id"])),
    max_size=4,
)
queries = st.builds(
    ModelQuery,
    provider_id=st.none() | st.text(alphabet="pqr.-", min_size=1, max_size=3),
    capabilities=st.frozensets(st.sampled_from(CAPABILITIES[:3]), max_size=2),
    min_context=st.none() | st.integers(0, 10),
    text=st.none() | st.text(alphabet="abé", min_size=1, max_size=2),
    status=st.sampled_from([None, "active", "deprecated"]),
)


@settings(max_examples=300, deadline=None)
@given(catalog=catalogs, query=queries, limit=st.integers(1, 7))
def test_a_paged_walk_equals_the_unpaged_list(catalog, query, limit) -> None:
    unpaged = select_models(providers(catalog), query)
    assert unpaged.next_cursor is None
    walked: list[dict[str, Any]] = []
    after = None
    for _ in range(len(unpaged.models) + 1):
        page = select_models(providers(catalog), ModelQuery(**{**query.__dict__, "limit": limit, "after": after}))
        assert len(page.models) <= limit
        walked += page.models
        if page.next_cursor is None:
            break
        assert len(page.models) == limit  # only a full page can have a next one
        after = decode_cursor(page.next_cursor)
    assert walked == unpaged.models
    # ... and the unpaged list is exactly the models the predicate accepts, in (provider, id) order.
    expected = [api_model(pid, r) for pid in sorted(catalog) for r in catalog[pid] if query.matches(pid, r)]
    assert unpaged.models == expected


# --- the query string -------------------------------------------------------------------------------------


class MultiDict(dict):
    """Chalice's query_params: one entry per name, every value through getlist."""

    def getlist(self, name: str) -> list[str]:
        return self[name]


def test_model_query_reads_every_parameter() -> None:
    query = model_query(MultiDict({
        "provider_id": ["openai"], "capability": ["vision", "tools"], "min_context": ["128000"], "q": ["GPT-4"],
        "status": ["active"], "limit": ["50"], "cursor": [encode_cursor("openai", "gpt-4")],
    }))
    assert query == ModelQuery(provider_id="openai", capabilities=frozenset({"tools", "vision"}), min_context=128_000,
                               text="gpt-4", status="active", limit=50, after=("openai", "gpt-4"))


def test_empty_values_count_as_absent() -> None:
    assert model_query(MultiDict({"limit": [""], "cursor": [""], "q": [""], "capability": ["", "tools"]})) == \
        ModelQuery(capabilities=frozenset({"tools"}))
    assert model_query(None) == ModelQuery()


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"capabilty": ["tools"]}, "capabilty"),  # a typo must not silently widen the answer
        ({"limit": ["0"]}, "limit"),
        ({"limit": ["5001"]}, "limit"),
        ({"limit": ["ten"]}, "limit"),
        ({"limit": ["-1"]}, "limit"),
        ({"limit": ["+5"]}, "limit"),
        ({"limit": ["1e3"]}, "limit"),
        ({"limit": ["٥"]}, "limit"),  # a digit, but not an ASCII one
        ({"limit": ["5", "6"]}, "limit"),
        ({"provider_id": ["a", "b"]}, "provider_id"),
        ({"capability": ["tools", "telepathy"]}, "capability"),
        ({"capability": ["Tools"]}, "capability"),
        ({"min_context": ["-5"]}, "min_context"),
        ({"min_context": ["1.5"]}, "min_context"),
        ({"min_context": ["9" * 40]}, "min_context"),
        ({"status": ["retired"]}, "status"),
        ({"q": ["x" * 201]}, "q"),
        ({"cursor": ["garbage"]}, "cursor"),
    ],
)
def test_bad_model_parameters_are_invalid_parameter(params: dict[str, list[str]], name: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        model_query(MultiDict(params))
    assert refused.value.code == "invalid_parameter" and refused.value.name == name
    assert refused.value.message.startswith(f"query parameter {name!r}: ")


def test_changes_query() -> None:
    assert changes_query(None, 100, 500) == (None, None, 100)
    assert changes_query(MultiDict({"since": ["0"], "epoch": ["e1"], "limit": ["500"]}), 100, 500) == (0, "e1", 500)
    assert changes_query(MultiDict({"epoch": ["e1"]}), 100, 500) == (None, "e1", 100)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"since": ["3"]}, "epoch"),  # a seq means nothing without its epoch
        ({"since": ["-1"], "epoch": ["e"]}, "since"),
        ({"since": ["x"], "epoch": ["e"]}, "since"),
        ({"limit": ["0"]}, "limit"),
        ({"limit": ["501"]}, "limit"),
        ({"epoch": ["a", "b"]}, "epoch"),
        ({"cursor": ["x"]}, "cursor"),
    ],
)
def test_bad_changes_parameters_are_invalid_parameter(params: dict[str, list[str]], name: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        changes_query(MultiDict(params), 100, 500)
    assert refused.value.name == name
