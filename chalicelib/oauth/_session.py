"""The refresh protocol for ``managed_oauth`` providers (``OAuthSession.access_token``):

1. No stored token, or the env var named by ``refresh_token_env`` holds a different refresh token than the
   one the store was seeded from (the user signed in again) → seed the store from the env var.
2. A stored access token valid for more than ``min(60 s, lifetime / 2)`` → reuse it (no network).
3. Otherwise claim a lease (conditional write), spend the refresh token (RFC 6749 §6), and write the new
   access token and the rotated refresh token in one conditional write *before* either is used. A racer
   that loses the claim waits for the lease holder and then uses the tokens it stored: a refresh token is
   never spent twice. The old refresh token is spent once the grant answers, so that write is retried
   (``ROTATION_WRITE_ATTEMPTS``, past the fetch's deadline if need be; a lost response is recognized by reading
   back); if it still fails, the store keeps the rotated tokens in memory and the next session in this process
   writes them first: a failed write never strands the user.
4. ``invalid_grant`` → the record is marked "sign in again" and the provider fails with that reason until a
   new refresh token is put in the env var.

Nothing here logs or returns a token; ``on_secret`` hands every token to the fetch's redactor.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from chalicelib.errors import ProviderError
from chalicelib.logs import get_logger
from chalicelib.oauth._token_store import TokenRecord, TokenStore, TokenStoreError

_log = get_logger("oauth")

REUSE_MARGIN_S = 60.0
DEFAULT_ACCESS_LIFETIME_S = 600.0  # when the token endpoint omits expires_in
LEASE_MARGIN_S = 15.0
POLL_INTERVAL_S = 0.1
# Writing a rotated refresh token: tries, and the backoff between them (about 9 s in all).
ROTATION_WRITE_ATTEMPTS = 8
ROTATION_WRITE_DELAYS_S = (0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0)


@dataclass(frozen=True)
class TokenGrant:
    """A token endpoint's successful answer (the tokens never appear in ``repr()``)."""

    access_token: str = field(repr=False)
    expires_in: float | None = None
    refresh_token: str | None = field(default=None, repr=False)


