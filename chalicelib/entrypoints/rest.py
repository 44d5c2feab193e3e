"""The HTTP edge: bearer auth, the error envelope, and request parsing for app.py's routes.

Domain errors (``chalicelib.errors``) become HTTP responses here and only here (docs/reference.md#2-rest-api).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from chalice import Response

from chalicelib.auth import Scope, scope_allows
from chalicelib.errors import (
    BadRequest,
    CatalogError,
    ConcurrentWrite,
    ConfigError,
    InvalidRequest,
    ProviderNotFound,
    RefreshInProgress,
    RouteNotFound,
    UnknownAction,
)
from chalicelib.logs import get_logger

if TYPE_CHECKING:
    from chalicelib.bootstrap import Container
    from chalicelib.service import CatalogService

log = get_logger("api")

# The scope each route needs, by (method, resource path), as app.py's routes declare it; None: public (the health
# check, the API description, the web page shell, which asks for the token itself).
ROUTE_SCOPES: dict[tuple[str, str], Scope | None] = {}
# A route no one declared (Chalice answers it 403/404/405) still needs a token to learn anything.
UNDECLARED_SCOPE: Scope = "read"


def public_paths() -> set[str]:
    return {path for (_, path), scope in ROUTE_SCOPES.items() if scope is None}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body={"error": {"code": code, "message": message}},
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _bearer(headers: Any) -> str | None:
    value = headers.get("authorization") if headers else None
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def http_middleware(runtime: Callable[[], Container]) -> Callable[[Any, Callable[[Any], Response]], Response]:
    """Chalice HTTP middleware: every route but the public ones needs a bearer token with the scope the route
    declares (401 without a known token, 403 ``insufficient_scope`` with too small a one); Chalice's own errors get
    the envelope too."""

    def middleware(event: Any, get_response: Callable[[Any], Response]) -> Response:
        needed = ROUTE_SCOPES.get((event.method, event.path), UNDECLARED_SCOPE)
        if needed is not None:
            refused = _refusal(runtime, _bearer(event.headers), needed)
            if refused is not None:
                return refused
        return _enveloped(get_response(event))

    return middleware


def _refusal(runtime: Callable[[], Container], presented: str | None, needed: Scope) -> Response | None:
    try:
        principal = runtime().authenticator.identify(presented)
    except ConfigError as exc:
        log.error("config error", extra={"error": str(exc)})
        return error_response(500, "config_error", str(exc))
    except Exception:
        log.exception("cannot verify the token")
        return error_response(503, "token_unavailable", "the service cannot verify tokens right now")
    if principal is None:
        return error_response(401, "unauthorized", "missing or invalid bearer token")
    if not scope_allows(principal.scope, needed):
        message = f"this route needs a token with the {needed!r} scope (yours: {principal.scope!r})"
        return error_response(403, "insufficient_scope", message)
    return None


def _enveloped(response: Response) -> Response:
    if response.status_code >= 400 and not _is_envelope(response.body):
        message = _chalice_message(response.body) or "request failed"
        code = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                415: "unsupported_media_type", 500: "internal_error"}.get(response.status_code, "error")
        # Keep Chalice's headers (a 405's `Allow`, RFC 9110); only the body and its type change.
        kept = {name: value for name, value in (response.headers or {}).items() if name.lower() != "content-type"}
        return error_response(response.status_code, code, message, kept)
    return response


def router(app: Any) -> Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]]:
    """``app.route`` with the scope every route must declare (``None``: public) and the error envelope: domain
    errors become HTTP responses here, at the edge."""

    def route(path: str, *, scope: Scope | None, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        for method in options.get("methods") or ["GET"]:
            ROUTE_SCOPES[(method, path)] = scope

        def register(view: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(view)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                try:
                    return view(*args, **kwargs)
                except (RefreshInProgress, ConcurrentWrite) as exc:
                    # Every 409 says when to retry: the lock holder's lease, or at once after another writer won.
                    return error_response(exc.status, exc.code, exc.message, {"Retry-After": str(exc.retry_after_s)})
                except CatalogError as exc:
                    return error_response(exc.status, exc.code, exc.message)
                except ConfigError as exc:
                    log.error("config error", extra={"error": str(exc)})
                    return error_response(500, "config_error", str(exc))
                except Exception:
                    log.exception("unhandled error", extra={"path": path})
                    return error_response(500, "internal_error", "internal error; see the service logs")

            app.route(path, **options)(guarded)
            return view

        return register

    return route


def _is_envelope(body: Any) -> bool:
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError:
            return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


def _chalice_message(body: Any) -> str | None:
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError:
            return str(body)[:200] if body else None
    if isinstance(body, dict):
        return str(body.get("Message") or body.get("message") or "") or None
    return None


def _int_param(params: dict[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name!r} must be between {low} and {high}")
    return value


def list_models(service: CatalogService, params: dict[str, str]) -> dict[str, Any]:
    limit = _int_param(params, "limit", None, 1, 10_000)
    return service.list_models(
        provider_id=params.get("provider_id") or None, limit=limit, cursor=params.get("cursor") or None
    )


def collection_action(service: CatalogService, resource: str) -> dict[str, Any]:
    """``POST /api/v1/<resource>``: only ``providers:<action>`` exists; the literal routes take the known ones."""
    name, sep, action = unquote(resource).rpartition(":")
    if sep and name == "providers":
        if action == "refresh":
            return service.refresh(scope="all", trigger="manual")
        if action == "refresh_oauth":
            return service.refresh(scope="oauth", trigger="manual")
        raise UnknownAction(action)
    raise RouteNotFound(f"no route POST /api/v1/{resource}")


def provider_action(service: CatalogService, raw: str) -> dict[str, Any]:
    """``POST /api/v1/providers/{id}:{action}``, split on the last colon after URL-decoding (the one dispatcher
    of provider actions; ``/providers/{id}/refresh`` is its plain alias)."""
    provider_id, sep, action = unquote(raw).rpartition(":")
    if not sep:
        raise UnknownAction("")
    if action != "refresh":
        raise UnknownAction(action)
    return _refresh_one(service, provider_id)


def refresh_one(service: CatalogService, raw_provider_id: str) -> dict[str, Any]:
    """``POST /api/v1/providers/{id}/refresh``."""
    return _refresh_one(service, unquote(raw_provider_id))


def _refresh_one(service: CatalogService, provider_id: str) -> dict[str, Any]:
    if not provider_id:
        raise ProviderNotFound(provider_id)
    return service.refresh(scope="provider", provider_id=provider_id, trigger="manual")


def json_body(request: Any) -> Any:
    """The request's JSON body (None when empty); ``InvalidRequest`` when it is not JSON."""
    raw = getattr(request, "raw_body", b"") or b""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the request body is not valid JSON") from None


def created(body: Any) -> Response:
    return Response(body=body, status_code=201, headers={"Content-Type": "application/json"})


def accepted(body: Any) -> Response:
    return Response(body=body, status_code=202, headers={"Content-Type": "application/json"})


def no_content() -> Response:
    return Response(body="", status_code=204)


def client_config(container: Container) -> dict[str, Any]:
    return {"ws_url": container.public_ws_url(), "api_prefix": "/api/v1"}
