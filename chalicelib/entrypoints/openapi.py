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
            "Event": {
                "title": "Event",
                "type": "object",
                "description": "A catalog change: exactly the WebSocket event message (docs/reference.md §3).",
                "properties": {
                    "type": {"type": "string", "enum": ["event.model_catalog.changed"]},
                    "seq": {"type": "integer", "minimum": 1, "description": "grows by 1 per event in an epoch"},
                    "epoch": {"type": "string"},
                    "timestamp": {"type": "string", "description": "ISO-8601 date-time (UTC) of the change"},
                    "payload": {"$ref": REF.format(model="RefreshResult")},
                },
            },
            "ChangeFeed": {
                "title": "ChangeFeed",
                "type": "object",
                "properties": {
                    "epoch": {"type": "string", "description": "the current epoch"},
                    "seq": {"type": "integer", "minimum": 0, "description": "the latest seq of the epoch"},
                    "events": {
                        "type": "array",
                        "items": {"$ref": REF.format(model="Event")},
                        "description": "ascending seq, all after `since` (without `since`: the newest `limit`)",
                    },
                    "has_more": {"type": "boolean", "description": "more events follow: ask again from the last"},
                    "resync_required": {
                        "type": "boolean",
                        "description": "the epoch is not the current one, or the journal no longer holds every "
                        "event after `since`: refetch the catalog and go on from `seq`",
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
    schemas.update(_token_schemas(nullable_string))
    _closed(schemas)
    schemas["WebhookCreate"]["required"] = ["url"]
    schemas["ModelList"]["required"] = ["revision", "models"]  # next_cursor comes only with `limit`
    schemas.update(_export_schemas())
    # Only a result too big to store or send whole carries it (its id lists were cut): clients refetch.
    schemas["RefreshResult"]["properties"]["truncated"] = {"type": "boolean", "const": True}
    # ... and, where lists had to go, their lengths (chalicelib.core.results).
    count = {"type": "integer", "minimum": 0}
    for name in ("changed_count", "unchanged_count", "failed_count"):
        schemas["RefreshResult"]["properties"][name] = count
    for name in ("added_count", "removed_count", "updated_count"):
        schemas["ProviderChange"]["properties"][name] = count
    schemas["Event"]["properties"]["truncated"] = {"type": "boolean", "const": True}
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


SCOPE_NAMES = ["read", "refresh", "admin"]


def _token_schemas(nullable_string: dict[str, Any]) -> dict[str, Any]:
    """Section 7: tokens and the caller's own identity."""
    scope = {"type": "string", "enum": SCOPE_NAMES, "description": "read ⊂ refresh ⊂ admin"}
    created_at = {"type": "string", "description": "ISO-8601 date-time (UTC)"}
    token_id = {"type": "string", "pattern": "^[0-9a-f]{16}$"}
    return {
        "TokenRequest": {
            "title": "TokenRequest",
            "type": "object",
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "\\S"},
                           "scope": scope},
        },
        "NewToken": {
            "title": "NewToken",
            "type": "object",
            "description": "The only answer that carries the token itself.",
            "properties": {"id": token_id, "name": {"type": "string"}, "scope": scope,
                           "token": {"type": "string", "pattern": "^mct_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$"},
                           "created_at": created_at},
        },
        "Token": {
            "title": "Token",
            "type": "object",
            "properties": {"id": token_id, "name": {"type": "string"}, "scope": scope, "created_at": created_at,
                           "last_used_at": {**nullable_string, "description": "ISO-8601 (to the minute), or null"}},
        },
        "TokenList": {
            "title": "TokenList",
            "type": "object",
            "properties": {"tokens": {"type": "array", "items": {"$ref": REF.format(model="Token")}}},
        },
        "Whoami": {
            "title": "Whoami",
            "type": "object",
            "properties": {
                "scope": scope,
                "token_id": {**nullable_string, "description": "null for the configured MODEL_CATALOG_API_TOKEN"},
                "name": nullable_string,
            },
        },
    }


def _export_schemas() -> dict[str, Any]:
    """Section 11: the documents other tools read (their own formats: open to fields they define)."""
    number = {"type": "number", "minimum": 0}
    boolean = {"type": "boolean"}
    strings = {"type": "array", "items": {"type": "string"}}
    return {
        "ModelsDevCatalog": {
            "title": "ModelsDevCatalog",
            "description": "models.dev api.json: providers by id",
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["id", "name", "env", "models"],
                "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"}, "env": strings,
                    "npm": {"type": "string"}, "api": {"type": "string"},
                    "models": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "required": ["id", "name", "attachment", "reasoning", "tool_call", "modalities", "limit"],
                            "properties": {
                                "id": {"type": "string"}, "name": {"type": "string"}, "attachment": boolean,
                                "reasoning": boolean, "tool_call": boolean,
                                "modalities": {"type": "object", "required": ["input", "output"],
                                               "properties": {"input": strings, "output": strings}},
                                "limit": {"type": "object", "required": ["context", "output"],
                                          "properties": {"context": {"type": "integer", "minimum": 0},
                                                         "output": {"type": "integer", "minimum": 0}}},
                                "cost": {"type": "object", "description": "USD per million tokens",
                                         "properties": {name: number for name in
                                                        ("input", "output", "cache_read", "cache_write")}},
                                "status": {"type": "string", "enum": ["deprecated"]},
                            },
                        },
                    },
                },
            },
        },
        "LiteLLMCatalog": {
            "title": "LiteLLMCatalog",
            "description": "LiteLLM model_prices_and_context_window.json: entries by `<provider id>/<model id>`",
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["litellm_provider", "mode", "supports_function_calling", "supports_vision",
                             "supports_reasoning"],
                "properties": {
                    "max_input_tokens": {"type": "integer"}, "max_output_tokens": {"type": "integer"},
                    "max_tokens": {"type": "integer"},
                    **{name: {**number, "description": "USD per token"} for name in (
                        "input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
                        "cache_creation_input_token_cost")},
                    "litellm_provider": {"type": "string"},
                    "mode": {"type": "string", "enum": ["chat", "embedding"]},
                    "supports_function_calling": boolean, "supports_vision": boolean,
                    "supports_reasoning": boolean, "supports_pdf_input": boolean,
                    "deprecation_date": {"type": "string", "description": "YYYY-MM-DD"},
                },
            },
        },
        "OpenAIModelList": {
            "title": "OpenAIModelList",
            "description": "an OpenAI GET /v1/models list",
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"const": "list"},
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "object", "created", "owned_by"],
                        "properties": {"id": {"type": "string"}, "object": {"const": "model"},
                                       "created": {"type": "integer"}, "owned_by": {"type": "string"}},
                    },
                },
            },
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
        "BadRequest": _error(
            "A query parameter or action is not valid, or an unpaged answer would not fit in one response.",
            ["bad_request", "invalid_parameter", "page_required", "unknown_action"],
        ),
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
            ["internal_error", "config_error", "export_too_large"],
        ),
        "Forbidden": _error("The token is valid but its scope is too small for this route.", ["insufficient_scope"]),
        "UrlTokenRefused": _error(
            "Only a `read` token may stand in a URL; this one is a `refresh` or `admin` token.",
            ["token_not_allowed_in_url"],
        ),
        "InvalidRequest": _error("The request body cannot be used.", ["invalid_request"]),
        "TokenNotFound": _error("No token has this id.", ["token_not_found"]),
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
        "Forbidden": "403",
        "UrlTokenRefused": "403",
        "InvalidRequest": "400",
        "TokenNotFound": "404",
    }
    return {status[name]: {"$ref": f"#/components/responses/{name}"} for name in names}


