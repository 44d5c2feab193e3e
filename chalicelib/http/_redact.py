"""Redaction: ``Redactor`` takes secrets out of every reason and log line; ``display_url`` gives a URL fit to
show (no credentials, no query)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit


class Redactor:
    """Removes secrets from text: registered values (raw, URL- and JSON-encoded) and anything shaped like
    ``Bearer <token>``, ``key=<value>`` or ``"refresh_token": "<value>"``. Thread-safe; secrets are added
    as they become known (an access token obtained mid-fetch)."""

    MASK = "[redacted]"
    _PATTERNS = (
        (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), r"\1 [redacted]"),
        (
            re.compile(r"(?i)\b(api[_-]?key|key|access_token|refresh_token|id_token|token|client_secret)=[^&\s\"']+"),
            r"\1=[redacted]",
        ),
        (
            re.compile(r'(?i)"(access_token|refresh_token|id_token|api_key|client_secret)"\s*:\s*"[^"]*"'),
            r'"\1": "[redacted]"',
        ),
    )

    def __init__(self, secrets: Iterable[str | None] = ()):
        self._lock = threading.Lock()
        self._variants: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret:
            return
        variants = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
        with self._lock:
            merged = set(self._variants) | {v for v in variants if v}
            # Longest first, so a secret containing another is removed whole.
            self._variants = sorted(merged, key=len, reverse=True)

    def contains_secret(self, text: str) -> bool:
        return any(v in text for v in self._variants)

    def __call__(self, text: str) -> str:
        for variant in self._variants:
            if variant in text:
                text = text.replace(variant, self.MASK)
        for pattern, replacement in self._PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def display_url(url: str) -> str:
    """A URL fit for reasons and logs: no userinfo, no query string, no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
