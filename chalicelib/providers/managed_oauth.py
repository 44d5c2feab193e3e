"""Kind ``managed_oauth``: an OpenAI-compatible ``GET {base_url}/models`` authorized with an OAuth access
token obtained by the refresh-token grant (RFC 6749 §6):
``POST {token_url}`` form ``grant_type=refresh_token&refresh_token=…&client_id=…[&scope=…]``.

Token storage, reuse until expiry, rotation and the race between two refreshes are ``chalicelib.oauth``'s
job (``OAuthSession``); this module only speaks the wire protocol. A 401 on the model list means the access
token was revoked early: it is renewed once and the list requested again.

Token endpoint answers: ``{"access_token", "token_type": "Bearer", "expires_in"?, "refresh_token"?}`` (a
new ``refresh_token`` replaces the stored one); an RFC 6749 §5.2 error ``{"error": "invalid_grant"}`` makes
the provider fail with "sign in again…" until a new refresh token is put in ``refresh_token_env``.

Field mapping and capabilities: exactly those of kind ``openai`` (see ``openai_compatible``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.core.domain import Model
from chalicelib.errors import ProviderError
from chalicelib.oauth import GrantRejected, OAuthSession, TokenGrant
from chalicelib.providers.base import FetchContext, bearer, shape_error, text
from chalicelib.providers.openai_compatible import EXPECT, parse_models

TOKEN_EXPECT = "a JSON object with `access_token`"


class _AccessTokenRejected(Exception):
    pass


def fetch_models(ctx: FetchContext) -> list[Model]:
    provider = ctx.provider
    if ctx.token_store is None:
        raise ProviderError("OAuth token storage is not configured (a deployment wiring error)")
    session = OAuthSession(
        ctx.token_store,
        provider.id,
        refresh_token_env=provider.refresh_token_env or "",
        read_seed=lambda: ctx.read_secret(provider.refresh_token_env or ""),
        grant=grant_with(ctx),
        time_left=ctx.time_left,
        on_secret=ctx.http.redactor.add,
        wall_clock=ctx.wall_clock,
        sleep=ctx.sleep,
    )
    token = session.access_token()
    try:
        body = _list(ctx, token, on_error=_raise_if_unauthorized)
    except _AccessTokenRejected:
        token = session.access_token(rejected=token)
        body = _list(ctx, token, on_error=None)
    return parse_models(ctx, body)


def _list(ctx: FetchContext, token: str, on_error: Callable[[int, Any], None] | None) -> Any:
    return ctx.http.get_json(ctx.url("models"), expect=EXPECT, headers=bearer(token), on_error=on_error)


def _raise_if_unauthorized(status: int, _data: Any) -> None:
    if status == 401:
        raise _AccessTokenRejected()


def grant_with(ctx: FetchContext) -> Callable[[str], TokenGrant]:
    """The refresh-token grant against the provider's ``token_url``, as ``OAuthSession`` calls it."""
    provider = ctx.provider

    def grant(refresh_token: str) -> TokenGrant:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": provider.client_id or ""}
        if provider.scope:
            form["scope"] = provider.scope
        data = ctx.http.post_form(provider.token_url or "", form, expect=TOKEN_EXPECT, on_error=_raise_oauth_error).data
        return parse_grant(data)

    return grant


def parse_grant(data: Any) -> TokenGrant:
    if isinstance(data, dict) and isinstance(data.get("error"), str) and not data.get("access_token"):
        raise GrantRejected(data["error"], text(data.get("error_description")))  # an error sent with HTTP 200
    access_token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(access_token, str) or not access_token:
        raise shape_error(TOKEN_EXPECT, data)
    token_type = data.get("token_type")
    if isinstance(token_type, str) and token_type and token_type.lower() != "bearer":
        raise ProviderError(f"the token endpoint issued a {token_type!r} token; only Bearer tokens are supported")
    refresh_token = data.get("refresh_token")
    return TokenGrant(
        access_token=access_token,
        expires_in=_seconds(data.get("expires_in")),
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
    )


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if number >= 0 else None
    return None


def _raise_oauth_error(status: int, data: Any) -> None:
    """RFC 6749 §5.2: a 400 (or 401 for client authentication) with an ``error`` code."""
    if status in (400, 401, 403) and isinstance(data, dict) and isinstance(data.get("error"), str):
        raise GrantRejected(data["error"], text(data.get("error_description")))