# -- operations ----------------------------------------------------------------------------------------------
def _capabilities() -> tuple[str, ...]:
    from chalicelib.core.domain import CAPABILITIES

    return CAPABILITIES


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


_ERROR_ORDER = ["BadRequest", "InvalidRequest", "WebhookBadRequest", "Unauthorized", "Forbidden", "UrlTokenRefused",
                "NotFound", "TokenNotFound", "WebhookNotFound", "RefreshInProgress", "WebhookDisabled", "InternalError",
                "Unavailable"]


def _admin(operation_id: str, summary: str, status: str, ok: dict[str, Any], *errors: str, **extra: Any) -> dict:
    """A webhook operation (scope `admin`) answering ``status`` on success."""
    operation = _protected(operation_id, summary, ok, "Forbidden", *errors, tags=["webhooks"], **extra)
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
    return _protected(operation_id, summary, ok, "RefreshInProgress", "Forbidden", *errors, tags=["refresh"], **extra)


def _exports() -> dict[str, Any]:
    """Section 11: every export at /export/<name> (bearer) and /feeds/{token}/<name> (a read token in the URL)."""
    from chalicelib.exports import ALIASES, export_paths, route_id

    schemas = {"models.dev/api.json": "ModelsDevCatalog", "litellm.json": "LiteLLMCatalog",
               "openai/models": "OpenAIModelList"}
    header = {"required": True, "schema": {"type": "string"}}
    ok_headers = {"ETag": {**header, "description": "strong; send it back as If-None-Match"},
                  "Cache-Control": header,
                  "X-Catalog-Revision": {**header, "description": "the catalog revision the export was read at"}}
    etag_param = {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
                  "description": "an ETag of an earlier answer: 304 while the export is unchanged"}
    token_param = _path_param("token", "a `read` token (refresh and admin tokens are refused here)", "mct_…")
    atom_headers = {"ETag": ok_headers["ETag"], "Cache-Control": header}
    exports = [(path, name, _json(_ref(schemas[name])), ok_headers) for path, name in export_paths().items()]
    # The change feed of section 8 is an export too (served by the change-feed handler).
    exports.append(("changes.atom", "changes.atom", {"application/atom+xml": {"schema": {"type": "string"}}},
                    atom_headers))
    paths: dict[str, Any] = {}
    for path, name, content, headers in exports:
        responses = {
            "200": {"description": f"The {name} export.", "headers": headers, "content": content},
            "304": {"description": "Unchanged since the ETag given in If-None-Match.",
                    "headers": {"ETag": ok_headers["ETag"]}},
        }
        bearer = _protected(f"export_{route_id(path)}", f"The catalog as {name}", responses["200"],
                            tags=["exports"], parameters=[etag_param])
        bearer["responses"]["304"] = responses["304"]
        paths[f"{PREFIX}/export/{path}"] = {"get": bearer}
        paths[f"{PREFIX}/feeds/{{token}}/{path}"] = {
            "get": {
                "operationId": f"feed_{route_id(path)}",
                "summary": f"The catalog as {name}, for tools that can only be given a URL",
                "tags": ["exports"],
                "security": PUBLIC,  # the token is in the path, not in a header
                "parameters": [token_param, etag_param],
                "responses": {**responses, **_use("Unauthorized", "UrlTokenRefused", "InternalError",
                                                   "Unavailable")},
            }
        }
        if path in ALIASES:
            bearer["summary"] += f" (the same as …/{ALIASES[path]}, which opencode requests)"
    return paths


