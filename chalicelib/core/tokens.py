"""Issued API tokens (docs/reference.md §7): their format, how they are hashed, and the stored record. Pure.

A token is ``mct_<id>_<secret>``: ``id`` is 16 random hex digits (public: ``GET /api/v1/tokens`` lists it, the
revoke route takes it), ``secret`` 32 random bytes in URL-safe base64. Only ``HMAC-SHA256(salt, secret)`` is
stored, with a random per-token salt: the secret has 256 bits of entropy, so the digest cannot be reversed or
brute-forced, and equal secrets never give equal digests. Verification compares digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "mct_"
_ID_HEX_DIGITS = 16
_TOKEN_PATTERN = re.compile(r"mct_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
# `last_used_at` is written at most this often per token: a busy token costs no write per request.
TOUCH_INTERVAL_S = 60.0
NAME_MAX_LENGTH = 128


@dataclass(frozen=True)
class TokenRecord:
    """What is stored of one issued token: never its secret, only the salted digest of it."""

    id: str
    name: str
    scope: str
    created_at: str
    salt: bytes
    digest: bytes
    last_used_at: str | None = None
    last_used_s: float | None = None  # the same moment as seconds since the epoch (for the touch interval)

    def public(self) -> dict[str, str | None]:
        """The record as ``GET /api/v1/tokens`` lists it."""
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
        }


@dataclass(frozen=True)
class NewToken:
    """A freshly issued token: its record and the value, which is shown once and then exists nowhere."""

    record: TokenRecord
    value: str


def issue(name: str, scope: str, created_at: str) -> NewToken:
    token_id = secrets.token_hex(_ID_HEX_DIGITS // 2)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    record = TokenRecord(
        id=token_id, name=name, scope=scope, created_at=created_at, salt=salt, digest=secret_digest(salt, secret)
    )
    return NewToken(record=record, value=f"{TOKEN_PREFIX}{token_id}_{secret}")


def parse(presented: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token, else ``None``."""
    match = _TOKEN_PATTERN.fullmatch(presented)
    return (match.group(1), match.group(2)) if match else None


def secret_digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode("ascii"), hashlib.sha256).digest()


def verify(record: TokenRecord | None, secret: str) -> bool:
    """Whether ``secret`` is the one ``record`` was issued with (constant time; a missing record costs the same
    work, so an unknown id cannot be told from a wrong secret by timing)."""
    salt = record.salt if record is not None else b"\0" * 16
    expected = record.digest if record is not None else b"\0" * 32
    return hmac.compare_digest(secret_digest(salt, secret), expected) and record is not None


def needs_touch(record: TokenRecord, now_s: float) -> bool:
    """Whether a use at ``now_s`` should be written down (the last write is older than the touch interval)."""
    return record.last_used_s is None or now_s - record.last_used_s >= TOUCH_INTERVAL_S
