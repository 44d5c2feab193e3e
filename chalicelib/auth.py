"""Shared-secret checks used by both edges (REST bearer token and the WebSocket ``?token=`` query parameter)."""

from __future__ import annotations

import hmac
from collections.abc import Callable


def token_matches(presented: str | None, expected: str | None) -> bool:
    """Constant-time comparison; a missing token on either side never matches."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def token_checker(expected_token: Callable[[], str | None]) -> Callable[[str | None], bool]:
    """A check comparing a presented token with ``expected_token()`` (read per call: it may rotate)."""
    return lambda presented: token_matches(presented, expected_token())
