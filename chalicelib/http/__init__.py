"""The HTTP layer every provider adapter uses (being split into private modules; see ``_client``)."""

from chalicelib.http._client import (
    DEFAULT_MAX_BODY_BYTES,
    HttpClient,
    JsonResponse,
    ProviderHttp,
    Redactor,
    RetryPolicy,
    UnsafeUrlError,
    UrlGuard,
    describe_json,
    parse_retry_after,
    provider_message,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "HttpClient",
    "JsonResponse",
    "ProviderHttp",
    "Redactor",
    "RetryPolicy",
    "UnsafeUrlError",
    "UrlGuard",
    "describe_json",
    "parse_retry_after",
    "provider_message",
]
