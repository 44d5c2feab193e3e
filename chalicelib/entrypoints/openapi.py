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
    schemas.update(_webhook_schemas())
    _closed(schemas)
    schemas["WebhookCreate"]["required"] = ["url"]
    schemas["ModelList"]["required"] = ["revision", "models"]  # next_cursor comes only with `limit`
    # Only a result too big to store or send whole carries it (its id lists were cut): clients refetch.
    schemas["RefreshResult"]["properties"]["truncated"] = {"type": "boolean", "const": True}
    return schemas


def _webhook_schemas() -> dict[str, Any]:
    """docs/reference.md §9 (the service builds these shapes in chalicelib/webhook_service.py)."""
    nullable_string = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    count = {"type": "integer", "minimum": 0}
    webhook = {
        "id": {"type": "string", "pattern": "^wh_[0-9a-f]+$"},
        "url": {"type": "string"},
        "description": nullable_string,
        "provider_ids": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
                         "description": "only events that change one of these providers; null: every event"},
        "enabled": {"type": "boolean", "description": "false once the endpoint answered 410 or kept failing"},
        "created_at": {"type": "string", "description": "ISO-8601 date-time (UTC)"},
        "deliveries": {
            "type": "object",
            "description": "messages delivered (replays count again), given up on, and waiting to be delivered",
            "properties": {"succeeded": count, "failed": count, "pending": count},
        },
        "last_error": {**nullable_string, "description": "the last failed attempt's error; null after a delivery"},
        "failing_since": {**nullable_string, "description": "(extension) when attempts started failing, or null"},
        "disabled_reason": {**nullable_string, "description": "(extension) why the endpoint was disabled, or null"},
    }
    return {
        "Webhook": {"title": "Webhook", "type": "object", "properties": webhook},
        "WebhookWithSecret": {
            "title": "WebhookWithSecret",
            "type": "object",
            "properties": {**webhook, "secret": {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/=]+$",
                                                 "description": "shown only here"}},
        },
        "WebhookList": {"title": "WebhookList", "type": "object",
                        "properties": {"webhooks": {"type": "array", "items": {"$ref": REF.format(model="Webhook")}}}},
        "WebhookCreate": {
            "title": "WebhookCreate",
            "type": "object",
            "properties": {
                "url": {"type": "string", "minLength": 1, "maxLength": 2048,
                        "description": "https:// to a public address (http and private addresses only where "
                                       "MODEL_CATALOG_ALLOW_PRIVATE_URLS=1)"},
                "description": {**nullable_string, "maxLength": 1000},
                "provider_ids": {"anyOf": [{"type": "array", "minItems": 1, "maxItems": 100,
                                            "items": {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"}},
                                           {"type": "null"}]},
            },
        },
        "WebhookAttempts": {
            "title": "WebhookAttempts",
            "type": "object",
            "properties": {
                "attempts": {
                    "type": "array",
                    "description": "newest first, at least the last 100",
                    "items": {
                        "type": "object",
                        "properties": {
                            "message_id": {"type": "string", "description": "the webhook-id: msg_<epoch>_<seq>"},
                            "seq": {"type": "integer"},
                            "attempt": {"type": "integer", "minimum": 1},
                            "status_code": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                            "error": nullable_string,
                            "at": {"type": "string", "description": "ISO-8601 date-time (UTC)"},
                        },
                    },
                }
            },
        },
        "WebhookReplay": {"title": "WebhookReplay", "type": "object",
                          "properties": {"since": {"type": "integer", "minimum": 0}}},
        "WebhookReplayAccepted": {
            "title": "WebhookReplayAccepted",
            "type": "object",
            "properties": {"replayed": count, "message_ids": {"type": "array", "items": {"type": "string"}}},
        },
    }


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
        "WebhookBadRequest": _error("The body is not what the route takes, or the webhook URL may not be used.",
                                    ["invalid_request", "invalid_webhook_url"]),
        "WebhookNotFound": _error("No webhook with that id.", ["webhook_not_found"]),
        "WebhookDisabled": _error("The webhook is disabled (it answered 410, or kept failing).", ["webhook_disabled"]),
    }


def _use(*names: str) -> dict[str, Any]:
    status = {
        "BadRequest": "400",
        "Unauthorized": "401",
        "NotFound": "404",
        "RefreshInProgress": "409",
        "InternalError": "500",
        "Unavailable": "503",
        "WebhookBadRequest": "400",
        "WebhookNotFound": "404",
        "WebhookDisabled": "409",
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


_ERROR_ORDER = ["BadRequest", "WebhookBadRequest", "Unauthorized", "NotFound", "WebhookNotFound", "RefreshInProgress",
                "WebhookDisabled", "InternalError", "Unavailable"]


def _admin(operation_id: str, summary: str, status: str, ok: dict[str, Any], *errors: str, **extra: Any) -> dict:
    """A webhook operation (scope `admin`) answering ``status`` on success."""
    operation = _protected(operation_id, summary, ok, *errors, tags=["webhooks"], **extra)
    operation["responses"] = {status: operation["responses"].pop("200"), **operation["responses"]}
    return operation


def _webhook_paths() -> dict[str, Any]:
    webhook_ref = _path_param("webhook_id", "a webhook id", "wh_0123456789abcdef0123")
    body = {"required": True, "content": _json(_ref("WebhookCreate"))}
    return {
        f"{PREFIX}/webhooks": {
            "post": _admin("create_webhook", "Add a webhook endpoint; the answer shows its secret, once", "201",
                           {"description": "The endpoint and its secret.", "content": _json(_ref("WebhookWithSecret"))},
                           "WebhookBadRequest", requestBody=body),
            "get": _admin("list_webhooks", "Every webhook endpoint, with its delivery counts and health", "200",
                          {"description": "The endpoints.", "content": _json(_ref("WebhookList"))}),
        },
        f"{PREFIX}/webhooks/{{webhook_id}}": {
            "get": _admin("get_webhook", "One webhook endpoint", "200",
                          {"description": "The endpoint.", "content": _json(_ref("Webhook"))},
                          "WebhookNotFound", parameters=[webhook_ref]),
            "delete": _admin("delete_webhook", "Remove a webhook endpoint (its pending deliveries go with it)", "204",
                             {"description": "Removed."}, "WebhookNotFound", parameters=[webhook_ref]),
        },
        f"{PREFIX}/webhooks/{{webhook_id}}/attempts": {
            "get": _admin("webhook_attempts", "The endpoint's delivery attempts, newest first (at least 100)", "200",
                          {"description": "The attempts.", "content": _json(_ref("WebhookAttempts"))},
                          "WebhookNotFound", parameters=[webhook_ref]),
        },
        f"{PREFIX}/webhooks/{{webhook_id}}/replay": {
            "post": _admin("replay_webhook", "Deliver again every event of the current epoch after seq `since`", "202",
                           {"description": "The messages queued for delivery.",
                            "content": _json(_ref("WebhookReplayAccepted"))},
                           "WebhookBadRequest", "WebhookNotFound", "WebhookDisabled", parameters=[webhook_ref],
                           requestBody={"required": True, "content": _json(_ref("WebhookReplay"))}),
        },
    }


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
            {"name": "webhooks", "description": "Standard Webhooks endpoints (admin scope)"},
        ],
        # Relative to this document's own URL (…/api/v1/openapi.json), so it also holds behind an API Gateway
        # stage prefix (https://host/<stage>/api/v1/…) without the service knowing its public URL.
        "servers": [{"url": "../..", "description": "the service that serves this document"}],
        "security": [{"bearer": []}],
        "paths": {**_paths(), **_webhook_paths()},
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
