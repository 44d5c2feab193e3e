"""The OpenAPI 3.1 document of the REST API (docs/reference.md §2), served at ``GET /api/v1/openapi.json``.

The schemas come from the pydantic models of ``chalicelib.core.domain``, so the document follows the code. Response
objects are closed (``additionalProperties: false``, every field required) because the service always emits every
field: an undocumented or missing field is then a schema violation that ``tests/test_schemathesis.py`` catches.
A new field is one pydantic field away from being documented.

Built once per process (pydantic is imported only here, on first use, to keep cold starts cheap); each call
returns a copy, so no caller can change what the next one gets.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

OPENAPI_VERSION = "3.1.0"
PREFIX = "/api/v1"
REF = "#/components/schemas/{model}"

# `security: []` on an operation lifts the document-wide bearer requirement (the routes declared with scope=None).
PUBLIC: list[dict[str, Any]] = []

_cache: dict[str, Any] | None = None
_cache_lock = threading.Lock()


def document() -> dict[str, Any]:
    """The whole OpenAPI document as a JSON-ready dict (a fresh copy on every call)."""
    global _cache
    if _cache is None:
        with _cache_lock:
            if _cache is None:
                _cache = _build()
    return copy.deepcopy(_cache)


# -- schemas -------------------------------------------------------------------------------------------------
def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """Every object schema in ``schema``: all properties required, nothing else allowed."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            schema["required"] = list(schema["properties"])
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            if isinstance(value, dict):
                _closed(value)
            elif isinstance(value, list):
                for item in value:
                    _closed(item)
    return schema


def _domain_schemas() -> dict[str, Any]:
    from chalicelib.core.domain import (
        CAPABILITIES,
        Model,
        Pricing,
        Provider,
        ProviderChange,
        ProviderFailure,
        RefreshResult,
        RefreshStatus,
    )

    schemas: dict[str, Any] = {}
    for model in (Pricing, Model, Provider, ProviderChange, ProviderFailure, RefreshResult, RefreshStatus):
        schema = model.model_json_schema(ref_template=REF, mode="serialization")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for name in ("next_due_at", "last_refreshed_at"):
        for owner in ("RefreshStatus", "Provider"):
            prop = schemas[owner]["properties"].get(name)
            if prop is not None:
                prop["description"] = "ISO-8601 date-time (UTC), or null"
    capabilities = schemas["Model"]["properties"]["capabilities"]
    capabilities.update(description="sorted, from a fixed vocabulary", uniqueItems=True)
    capabilities["items"] = {"type": "string", "enum": list(CAPABILITIES)}
    return schemas


def _schemas() -> dict[str, Any]:
    schemas = _domain_schemas()
    nullable_string = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    schemas.update(
        {
            "ProviderList": {
                "title": "ProviderList",
                "type": "object",
                "properties": {"providers": {"type": "array", "items": {"$ref": REF.format(model="Provider")}}},
            },
            "ModelList": {
                "title": "ModelList",
                "type": "object",
                "properties": {
                    "revision": {"type": "integer", "description": "catalog revision the models were read at"},
                    "models": {"type": "array", "items": {"$ref": REF.format(model="Model")}},
                    "next_cursor": {
                        **nullable_string,
                        "description": "only with `limit`: pass as `cursor` for the next page; null on the last page",
                    },
                    "unavailable": {
                        "type": "array",
                        "description": "only when some provider's stored models could not be read: they are missing "
                        "from this answer, and the next refresh writes them again (extension)",
                        "items": {
                            "type": "object",
                            "required": ["provider_id", "reason"],
                            "properties": {"provider_id": {"type": "string"}, "reason": {"type": "string"}},
                        },
                    },
                },
            },
            "Health": {
                "title": "Health",
                "type": "object",
                "properties": {"status": {"type": "string", "enum": ["ok"]}},
            },
            "ClientConfig": {
                "title": "ClientConfig",
                "type": "object",
                "properties": {
                    "ws_url": {**nullable_string, "description": "the WebSocket URL clients connect to"},
                    "api_prefix": {"type": "string", "enum": [PREFIX]},
                },
            },
            "Error": {
                "title": "Error",
                "type": "object",
                "description": "The error envelope of every non-2xx answer.",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                            "message": {"type": "string"},
                        },
                    }
                },
            },
        }
    )
    _closed(schemas)
    schemas["ModelList"]["required"] = ["revision", "models"]  # next_cursor comes only with `limit`
    # Only a result too big to store or send whole carries it (its id lists were cut): clients refetch.
    schemas["RefreshResult"]["properties"]["truncated"] = {"type": "boolean", "const": True}
    return schemas


