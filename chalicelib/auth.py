"""Who is calling, and what they may do: bearer tokens and their scopes (docs/reference.md §7).

Three scopes, each including the ones before it: ``read`` ⊂ ``refresh`` ⊂ ``admin``. ``MODEL_CATALOG_API_TOKEN``
is an ``admin`` token. Both edges use one ``Authenticator``: the REST bearer token and the WebSocket ``?token=``.
Comparisons are constant-time; a missing token on either side never matches.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

Scope = Literal["read", "refresh", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "refresh", "admin")


def scope_allows(held: str, needed: str) -> bool:
    """Whether a token of scope ``held`` may do what needs ``needed``."""
    return held in SCOPES and needed in SCOPES and SCOPES.index(held) >= SCOPES.index(needed)


def token_matches(presented: str | None, expected: str | None) -> bool:
    """Constant-time comparison; a missing token on either side never matches."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its scope, and the id of its issued token (``None`` for the configured admin
    token)."""

    scope: Scope
    token_id: str | None = None
    name: str | None = None


class TokenLookup(Protocol):
    """Issued tokens (``POST /api/v1/tokens``): the principal a presented token stands for, or ``None``."""

    def identify(self, presented: str) -> Principal | None: ...


class Authenticator:
    def __init__(self, admin_token: Callable[[], str | None], tokens: TokenLookup | None = None):
        self._admin_token = admin_token
        self._tokens = tokens

    def identify(self, presented: str | None) -> Principal | None:
        """The caller ``presented`` stands for; ``None`` when it is missing or unknown (401)."""
        if not presented:
            return None
        if token_matches(presented, self._admin_token()):
            return Principal(scope="admin", name="MODEL_CATALOG_API_TOKEN")
        return self._tokens.identify(presented) if self._tokens is not None else None


def token_checker(expected_token: Callable[[], str | None]) -> Callable[[str | None], bool]:
    """A check comparing a presented token with ``expected_token()`` (read per call: it may rotate)."""
    return lambda presented: token_matches(presented, expected_token())