def _tokens() -> dict[str, Any]:
    """Section 7: the admin routes of tokens, and the caller's own identity."""
    admin = ("Forbidden",)
    create = _protected("create_token", "Issue a token (its value is shown only in this answer)", {},
                        "InvalidRequest", *admin, tags=["tokens"],
                        requestBody={"required": True, "content": _json(_ref("TokenRequest"))})
    create["responses"].pop("200")
    create["responses"] = {"201": {"description": "The new token.", "content": _json(_ref("NewToken"))},
                           **create["responses"]}
    revoke = _protected("revoke_token", "Revoke a token: refused from the next request on", {},
                        "TokenNotFound", *admin, tags=["tokens"],
                        parameters=[_path_param("token_id", "the token's id", "0123456789abcdef")])
    revoke["responses"].pop("200")
    revoke["responses"] = {"204": {"description": "Revoked."}, **revoke["responses"]}
    return {
        f"{PREFIX}/whoami": {
            "get": _protected("whoami", "The caller's scope and token", {
                "description": "Who the bearer token stands for.", "content": _json(_ref("Whoami"))},
                tags=["tokens"]),
        },
        f"{PREFIX}/tokens": {
            "post": create,
            "get": _protected("list_tokens", "Every issued token (never a token value)", {
                "description": "The tokens, oldest first.", "content": _json(_ref("TokenList"))}, *admin,
                tags=["tokens"]),
        },
        f"{PREFIX}/tokens/{{token_id}}": {
            "delete": revoke,
        },
    }


def _query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    # An empty value (`?limit=`) counts as absent, as entrypoints.query_params reads it: allowEmptyValue.
    return {"name": name, "in": "query", "description": description, "schema": schema, "allowEmptyValue": True,
            **extra}


IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "description": "the `ETag` of the copy you hold: `304` with no body while it is current",
    "schema": {"type": "string"},
}


def _cache_headers() -> dict[str, Any]:
    return {
        "ETag": {"description": "strong entity tag of this answer", "required": True, "schema": {"type": "string"}},
        "X-Catalog-Revision": {
            "description": "the catalog revision of this answer",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        },
    }


