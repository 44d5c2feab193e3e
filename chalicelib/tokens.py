"""Issuing, listing and revoking API tokens, and identifying the caller a token stands for (docs/reference.md §7).

``TokenService`` is the ``TokenLookup`` behind ``chalicelib.auth.Authenticator``. Every lookup reads the token's
item (one strongly consistent GetItem): there is no cache of good tokens, so a revoke takes effect on the very
next request, REST or WebSocket ``$connect``, in every warm Lambda. A use is written down (``last_used_at``) at most
once a minute per token (``chalicelib.core.tokens.TOUCH_INTERVAL_S``), not on every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalicelib.auth import SCOPES, Principal
from chalicelib.clock import utc_iso
from chalicelib.core import tokens
from chalicelib.errors import TokenNotFound
from chalicelib.logs import get_logger
from chalicelib.storage.tokens import TokenStore

log = get_logger("tokens")


class TokenService:
    def __init__(self, store: TokenStore, clock: Callable[[], float] = time.time):
        self._store = store
        self._clock = clock

    # -- TokenLookup ------------------------------------------------------------------------------------------
    def identify(self, presented: str) -> Principal | None:
        parsed = tokens.parse(presented)
        if parsed is None:
            return None
        token_id, secret = parsed
        record = self._store.get(token_id)
        if not tokens.verify(record, secret) or record is None or record.scope not in SCOPES:
            return None
        self._touch(record)
        return Principal(scope=record.scope, token_id=record.id, name=record.name)  # type: ignore[arg-type]

    def _touch(self, record: tokens.TokenRecord) -> None:
        now = self._clock()
        if not tokens.needs_touch(record, now):
            return
        try:
            self._store.touch(record.id, utc_iso(now, "seconds"), now, now - tokens.TOUCH_INTERVAL_S)
        except Exception:  # bookkeeping only: the request itself must not fail for it
            log.warning("could not record a token's use", extra={"token_id": record.id})

    # -- the admin routes -------------------------------------------------------------------------------------
    def create(self, name: str, scope: str) -> dict[str, Any]:
        """``POST /api/v1/tokens``: the one answer that carries the token itself."""
        issued = tokens.issue(name, scope, utc_iso(self._clock(), "seconds"))
        self._store.add(issued.record)
        log.info("token created", extra={"token_id": issued.record.id, "scope": scope})
        record = issued.record
        return {"id": record.id, "name": record.name, "scope": record.scope, "token": issued.value,
                "created_at": record.created_at}

    def list(self) -> dict[str, Any]:
        records = sorted(self._store.list(), key=lambda record: (record.created_at, record.id))
        return {"tokens": [record.public() for record in records]}

    def revoke(self, token_id: str) -> None:
        if not self._store.delete(token_id):
            raise TokenNotFound(token_id)
        log.info("token revoked", extra={"token_id": token_id})