# -- responses -----------------------------------------------------------------------------------------------
def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=name)}


def _error(description: str, codes: list[str], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = {
        "allOf": [
            _ref("Error"),
            {"type": "object", "properties": {"error": {"type": "object", "properties": {"code": {"enum": codes}}}}},
        ]
    }
    response: dict[str, Any] = {"description": description, "content": _json(schema)}
    if headers:
        response["headers"] = headers
    return response


def _responses() -> dict[str, Any]:
    return {
        "BadRequest": _error("A query parameter or action is not valid.", ["bad_request", "unknown_action"]),
        "Unauthorized": _error("The bearer token is missing or wrong.", ["unauthorized"]),
        "NotFound": _error("No such provider, route or asset.", ["not_found", "provider_not_found"]),
        "RefreshInProgress": _error(
            "Another refresh held the catalog for longer than this request may wait.",
            ["refresh_in_progress"],
            {
                "Retry-After": {
                    "description": "seconds to wait before retrying",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
        ),
        "InternalError": _error(
            "The service failed (the reason is in its logs) or its configuration cannot be used.",
            ["internal_error", "config_error"],
        ),
        "Unavailable": _error("The service cannot verify tokens right now.", ["token_unavailable"]),
    }


def _use(*names: str) -> dict[str, Any]:
    status = {
        "BadRequest": "400",
        "Unauthorized": "401",
        "NotFound": "404",
        "RefreshInProgress": "409",
        "InternalError": "500",
        "Unavailable": "503",
    }
    return {status[name]: {"$ref": f"#/components/responses/{name}"} for name in names}


# -- operations ----------------------------------------------------------------------------------------------
def _path_param(name: str, description: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
        "example": example,
    }


def _protected(operation_id: str, summary: str, ok: dict[str, Any], *errors: str, **extra: Any) -> dict[str, Any]:
    """A bearer-protected operation: 401, 500 and 503 besides its own answers."""
    names = sorted({*errors, "Unauthorized", "InternalError", "Unavailable"}, key=_ERROR_ORDER.index)
    return {
        "operationId": operation_id,
        "summary": summary,
        **extra,
        "responses": {"200": ok, **_use(*names)},
    }


_ERROR_ORDER = ["BadRequest", "Unauthorized", "NotFound", "RefreshInProgress", "InternalError", "Unavailable"]


def _refresh(operation_id: str, summary: str, *errors: str, **extra: Any) -> dict[str, Any]:
    ok = {"description": "What the refresh changed.", "content": _json(_ref("RefreshResult"))}
    return _protected(operation_id, summary, ok, "RefreshInProgress", *errors, tags=["refresh"], **extra)


def _paths() -> dict[str, Any]:
    provider_ref = _path_param("provider_id", "a provider id of the config (URL-encoded)", "openai")
    return {
        "/": {
            "get": {
                "operationId": "web_page",
                "summary": "The web page (it asks for the token itself)",
                "tags": ["web"],
                "security": PUBLIC,
                "responses": {
                    "200": {"description": "The page shell.", "content": {"text/html": {"schema": {"type": "string"}}}},
                    **_use("InternalError"),
                },
            }
        },
        "/assets/{name}": {
            "get": {
                "operationId": "web_asset",
                "summary": "A static asset of the web page",
                "tags": ["web"],
                "security": PUBLIC,
                "parameters": [_path_param("name", "asset file name", "app.js")],
                "responses": {
                    "200": {
                        "description": "The asset.",
                        "content": {
                            media: {"schema": {"type": "string"}}
                            for media in ("text/javascript", "text/css", "image/svg+xml")
                        },
                    },
                    **_use("NotFound", "InternalError"),
                },
            }
        },
        f"{PREFIX}/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness check",
                "tags": ["service"],
                "security": PUBLIC,
                "responses": {
                    "200": {"description": "The service answers.", "content": _json(_ref("Health"))},
                    **_use("InternalError"),
                },
            }
        },
        f"{PREFIX}/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["service"],
                "security": PUBLIC,
                "responses": {
                    "200": {"description": "The OpenAPI document.", "content": _json({"type": "object"})},
                    **_use("InternalError"),
                },
            }
        },
        f"{PREFIX}/client-config": {
            "get": _protected(
                "client_config",
                "What the web page and clients need to connect",
                {"description": "Client settings.", "content": _json(_ref("ClientConfig"))},
                tags=["service"],
            )
        },
        f"{PREFIX}/providers": {
            "get": _protected(
                "list_providers",
                "Every provider of the config, with its catalog state",
                {"description": "The providers, in config order.", "content": _json(_ref("ProviderList"))},
                tags=["catalog"],
            )
        },
        f"{PREFIX}/models": {
            "get": _protected(
                "list_models",
                "The models of the catalog, sorted by provider id then model id",
                {
                    "description": "One page of models (all of them without `limit`).",
                    "content": _json(_ref("ModelList")),
                },
                "BadRequest",
                "NotFound",
                tags=["catalog"],
                # An empty value (`?limit=`) counts as absent, as api.list_models reads it: allowEmptyValue.
                parameters=[
                    {
                        "name": "provider_id",
                        "in": "query",
                        "description": "only this provider's models; an unknown id answers 404 provider_not_found",
                        "schema": {"type": "string"},
                        "allowEmptyValue": True,
                        "example": "openai",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "page size; the answer then carries `next_cursor`",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 10_000},
                        "allowEmptyValue": True,
                        "example": 100,
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "`next_cursor` of the previous page; anything else answers 400",
                        "schema": {"type": "string"},
                        "allowEmptyValue": True,
                    },
                ],
            )
        },
        f"{PREFIX}/refresh/status": {
            "get": _protected(
                "refresh_status",
                "The effective refresh settings, the last run and the next scheduled one",
                {"description": "The refresh status.", "content": _json(_ref("RefreshStatus"))},
                tags=["refresh"],
            )
        },
        f"{PREFIX}/providers:refresh": {
            "post": _refresh("refresh_all", "Refresh every refreshable provider"),
        },
        f"{PREFIX}/providers:refresh_oauth": {
            "post": _refresh("refresh_oauth", "Refresh only the managed_oauth providers"),
        },
        f"{PREFIX}/{{resource}}": {
            "post": _refresh(
                "collection_action",
                "`providers:<action>`: refresh and refresh_oauth (as above); any other action answers 400 "
                "unknown_action, any other resource 404 not_found",
                "BadRequest",
                "NotFound",
                parameters=[_path_param("resource", "`providers:<action>`, URL-encoded", "providers:refresh")],
            ),
        },
        f"{PREFIX}/providers/{{provider_id}}": {
            "post": _refresh(
                "provider_action",
                "`<id>:refresh` refreshes one provider; split on the last colon after URL-decoding. Another action "
                "(or none) answers 400 unknown_action, an unknown id 404 provider_not_found",
                "BadRequest",
                "NotFound",
                parameters=[_path_param("provider_id", "`<provider id>:refresh`, URL-encoded", "openai:refresh")],
            ),
        },
        f"{PREFIX}/providers/{{provider_id}}/refresh": {
            "post": _refresh(
                "refresh_provider",
                "Refresh one provider (alias of `<id>:refresh`); an unknown id answers 404 provider_not_found",
                "NotFound",
                parameters=[provider_ref],
            ),
        },
    }


def _build() -> dict[str, Any]:
    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "model-catalog",
            "version": "1",
            "description": (
                "One catalog of the models every configured AI provider offers. Every route but the health "
                "check, this document and the web page needs `Authorization: Bearer <token>`. Errors have the "
                'body `{"error": {"code": "<snake_case>", "message": "<text>"}}`. Change events are pushed '
                "over a WebSocket (see `GET /api/v1/client-config`)."
            ),
        },
        "tags": [
            {"name": "catalog", "description": "Providers and models"},
            {"name": "refresh", "description": "Refreshing the catalog from the providers"},
            {"name": "service", "description": "Health, client settings, this document"},
            {"name": "web", "description": "The web page"},
        ],
        # Relative to this document's own URL (…/api/v1/openapi.json), so it also holds behind an API Gateway
        # stage prefix (https://host/<stage>/api/v1/…) without the service knowing its public URL.
        "servers": [{"url": "../..", "description": "the service that serves this document"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the API token (MODEL_CATALOG_API_TOKEN, or the deployment's secret)",
                }
            },
        },
    }
