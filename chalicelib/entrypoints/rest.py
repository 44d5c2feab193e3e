"""The HTTP edge: bearer auth, the error envelope, and request parsing for app.py's routes.

Domain errors (``chalicelib.errors``) become HTTP responses here and only here (docs/reference.md#2-rest-api).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from chalice import Response

from chalicelib.auth import SCOPES, Principal, Scope, scope_allows
from chalicelib.core.tokens import NAME_MAX_LENGTH
from chalicelib.entrypoints.http_cache import conditional, strong_etag
from chalicelib.errors import (
    CatalogError,
    ConcurrentWrite,
    ConfigError,
    InvalidRequest,
    ProviderNotFound,
    RefreshInProgress,
    RouteNotFound,
    TokenNotAllowedInUrl,
    UnknownAction,
)
from chalicelib.logs import get_logger

if TYPE_CHECKING:
    from chalicelib.bootstrap import Container
    from chalicelib.change_feed import ChangeFeed
    from chalicelib.service import CatalogService

log = get_logger("api")

# The scope each route needs, by (method, resource path), as app.py's routes declare it; None: public (the health
# check, the API description, the web page shell, which asks for the token itself).
ROUTE_SCOPES: dict[tuple[str, str], Scope | None] = {}
# Sent with every answer of GET /models and GET /providers (and their 304s): the catalog revision they show.
REVISION_HEADER = "X-Catalog-Revision"
# A route no one declared (Chalice answers it 403/404/405) still needs a token to learn anything.
UNDECLARED_SCOPE: Scope = "read"
# Routes that take their token from a path parameter (for clients that can only be given a URL), by (method, resource
# path) → the parameter's name. Only a `read` token may stand there: URLs end up in access logs.
PATH_TOKEN_ROUTES: dict[tuple[str, str], str] = {}


def public_paths() -> set[str]:
    return {path for (_, path), scope in ROUTE_SCOPES.items() if scope is None}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body={"error": {"code": code, "message": message}},
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def config_error_response(exc: ConfigError) -> Response:
    """A config that cannot be used: the details (file paths, keys, expanded URLs) go to the log, for the operator;
    the caller — possibly anonymous: the token cannot be checked without a config — gets a generic message and a
    reference to find the log line."""
    reference = uuid.uuid4().hex[:12]
    log.error("config error", extra={"error": str(exc), "reference": reference})
    message = f"the service configuration cannot be used; the details are in the service log (reference {reference})"
    return error_response(500, "config_error", message)


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
            token_param = PATH_TOKEN_ROUTES.get((event.method, event.path))
            if token_param is None:
                refused = _refusal(runtime, _bearer(event.headers), needed)
            else:
                refused = _refusal(runtime, (event.uri_params or {}).get(token_param), needed, in_url=True)
            if refused is not None:
                return refused
        return _enveloped(get_response(event))

    return middleware


def _refusal(
    runtime: Callable[[], Container], presented: str | None, needed: Scope, in_url: bool = False
) -> Response | None:
    try:
        principal = runtime().authenticator.identify(presented)
    except ConfigError as exc:
        return config_error_response(exc)
    except Exception:
        log.exception("cannot verify the token")
        return error_response(503, "token_unavailable", "the service cannot verify tokens right now")
    if principal is None:
        return error_response(401, "unauthorized", "missing or invalid bearer token")
    if in_url and principal.scope != "read":
        refused = TokenNotAllowedInUrl(principal.scope)
        return error_response(refused.status, refused.code, refused.message)
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

    def route(
        path: str, *, scope: Scope | None, token_param: str | None = None, **options: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        for method in options.get("methods") or ["GET"]:
            ROUTE_SCOPES[(method, path)] = scope
            if token_param is not None:
                PATH_TOKEN_ROUTES[(method, path)] = token_param

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
                    return config_error_response(exc)
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


# The handlers below import their helpers when first called: `import app` stays cheap for a cold Lambda (the
# query and feed modules pull in pydantic, botocore and the XML writer).


def list_models(service: CatalogService, request: Any) -> Response:
    """``GET /api/v1/models``: filters and pages (docs/reference.md §8), with a strong ETag: ``304`` when the
    client's copy is current, decided from the manifest without reading a model."""
    from chalicelib.entrypoints.query_params import model_query

    query = model_query(request.query_params)
    view = service.models_view(query)
    etag = strong_etag("models", view.version, query.key())
    return conditional(request.headers, etag, view.body, headers={REVISION_HEADER: str(view.revision)})


def list_providers(service: CatalogService, request: Any) -> Response:
    """``GET /api/v1/providers`` with a strong ETag over the manifest, the config and the provider statuses."""
    view = service.providers_view()
    etag = strong_etag("providers", view.version)
    return conditional(request.headers, etag, view.body, headers={REVISION_HEADER: str(view.revision)})


