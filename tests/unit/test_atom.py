"""The Atom feed of catalog changes (``chalicelib.feeds.atom``), read back with the real ``feedparser``."""

from __future__ import annotations

from typing import Any

import feedparser
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.core.domain import ProviderChange, ProviderFailure, RefreshResult
from chalicelib.core.events import build_event_message
from chalicelib.events import fit_to_wire
from chalicelib.feeds import ATOM_CONTENT_TYPE, entry_id, entry_title, render_changes_atom

EPOCH = "0f3c9a1b2d4e5f60"
URL = "https://catalog.example/api/api/v1/changes.atom"


def event(seq: int, changed: list[ProviderChange], failed: list[ProviderFailure] | None = None) -> dict[str, Any]:
    result = RefreshResult(revision=seq + 10, changed=changed, unchanged=["quiet"], failed=failed or [])
    return build_event_message(seq, EPOCH, f"2026-12-0{seq}T10:00:00.250Z", result)


def parse(document: str) -> Any:
    parsed = feedparser.parse(document.encode("utf-8"))
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    return parsed


EVENTS = [  # newest first, as the feed lists them
    event(3, [ProviderChange(provider_id="openai", provider_name="OpenAI", added=["gpt-5", "gpt-5-mini"],
                             removed=["gpt-3.5"])]),
    event(2, [ProviderChange(provider_id="anthropic", provider_name="Anthropic", updated=["claude-opus-4"]),
              ProviderChange(provider_id="groq", provider_name="Groq", added=["llama-4"])],
          failed=[ProviderFailure(provider_id="gemini", reason="GEMINI_API_KEY is not set")]),
    event(1, [ProviderChange(provider_id="openai", provider_name="OpenAI", added=["gpt-3.5"])]),
]


def test_a_valid_atom_feed_with_stable_ids_newest_first() -> None:
    parsed = parse(render_changes_atom(EVENTS, feed_url=URL))
    assert parsed.feed.id == URL
    assert parsed.feed.title == "model-catalog: catalog changes"
    assert parsed.feed.updated == "2026-12-03T10:00:00.250Z"  # the newest event
    assert [(link.rel, link.href) for link in parsed.feed.links] == [("self", URL)]
    assert [entry.id for entry in parsed.entries] == [f"urn:model-catalog:{EPOCH}:{seq}" for seq in (3, 2, 1)]
    assert [entry.updated for entry in parsed.entries] == [e["timestamp"] for e in EVENTS]
    assert [entry.title for entry in parsed.entries] == [
        "OpenAI: 2 added, 1 removed",
        "Anthropic: 1 updated; Groq: 1 added",
        "OpenAI: 1 added",
    ]


def test_the_content_lists_the_ids_and_the_failures() -> None:
    parsed = parse(render_changes_atom(EVENTS, feed_url=URL))
    newest, middle, _ = (entry.content[0] for entry in parsed.entries)
    assert newest.type == "text/html"
    for text in ("Added (2)", "<code>gpt-5</code>", "<code>gpt-5-mini</code>", "Removed (1)", "<code>gpt-3.5</code>",
                 "Revision 13"):
        assert text in newest.value
    assert "Updated" not in newest.value  # no empty lists
    assert "<code>claude-opus-4</code>" in middle.value and "<code>llama-4</code>" in middle.value
    assert "gemini: GEMINI_API_KEY is not set" in middle.value


def test_user_data_is_escaped_everywhere() -> None:
    hostile = event(7, [ProviderChange(provider_id="evil", provider_name='Evil <b>"&amp;</b> \'AI\'',
                                       added=["<script>alert(1)</script>", "a&b", "]]>"])])
    document = render_changes_atom([hostile], feed_url=URL + "?a=1&b=<2>")
    parsed = parse(document)
    (entry,) = parsed.entries
    assert entry.title == 'Evil <b>"&amp;</b> \'AI\': 3 added'  # the title is text: shown as written
    content = entry.content[0].value
    assert "<script>" not in content and "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<code>a&amp;b</code>" in content and "<code>]]&gt;</code>" in content
    assert parsed.feed.links[0].href == URL + "?a=1&b=<2>"


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=30), model_id=st.text(min_size=1, max_size=30), reason=st.text(max_size=30))
def test_any_text_gives_a_well_formed_feed(name: str, model_id: str, reason: str) -> None:
    # Control characters and lone surrogates cannot be written in XML 1.0: they become U+FFFD, nothing breaks.
    hostile = event(1, [ProviderChange(provider_id="p", provider_name=name or "p", added=[model_id])],
                    failed=[ProviderFailure(provider_id="q", reason=reason)])
    parsed = parse(render_changes_atom([hostile], feed_url=URL))
    assert parsed.entries[0].id == f"urn:model-catalog:{EPOCH}:1"


def test_an_empty_feed_is_valid() -> None:
    parsed = parse(render_changes_atom([], feed_url=URL, updated="2026-12-01T00:00:00.000Z"))
    assert parsed.entries == [] and parsed.feed.updated == "2026-12-01T00:00:00.000Z"
    assert parse(render_changes_atom([], feed_url=URL)).feed.updated == "1970-01-01T00:00:00Z"


def test_a_huge_change_lists_a_bounded_number_of_ids() -> None:
    many = [f"model-{index:05d}" for index in range(2_500)]
    big = event(4, [ProviderChange(provider_id="registry", provider_name="Registry", added=many)])
    parsed = parse(render_changes_atom([big], feed_url=URL, max_ids=100))
    content = parsed.entries[0].content[0].value
    assert parsed.entries[0].title == "Registry: 2500 added"
    assert content.count("<code>") == 100 and "and 2,400 more" in content and "Added (2,500)" in content


def test_a_truncated_event_keeps_its_counts_in_the_title() -> None:
    many = [f"{index:040d}" for index in range(20_000)]
    truncated = fit_to_wire(event(5, [ProviderChange(provider_id="registry", provider_name="Registry", added=many)]))
    assert truncated["truncated"] is True and truncated["payload"]["changed"][0]["added"] == []
    parsed = parse(render_changes_atom([truncated], feed_url=URL))
    assert parsed.entries[0].title == "Registry: 20000 added"
    assert "too large to list in full" in parsed.entries[0].content[0].value


@pytest.mark.parametrize(
    ("payload", "title"),
    [
        ({"changed": [{"provider_id": "x", "provider_name": "", "added": ["a"]}]}, "x: 1 added"),
        ({"changed": [{"provider_id": "x", "provider_name": "X"}]}, "X: changed"),
        ({"changed": [{"provider_id": f"p{i}", "provider_name": f"P{i}", "added": ["a"]} for i in range(6)]},
         "P0: 1 added; P1: 1 added; P2: 1 added; P3: 1 added; and 2 more providers"),
        ({"changed": [], "changed_count": 7, "truncated": True}, "7 providers changed"),
        ({}, "catalog changed"),
    ],
)
def test_entry_titles(payload: dict[str, Any], title: str) -> None:
    assert entry_title(payload) == title


def test_the_same_events_give_the_same_document() -> None:
    assert render_changes_atom(EVENTS, feed_url=URL) == render_changes_atom(list(EVENTS), feed_url=URL)
    assert entry_id("e", 9) == "urn:model-catalog:e:9"
    assert ATOM_CONTENT_TYPE.startswith("application/atom+xml")


def test_negative_control_feedparser_flags_a_broken_document() -> None:
    broken = render_changes_atom(EVENTS, feed_url=URL).replace("</feed>", "")
    assert feedparser.parse(broken.encode()).bozo == 1