def _conditional(operation: dict[str, Any], *, revision: bool = True) -> dict[str, Any]:
    """A GET with a strong ETag: `If-None-Match`, the ETag (and revision) headers, and its `304`."""
    headers = _cache_headers() if revision else {"ETag": _cache_headers()["ETag"]}
    operation["parameters"] = [*operation.get("parameters", []), IF_NONE_MATCH]
    operation["responses"]["200"]["headers"] = headers
    operation["responses"] = {
        "200": operation["responses"]["200"],
        "304": {"description": "Your copy (`If-None-Match`) is current; no body.", "headers": headers},
        **{code: answer for code, answer in operation["responses"].items() if code != "200"},
    }
    return operation


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
            "get": _conditional(
                _protected(
                    "list_providers",
                    "Every provider of the config, with its catalog state",
                    {"description": "The providers, in config order.", "content": _json(_ref("ProviderList"))},
                    tags=["catalog"],
                )
            )
        },
        f"{PREFIX}/models": {
            "get": _conditional(
                _protected(
                    "list_models",
                    "The models of the catalog, sorted by provider id then model id; filtered and paged",
                    {
                        "description": "One page of the matching models (all of them without `limit`).",
                        "content": _json(_ref("ModelList")),
                    },
                    "BadRequest",
                    tags=["catalog"],
                    description=(
                        "Every filter must hold. Any other query parameter, a repeated one (but `capability`) or a "
                        "bad value answers 400 invalid_parameter. Without `limit`, an answer of more than 5 MB of "
                        "JSON (about 20,000 models) answers 400 page_required: ask for pages."
                    ),
                    parameters=[
                        _query(
                            "provider_id",
                            "only this provider's models; an id not in the catalog answers 400",
                            {"type": "string", "maxLength": 200},
                            example="openai",
                        ),
                        _query(
                            "capability",
                            "repeatable: only models that have every capability given",
                            {"type": "array", "items": {"type": "string", "enum": list(_capabilities())}},
                            style="form",
                            explode=True,
                        ),
                        _query(
                            "min_context",
                            "only models whose known `context_length` is at least this",
                            {"type": "integer", "minimum": 0, "maximum": 10**12},
                            example=128000,
                        ),
                        _query(
                            "q",
                            "case-insensitive substring of `id` or `display_name`",
                            {"type": "string", "maxLength": 200},
                            example="gpt",
                        ),
                        _query(
                            "status",
                            "only models with this status (a model without one is active)",
                            {"type": "string", "enum": ["active", "deprecated"]},
                        ),
                        _query(
                            "limit",
                            "page size; the answer then carries `next_cursor`",
                            {"type": "integer", "minimum": 1, "maximum": 5_000},
                            example=100,
                        ),
                        _query(
                            "cursor",
                            "`next_cursor` of the previous page; anything else answers 400",
                            {"type": "string", "maxLength": 2_000},
                        ),
                    ],
                )
            )
        },
        f"{PREFIX}/changes": {
            "get": _protected(
                "list_changes",
                "The change events after a cursor (the WebSocket events, without a socket)",
                {"description": "A page of events.", "content": _json(_ref("ChangeFeed"))},
                "BadRequest",
                tags=["changes"],
                description=(
                    "With `since` (and the `epoch` it belongs to): the events with `seq > since`, oldest first. "
                    "Without `since`: the newest `limit` events. Any other query parameter or a bad value answers "
                    "400 invalid_parameter."
                ),
                parameters=[
                    _query("since", "the last seq you have; needs `epoch`", {"type": "integer", "minimum": 0,
                                                                             "maximum": 2**53 - 1}),
                    _query("epoch", "the epoch `since` belongs to", {"type": "string", "maxLength": 128}),
                    _query("limit", "at most this many events (default 100)",
                           {"type": "integer", "minimum": 1, "maximum": 500}),
                ],
            )
        },
        f"{PREFIX}/changes.atom": {
            "get": _conditional(
                _protected(
                    "changes_atom",
                    "The newest 50 change events as an Atom 1.0 feed, newest first",
                    {
                        "description": "The Atom document.",
                        "content": {"application/atom+xml": {"schema": {"type": "string"}}},
                    },
                    tags=["changes"],
                ),
                revision=False,
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
        **_tokens(),
        **_exports(),
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
            {"name": "changes", "description": "The change events as a feed (JSON with a cursor, Atom)"},
            {"name": "service", "description": "Health, client settings, this document"},
            {"name": "web", "description": "The web page"},
            {"name": "webhooks", "description": "Standard Webhooks endpoints (admin scope)"},
            {"name": "tokens", "description": "Scoped API tokens (admin) and the caller's identity"},
            {"name": "exports", "description": "The catalog in formats other tools read by URL"},
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
