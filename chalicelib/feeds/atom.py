"""The catalog's changes as an Atom 1.0 feed (RFC 4287; docs/reference.md §8, ``GET /api/v1/changes.atom``).

One entry per event, in the order given (newest first): ``id`` ``urn:model-catalog:<epoch>:<seq>`` (stable: an
``(epoch, seq)`` never names two contents), ``updated`` the event's timestamp, a title naming the changed providers
("OpenAI: 2 added, 1 removed") and HTML content listing the added / removed / updated model ids (at most
``max_ids`` per list, so a huge change cannot blow up the document) and the providers that failed.

Everything that comes from providers or the config (names, ids, reasons) is user data: characters XML 1.0 cannot
carry become U+FFFD, and ElementTree escapes the rest; inside the HTML content it is escaped once more as HTML.
Pure: no I/O; the same events give the same bytes.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ATOM_NS = "http://www.w3.org/2005/Atom"
ATOM_CONTENT_TYPE = "application/atom+xml; charset=utf-8"
DEFAULT_TITLE = "model-catalog: catalog changes"
# An empty feed still needs an `updated`; without one from the caller, the start of time keeps it deterministic.
EPOCH_START = "1970-01-01T00:00:00Z"
MAX_IDS = 100
TITLE_PROVIDERS = 4
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_LISTS = (("added", "Added"), ("removed", "Removed"), ("updated", "Updated"))


def render_changes_atom(
    events: Iterable[Mapping[str, Any]],
    *,
    feed_url: str,
    feed_id: str | None = None,
    title: str = DEFAULT_TITLE,
    updated: str | None = None,
    max_ids: int = MAX_IDS,
) -> str:
    """The Atom document (UTF-8 XML text) of ``events`` (WebSocket event messages, newest first).

    ``feed_url`` is the document's own URL (``link rel="self"``); ``feed_id`` its permanent id (default: the URL);
    ``updated`` the feed's time when there are no events (default: the newest event's timestamp, else 1970)."""
    events = list(events)
    feed = ET.Element("feed", {"xmlns": ATOM_NS})
    _text(feed, "id", feed_id or feed_url)
    _text(feed, "title", title)
    newest = _timestamp(events[0].get("timestamp")) if events else None
    _text(feed, "updated", newest or _timestamp(updated) or EPOCH_START)
    ET.SubElement(feed, "link", {"rel": "self", "type": "application/atom+xml", "href": _clean(feed_url)})
    author = ET.SubElement(feed, "author")
    _text(author, "name", "model-catalog")
    _text(feed, "generator", "model-catalog")
    for event in events:
        feed.append(_entry(event, max_ids))
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="unicode") + "\n"


def entry_id(epoch: str, seq: int) -> str:
    return f"urn:model-catalog:{epoch}:{seq}"


def entry_title(payload: Mapping[str, Any]) -> str:
    """"OpenAI: 2 added, 1 removed; Anthropic: 1 updated" (the first few providers, then how many more)."""
    changed = list(payload.get("changed") or [])
    parts = []
    for change in changed[:TITLE_PROVIDERS]:
        counts = [f"{_count(change, key)} {key}" for key, _ in _LISTS if _count(change, key)]
        parts.append(f"{_provider_name(change)}: {', '.join(counts) or 'changed'}")
    if len(changed) > TITLE_PROVIDERS:
        parts.append(f"and {len(changed) - TITLE_PROVIDERS} more providers")
    if parts:
        return "; ".join(parts)
    hidden = payload.get("changed_count")  # a truncated payload that kept only the count of changed providers
    return f"{hidden} providers changed" if hidden else "catalog changed"


def _entry(event: Mapping[str, Any], max_ids: int) -> ET.Element:
    payload = event.get("payload") or {}
    entry = ET.Element("entry")
    _text(entry, "id", entry_id(str(event.get("epoch")), int(event.get("seq") or 0)))
    _text(entry, "title", entry_title(payload))
    _text(entry, "updated", _timestamp(event.get("timestamp")) or EPOCH_START)
    content = ET.SubElement(entry, "content", {"type": "html"})
    content.text = _clean(_content_html(event, payload, max_ids))
    return entry


def _content_html(event: Mapping[str, Any], payload: Mapping[str, Any], max_ids: int) -> str:
    parts = [f"<p>Revision {_h(payload.get('revision'))} (event {_h(event.get('seq'))})</p>"]
    for change in payload.get("changed") or []:
        parts.append(f"<h3>{_h(_provider_name(change))} <small>({_h(change.get('provider_id'))})</small></h3>")
        for key, label in _LISTS:
            parts += _id_list(label, change.get(key) or [], _count(change, key), max_ids)
    failed = payload.get("failed") or []
    if failed:
        items = "".join(f"<li>{_h(f.get('provider_id'))}: {_h(f.get('reason'))}</li>" for f in failed)
        parts.append(f"<p>Failed:</p><ul>{items}</ul>")
    if event.get("truncated") or payload.get("truncated"):
        parts.append("<p>This change was too large to list in full: read the catalog for every model.</p>")
    return "".join(parts)


def _id_list(label: str, ids: Sequence[Any], count: int, max_ids: int) -> list[str]:
    if not count:
        return []
    shown = list(ids[:max_ids])
    items = "".join(f"<li><code>{_h(model_id)}</code></li>" for model_id in shown)
    more = count - len(shown)
    tail = f"<li>… and {more:,} more</li>" if more > 0 else ""
    return [f"<p>{label} ({count:,}):</p><ul>{items}{tail}</ul>"]


def _count(change: Mapping[str, Any], key: str) -> int:
    listed = change.get(key) or []
    return len(listed) or int(change.get(f"{key}_count") or 0)


def _provider_name(change: Mapping[str, Any]) -> str:
    return str(change.get("provider_name") or change.get("provider_id") or "unknown provider")


def _timestamp(value: Any) -> str | None:
    return value if isinstance(value, str) and _RFC3339.match(value) else None


def _clean(value: Any) -> str:
    """``value`` as text XML 1.0 can carry (control characters and lone surrogates become U+FFFD)."""
    return _NOT_XML.sub("\ufffd", str(value))


def _h(value: Any) -> str:
    return html.escape(_clean("" if value is None else value), quote=True)


def _text(parent: ET.Element, tag: str, value: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = _clean(value)
    return element
