"""Reads that take more than one request: every model page by page, every event after a position.

An unpaged ``GET /models`` answers at most one response's worth (about 20,000 models; past that ``400
page_required``), so the CLI reads the catalog in pages of ``MODELS_PAGE`` following ``next_cursor``.
"""

from __future__ import annotations

from typing import Any

from catalog_cli.client import ApiClient

# The service answers at most this many events per GET /changes, and this many models per page (docs/reference.md §8).
CHANGES_PAGE = 500
MODELS_PAGE = 5_000


def all_models(client: ApiClient, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every model ``GET /models`` answers for ``params`` (filters), read page by page: ``{"revision", "models"}``
    (the revision of the last page; ``unavailable`` when a page named providers whose stored models are missing)."""
    models: list[dict[str, Any]] = []
    unavailable: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        query = {**(params or {}), "limit": str(MODELS_PAGE), **({"cursor": cursor} if cursor else {})}
        page = client.get("/models", params=query)
        models += page.get("models") or []
        for item in page.get("unavailable") or []:
            unavailable[item.get("provider_id")] = item
        cursor = page.get("next_cursor")
        if not cursor:
            body: dict[str, Any] = {"revision": page.get("revision"), "models": models}
            if unavailable:
                body["unavailable"] = list(unavailable.values())
            return body


def changes_since(client: ApiClient, since: int, epoch: str | None, limit: int | None = None) -> dict[str, Any]:
    """Every event after ``since`` (at most ``limit``), page by page, in the API's answer shape."""
    if epoch is None:  # a person at a prompt: take the seq to be of the current epoch
        epoch = client.get("/changes", params={"limit": "1"}).get("epoch")
    events: list[dict[str, Any]] = []
    cursor = since
    while True:
        page = CHANGES_PAGE if limit is None else min(CHANGES_PAGE, limit - len(events))
        body = client.get("/changes", params={"since": str(cursor), "epoch": epoch, "limit": str(page)})
        if body.get("resync_required"):
            return {**body, "events": []}  # the events read so far do not matter: the client reads the catalog
        events += body.get("events") or []
        if events:
            cursor = events[-1]["seq"]
        if not body.get("has_more") or not body.get("events") or (limit is not None and len(events) >= limit):
            return {**body, "events": events}