class GrantRejected(Exception):
    """The token endpoint refused the refresh token with an OAuth ``error`` code (RFC 6749 §5.2)."""

    def __init__(self, code: str, description: str | None = None):
        super().__init__(code)
        self.code = code
        self.description = description


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class OAuthSession:
    """Gets a usable access token for one provider during one fetch (see the module docstring)."""

    def __init__(
        self,
        store: TokenStore,
        provider_id: str,
        *,
        refresh_token_env: str,
        read_seed: Callable[[], str | None],
        grant: Callable[[str], TokenGrant],
        time_left: Callable[[], float],
        on_secret: Callable[[str], None] = lambda _secret: None,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        owner: str | None = None,
    ):
        self._store = store
        self._pid = provider_id
        self._env = refresh_token_env
        self._read_seed = read_seed
        self._grant = grant
        self._time_left = time_left
        self._on_secret = on_secret
        self._now = wall_clock
        self._sleep = sleep
        self._owner = owner or uuid.uuid4().hex
        self.refreshes = 0  # how many times this session spent a refresh token

    def access_token(self, rejected: str | None = None) -> str:
        """A valid access token. ``rejected``: the provider refused this one, so it is not reused."""
        seed = self._read_seed()
        self._on_secret(seed or "")
        self._write_unsaved()
        while True:
            if self._time_left() <= 0:
                raise ProviderError("timed out waiting for another refresh to renew the OAuth token")
            record = self._load()
            if record is None or (seed and fingerprint(seed) != record.seed_fingerprint):
                if not seed:
                    raise ProviderError(f"{self._env} is not set: sign in and put the refresh token there")
                record = self._seed(record, seed)
                if record is None:
                    continue  # another writer won; read again
            if record.decrypt_error:
                raise ProviderError(
                    f"{record.decrypt_error}; sign in again (put a new refresh token in {self._env})"
                )
            if record.sign_in_required:
                raise ProviderError(self._sign_in_reason(record.last_error or "invalid_grant"))
            now = self._now()
            if self._reusable(record, now) and record.access_token != rejected:
                return record.access_token  # type: ignore[return-value]
            if record.lease_owner and record.lease_owner != self._owner and (record.lease_expires_at or 0) > now:
                # Someone else is spending the refresh token right now: wait for its result.
                self._sleep(min(POLL_INTERVAL_S, max(self._time_left(), 0.0)))
                continue
            claim = replace(
                record,
                version=record.version + 1,
                lease_owner=self._owner,
                lease_expires_at=now + max(self._time_left(), 0.0) + LEASE_MARGIN_S,
                updated_at=now,
            )
            if not self._put(claim, record.version):
                continue
            return self._refresh(claim)

    def _refresh(self, claim: TokenRecord) -> str:
        if not claim.refresh_token:
            raise ProviderError(f"no refresh token is stored: sign in and put one in {self._env}")
        try:
            self.refreshes += 1
            granted = self._grant(claim.refresh_token)
        except GrantRejected as exc:
            if exc.code == "invalid_grant":
                failed = replace(
                    claim,
                    version=claim.version + 1,
                    access_token=None,
                    access_issued_at=None,
                    access_expires_at=None,
                    lease_owner=None,
                    lease_expires_at=None,
                    sign_in_required=True,
                    last_error=exc.code,
                    updated_at=self._now(),
                )
                self._put(failed, claim.version)
                _log.warning(
                    "the OAuth refresh token was rejected", extra={"provider_id": self._pid, "error": exc.code}
                )
                raise ProviderError(self._sign_in_reason(exc.code)) from None
            self._release(claim)
            raise ProviderError(_grant_reason(exc)) from None
        except BaseException:
            self._release(claim)
            raise
        self._on_secret(granted.access_token)
        self._on_secret(granted.refresh_token or "")
        now = self._now()
        lifetime = granted.expires_in if granted.expires_in is not None else DEFAULT_ACCESS_LIFETIME_S
        done = replace(
            claim,
            version=claim.version + 1,
            refresh_token=granted.refresh_token or claim.refresh_token,
            access_token=granted.access_token,
            access_issued_at=now,
            access_expires_at=now + max(lifetime, 0.0),
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
        # Durable before use: the rotated refresh token replaces the spent one in this conditional write,
        # and the access token is only returned once it succeeded.
        if not self._store_rotation(done, claim.version):
            _log.error(
                "an OAuth token was renewed but another writer took the lease; the new tokens are lost",
                extra={"provider_id": self._pid},
            )
            raise ProviderError(
                "the OAuth token was renewed but could not be stored (another refresh took over); "
                "if this repeats, sign in again"
            )
        _log.info(
            "OAuth access token renewed",
            extra={
                "provider_id": self._pid,
                "rotated": bool(granted.refresh_token and granted.refresh_token != claim.refresh_token),
                "expires_in_s": lifetime,
                "version": done.version,
            },
        )
        return granted.access_token

    def _store_rotation(self, done: TokenRecord, expected: int) -> bool:
        """Write the rotated tokens (the old refresh token is spent): retried on failure; True once stored, False
        when another writer holds the record. Past the last try they stay in this process (``remember_unsaved``)."""
        for attempt in range(ROTATION_WRITE_ATTEMPTS):
            try:
                if self._store.put(done, expected):
                    return True
                # Refused: our own earlier try may have been written (its answer lost), or someone else wrote.
                current = self._store.load(self._pid)
                return _same_tokens(current, done)
            except TokenStoreError as exc:
                if attempt == ROTATION_WRITE_ATTEMPTS - 1:
                    remember = getattr(self._store, "remember_unsaved", None)
                    if remember is not None:
                        remember(done, expected)
                    _log.error(
                        "the rotated OAuth token could not be stored; it is kept in memory and written first by "
                        "the next refresh here",
                        extra={"provider_id": self._pid, "error": str(exc)},
                    )
                    raise ProviderError(f"{exc}; the renewed token is kept and stored at the next refresh") from None
                _log.warning(
                    "storing the rotated OAuth token failed; retrying",
                    extra={"provider_id": self._pid, "attempt": attempt + 1, "error": str(exc)},
                )
                self._sleep(ROTATION_WRITE_DELAYS_S[min(attempt, len(ROTATION_WRITE_DELAYS_S) - 1)])
        raise AssertionError("unreachable")

    def _write_unsaved(self) -> None:
        """Write rotated tokens an earlier session in this process could not store, before anything else."""
        unsaved = getattr(self._store, "unsaved", None)
        pending = unsaved(self._pid) if unsaved is not None else None
        if pending is None:
            return
        record, expected = pending
        current = self._load()
        if current is None:  # the record was deleted (a sign-out): nothing to restore
            self._store.forget_unsaved(self._pid)  # type: ignore[attr-defined]
            return
        if current.version != expected:
            # Someone wrote since. Only a "sign in again" caused by the spent token (the same sign-in) is replaced.
            same_sign_in = current.seed_fingerprint == record.seed_fingerprint
            if not (current.sign_in_required and same_sign_in) or _same_tokens(current, record):
                self._store.forget_unsaved(self._pid)  # type: ignore[attr-defined]
                return
            expected, record = current.version, replace(record, version=current.version + 1)
        if self._put(replace(record, updated_at=self._now()), expected):
            self._store.forget_unsaved(self._pid)  # type: ignore[attr-defined]
            _log.info("a rotated OAuth token kept in memory is stored now", extra={"provider_id": self._pid})

    @staticmethod
    def _reusable(record: TokenRecord, now: float) -> bool:
        if not record.access_token or record.access_expires_at is None:
            return False
        lifetime = record.access_expires_at - (record.access_issued_at or record.access_expires_at)
        margin = min(REUSE_MARGIN_S, max(lifetime, 0.0) / 2)
        return now < record.access_expires_at - margin

    def _seed(self, current: TokenRecord | None, seed: str) -> TokenRecord | None:
        now = self._now()
        record = TokenRecord(
            provider_id=self._pid,
            version=(current.version + 1) if current else 1,
            refresh_token=seed,
            seed_fingerprint=fingerprint(seed),
            updated_at=now,
        )
        if not self._put(record, current.version if current else None):
            return None
        _log.info("OAuth refresh token taken from the environment", extra={"provider_id": self._pid, "env": self._env})
        return record

    def _release(self, claim: TokenRecord) -> None:
        try:
            released = replace(
                claim, version=claim.version + 1, lease_owner=None, lease_expires_at=None, updated_at=self._now()
            )
            self._put(released, claim.version)
        except Exception:  # best effort: the lease expires on its own
            _log.warning("could not release the OAuth lease", extra={"provider_id": self._pid})

    def _load(self) -> TokenRecord | None:
        try:
            record = self._store.load(self._pid)
        except TokenStoreError as exc:
            raise ProviderError(str(exc)) from None
        if record is not None:
            self._on_secret(record.refresh_token or "")
            self._on_secret(record.access_token or "")
        return record

    def _put(self, record: TokenRecord, expected: int | None) -> bool:
        try:
            return self._store.put(record, expected)
        except TokenStoreError as exc:
            raise ProviderError(str(exc)) from None

    def _sign_in_reason(self, code: str) -> str:
        return f"sign in again: the refresh token was rejected ({code}); put a new refresh token in {self._env}"


def _same_tokens(current: TokenRecord | None, written: TokenRecord) -> bool:
    return (
        current is not None
        and current.refresh_token == written.refresh_token
        and current.access_token == written.access_token
    )


def _grant_reason(exc: GrantRejected) -> str:
    if exc.code in ("invalid_client", "unauthorized_client"):
        return f"the token endpoint rejected the client ({exc.code}); check client_id"
    detail = f": {exc.description}" if exc.description else ""
    return f"the token endpoint refused the refresh ({exc.code}){detail}"
