"""The service's exceptions, in one tree. They become HTTP responses only at the edge (``chalicelib.entrypoints``).

::

    CatalogError                 a request cannot be served; ``code``/``status`` are its error envelope
    ├── BadRequest               400 bad_request
    ├── InvalidParameter         400 invalid_parameter: a query parameter that is unknown, repeated or has a bad value
    ├── InvalidRequest           400 invalid_request: a request body that cannot be used (tokens, webhooks)
    ├── TokenNotFound            404 token_not_found
    ├── TokenNotAllowedInUrl     403 token_not_allowed_in_url: only a `read` token may stand in a URL
    ├── ExportTooLarge           500 export_too_large: the export would exceed what one response can carry
    ├── UnknownAction            400 unknown_action
    ├── InvalidWebhookUrl        400 invalid_webhook_url
    ├── ProviderNotFound         404 provider_not_found
    ├── WebhookNotFound          404 webhook_not_found
    ├── WebhookDisabled          409 webhook_disabled
    ├── RouteNotFound            404 not_found
    ├── RefreshInProgress        409 refresh_in_progress (+ Retry-After: the lock holder's lease)
    └── ConcurrentWrite          409 refresh_in_progress (+ Retry-After: 1): another writer won
        ├── LockLost             the fencing token moved on: another run took the lock over
        ├── CatalogChanged       the manifest's revision moved on under this run
        └── SeqCollision         the journal already holds this run's (epoch, seq)
    ConfigError                  the configuration cannot be used (file, key, problem)
    ProviderError                one provider could not be refreshed (``reason`` is user-facing, redacted)
    ConnectionGone               a WebSocket connection is gone (API Gateway's 410)
"""

from __future__ import annotations


class CatalogError(Exception):
    """Base class: ``code`` is the snake_case code of the error envelope, ``status`` its HTTP status."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ProviderNotFound(CatalogError):
    code = "provider_not_found"
    status = 404

    def __init__(self, provider_id: str):
        super().__init__(f"no provider with id {provider_id!r} in the config")


class UnknownAction(CatalogError):
    code = "unknown_action"
    status = 400

    def __init__(self, action: str):
        super().__init__(
            f"unknown action {action!r}; expected one of: refresh, refresh_oauth (POST /providers:<action>)"
        )


class RouteNotFound(CatalogError):
    code = "not_found"
    status = 404


class BadRequest(CatalogError):
    code = "bad_request"
    status = 400


class InvalidParameter(CatalogError):
    """A query parameter the route does not take, one given twice, or a value it cannot use (docs/reference.md §8)."""

    code = "invalid_parameter"
    status = 400

    def __init__(self, name: str, problem: str):
        super().__init__(f"query parameter {name!r}: {problem}")
        self.name = name


class PageRequired(CatalogError):
    """An unpaged ``GET /models`` whose answer would not fit in one response (docs/reference.md §8.4)."""

    code = "page_required"
    status = 400


class InvalidRequest(CatalogError):
    code = "invalid_request"
    status = 400


class TokenNotFound(CatalogError):
    code = "token_not_found"
    status = 404

    def __init__(self, token_id: str):
        super().__init__(f"no token with id {token_id!r}")


class TokenNotAllowedInUrl(CatalogError):
    code = "token_not_allowed_in_url"
    status = 403

    def __init__(self, scope: str):
        super().__init__(
            f"{'an' if scope[:1] in 'aeiou' else 'a'} {scope!r} token must not appear in a URL (URLs end up in access "
            "logs): use a 'read' token here, "
            "or send the token in the Authorization header of /api/v1/export/…"
        )


class ExportTooLarge(CatalogError):
    code = "export_too_large"
    status = 500
class InvalidWebhookUrl(CatalogError):
    code = "invalid_webhook_url"
    status = 400


class WebhookNotFound(CatalogError):
    code = "webhook_not_found"
    status = 404

    def __init__(self, webhook_id: str):
        super().__init__(f"no webhook with id {webhook_id!r}")


class WebhookDisabled(CatalogError):
    code = "webhook_disabled"
    status = 409


class RefreshInProgress(CatalogError):
    code = "refresh_in_progress"
    status = 409

    def __init__(self, retry_after_s: int):
        super().__init__(f"another refresh is running; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class ConcurrentWrite(CatalogError):
    """Another writer won a conditional write of this run: nothing of the run was written."""

    code = "refresh_in_progress"
    status = 409
    retry_after_s = 1


class LockLost(ConcurrentWrite):
    """The fencing token moved on: another run took the lock; this run must not write."""


class CatalogChanged(ConcurrentWrite):
    """The manifest is no longer at the revision this run started from."""


class SeqCollision(ConcurrentWrite):
    """The journal already holds an event with this run's ``(epoch, seq)``."""

    def __init__(self, epoch: str, seq: int):
        super().__init__(f"the event journal already holds seq {seq} of epoch {epoch}; nothing was written")
        self.epoch = epoch
        self.seq = seq


class ConfigError(Exception):
    """The configuration cannot be used. The message names the file, the key and the problem."""


class ProviderError(Exception):
    """A provider could not be refreshed. ``reason`` is user-facing and already redacted."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ConnectionGone(Exception):
    """The WebSocket connection no longer exists (API Gateway answered 410 Gone)."""

    def __init__(self, connection_id: str):
        super().__init__(f"connection {connection_id} is gone")
        self.connection_id = connection_id
