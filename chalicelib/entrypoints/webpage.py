"""The web page: one HTML shell plus a fixed set of static assets from ``chalicelib/static``.

The page needs no token to load; it asks for one itself and talks to the bearer-protected API.
Only the names in ``ASSETS`` are served, so no request can reach any other file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from chalice import Response

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

# name → Content-Type. The allowlist is the whole defence against path traversal: nothing else is read.
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "format.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

_VERSION_PLACEHOLDER = "{{asset_version}}"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # The token travels in the URL fragment, which browsers never send; no-referrer keeps the page URL private too.
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class _Page:
    html: str
    csp: str


def _read(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _page() -> _Page:
    raw = _read("index.html")
    # Asset URLs carry a content hash, so browsers may cache them for good and still never run stale code.
    digest = hashlib.sha256()
    for name in sorted(ASSETS):
        digest.update((STATIC_DIR / name).read_bytes())
    html = raw.replace(_VERSION_PLACEHOLDER, digest.hexdigest()[:12])
    # Inline scripts are allowed by hash only (the tiny trailing-slash redirect), never 'unsafe-inline'.
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' {hashes}".strip(),
            "style-src 'self'",
            "img-src 'self' data:",
            # The WebSocket URL comes from /client-config and may be another host (API Gateway's WS API).
            "connect-src 'self' ws: wss:",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    return _Page(html=html, csp=csp)


def index() -> Response:
    """``GET /``: the page shell."""
    page = _page()
    return Response(
        body=page.html,
        status_code=200,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-cache",
            "Content-Security-Policy": page.csp,
            **_COMMON_HEADERS,
        },
    )


@lru_cache(maxsize=len(ASSETS))
def _asset_body(name: str) -> str:
    return _read(name)


def asset(name: str) -> Response:
    """``GET /assets/{name}``: one of the allowlisted static files, else 404."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return Response(
            body=json.dumps({"error": {"code": "not_found", "message": "no such asset"}}),
            status_code=404,
            headers={"Content-Type": "application/json", **_COMMON_HEADERS},
        )
    return Response(
        body=_asset_body(name),
        status_code=200,
        headers={
            "Content-Type": content_type,
            # index.html references assets with ?v=<content hash>, so a cached copy is never stale.
            "Cache-Control": "public, max-age=31536000, immutable",
            **_COMMON_HEADERS,
        },
    )
