"""Domain errors. They become HTTP responses only at the edge (app.py)."""

from __future__ import annotations


class CatalogError(Exception):
    """Base class: `code` is the snake_case code of the error envelope, `status` its HTTP status."""

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


class RefreshInProgress(CatalogError):
    code = "refresh_in_progress"
    status = 409

    def __init__(self, retry_after_s: int):
        super().__init__(f"another refresh is running; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class LockLost(CatalogError):
    """The fencing token moved on: another run took the lock; this run must not write."""

    code = "refresh_in_progress"
    status = 409


class ConfigError(Exception):
    """The configuration cannot be used. The message names the file, the key and the problem."""


class ProviderError(Exception):
    """A provider could not be refreshed. `reason` is user-facing and already redacted."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
