"""Conditional GET (RFC 9110 §13): strong ETags and ``If-None-Match`` → ``304 Not Modified``.

A route computes its ETag from what decides its body (cheaply: the manifest and the state item, never the whole
catalog) and hands ``conditional`` a function that builds the body, which runs only when the client's copy is stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from chalice import Response

# Clients may keep a copy but must revalidate it before each use (the catalog changes without notice).
REVALIDATE = "private, no-cache"


def strong_etag(*parts: object) -> str:
    """A strong entity tag over ``parts`` (their ``str``), e.g. ``"a1b2…"``."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).hexdigest()
    return f'"{digest[:32]}"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header value names ``etag`` (``*`` names any; ``W/`` prefixes compare weakly, as
    RFC 9110 prescribes for ``If-None-Match``)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == wanted for candidate in if_none_match.split(","))


def conditional(
    request_headers: Mapping[str, str] | None,
    etag: str,
    body: Callable[[], Any],
    *,
    content_type: str = "application/json",
    cache_control: str = REVALIDATE,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """``304`` with no body when the request's ``If-None-Match`` holds ``etag``, else ``200`` with ``body()``."""
    common = {"ETag": etag, "Cache-Control": cache_control, **(headers or {})}
    if matches((request_headers or {}).get("if-none-match"), etag):
        return Response(body="", status_code=304, headers=common)
    return Response(body=body(), status_code=200, headers={"Content-Type": content_type, **common})
