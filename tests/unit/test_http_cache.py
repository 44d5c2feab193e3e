"""Conditional GET: strong ETags, If-None-Match matching and the 304/200 choice."""

from __future__ import annotations

import pytest

from chalicelib.entrypoints.http_cache import conditional, matches, strong_etag


def test_a_strong_etag_is_quoted_and_changes_with_any_part() -> None:
    etag = strong_etag("rev", 3, "fp")
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert etag == strong_etag("rev", 3, "fp")
    assert etag != strong_etag("rev", 4, "fp") != strong_etag("rev", 3, "fp2")


@pytest.mark.parametrize(
    ("header", "hit"),
    [(None, False), ("", False), ('"x"', False), ('"e"', True), ('"x", "e"', True), ('W/"e"', True), ("*", True)],
)
def test_if_none_match(header: str | None, hit: bool) -> None:
    assert matches(header, '"e"') is hit


def test_a_match_answers_304_without_building_the_body() -> None:
    def body() -> dict:
        raise AssertionError("the body of a 304 is never built")

    response = conditional({"if-none-match": '"e"'}, '"e"', body, headers={"X-Catalog-Revision": "3"})
    assert response.status_code == 304 and response.body == ""
    assert response.headers["ETag"] == '"e"' and response.headers["X-Catalog-Revision"] == "3"


def test_a_stale_copy_gets_200_with_the_body_and_the_etag() -> None:
    response = conditional({"if-none-match": '"old"'}, '"e"', lambda: {"ok": True})
    assert response.status_code == 200 and response.body == {"ok": True}
    assert response.headers["ETag"] == '"e"' and response.headers["Cache-Control"] == "private, no-cache"