def changes(feed: ChangeFeed, request: Any) -> dict[str, Any]:
    """``GET /api/v1/changes?since&epoch&limit``."""
    from chalicelib.change_feed import DEFAULT_LIMIT, MAX_LIMIT
    from chalicelib.entrypoints.query_params import changes_query

    since, epoch, limit = changes_query(request.query_params, DEFAULT_LIMIT, MAX_LIMIT)
    return feed.changes(since=since, epoch=epoch, limit=limit).to_json()


def changes_atom(feed: ChangeFeed, request: Any) -> Response:
    """``GET /api/v1/changes.atom``: the newest events as Atom; its ETag is the journal's position."""
    from chalicelib.change_feed import ATOM_ENTRIES
    from chalicelib.feeds import ATOM_CONTENT_TYPE, render_changes_atom

    seq, epoch = feed.position()
    url = _tokenless(request_url(request), request)
    etag = strong_etag("changes.atom", feed.code_version, epoch, seq, url)

    def document() -> str:
        return render_changes_atom(feed.newest(epoch, seq, ATOM_ENTRIES), feed_url=url)

    return conditional(request.headers, etag, document, content_type=ATOM_CONTENT_TYPE)


def _tokenless(url: str, request: Any) -> str:
    """A ``/feeds/{token}/…`` URL as its ``/export/…`` twin: the feed's id and self link must not carry the token
    (feed readers show and share them)."""
    token = (request.uri_params or {}).get("token")
    return url.replace(f"/feeds/{quote(token, safe='')}/", "/export/", 1) if token else url


def request_url(request: Any) -> str:
    """The URL the client asked for, without the query (behind API Gateway: its host and the stage's path)."""
    headers = request.headers or {}
    scheme = (headers.get("x-forwarded-proto") or "http").split(",")[0].strip() or "http"
    host = headers.get("host") or "localhost"
    path = (getattr(request, "context", None) or {}).get("path") or request.path
    return f"{scheme}://{host}{path}"


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


# -- tokens (docs/reference.md §7) -----------------------------------------------------------------------------
def token_request(raw_body: bytes | None) -> tuple[str, Scope]:
    """``POST /api/v1/tokens``'s body: ``{"name": str, "scope": "read" | "refresh" | "admin"}``."""
    try:
        body = json.loads(raw_body or b"")
    except ValueError:
        raise InvalidRequest('the body must be JSON: {"name": "...", "scope": "read" | "refresh" | "admin"}') from None
    if not isinstance(body, dict):
        raise InvalidRequest('the body must be a JSON object: {"name": "...", "scope": "read" | "refresh" | "admin"}')
    unknown = sorted(set(body) - {"name", "scope"})
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; the fields are name and scope")
    name, scope = body.get("name"), body.get("scope")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("'name' must be a non-empty string")
    if len(name) > NAME_MAX_LENGTH or not name.isprintable():
        raise InvalidRequest(f"'name' must be printable text of at most {NAME_MAX_LENGTH} characters")
    if scope not in SCOPES:
        raise InvalidRequest(f"'scope' must be one of {', '.join(SCOPES)}, got {scope!r}")
    return name, scope


def create_token(container: Container, raw_body: bytes | None) -> Response:
    name, scope = token_request(raw_body)
    return Response(body=container.tokens.create(name, scope), status_code=201,
                    headers={"Content-Type": "application/json", "Cache-Control": "no-store"})


def revoke_token(container: Container, raw_token_id: str) -> Response:
    container.tokens.revoke(unquote(raw_token_id))
    return Response(body="", status_code=204)


def whoami(container: Container, headers: Any) -> dict[str, Any] | Response:
    """The caller: its scope, and which issued token it is (``null`` for the configured admin token)."""
    principal: Principal | None = container.authenticator.identify(_bearer(headers))
    if principal is None:  # revoked between the middleware's check and here
        return error_response(401, "unauthorized", "missing or invalid bearer token")
    return {"scope": principal.scope, "token_id": principal.token_id, "name": principal.name}


# -- exports (docs/reference.md §11) ---------------------------------------------------------------------------
# Behind a token, so only the caller's own cache may keep a copy; a minute of reuse spares tools that poll (they
# rarely send If-None-Match), and a revalidation is a 304 computed from the manifest alone.
EXPORT_CACHE_CONTROL = "private, max-age=60"


def export(container: Container, name: str, headers: Any) -> Response:
    """``GET /api/v1/export/<name>`` and ``/api/v1/feeds/{token}/<name>``: strong ETag from the manifest and the
    providers' config (no model read for a 304), then the export read at that same manifest."""
    manifest, version = container.service.catalog_version()
    etag = strong_etag("export", name, version)
    return conditional(
        headers,
        etag,
        lambda: container.service.export(name, manifest),
        cache_control=EXPORT_CACHE_CONTROL,
        headers={"X-Catalog-Revision": str(manifest.revision)},
    )
