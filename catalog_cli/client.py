"""The CLI's HTTP side: ``ApiClient``, the errors that stop a command, and the exit codes they map to."""

from __future__ import annotations

from typing import Any

import requests

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "MODEL_CATALOG_URL"
TOKEN_ENV = "MODEL_CATALOG_API_TOKEN"

READ_TIMEOUT_S = 15.0
# A manual refresh may wait for a running one (lock wait) and then run its own (run deadline).
REFRESH_TIMEOUT_S = 60.0


class CliError(Exception):
    """Stops the command: ``message`` goes to stderr, ``exit_code`` to the shell; ``status``: the HTTP status the
    service answered, if that is what went wrong."""

    def __init__(self, message: str, exit_code: int, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status


class RefreshBusyError(CliError):
    """409 ``refresh_in_progress``: another refresh holds the lock."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message, EXIT_FAILED)
        self.retry_after_s = retry_after_s


class ApiClient:
    def __init__(self, base_url: str, token: str, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._session = session or requests.Session()

    @property
    def token(self) -> str:
        return self._token

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """``params`` values may be lists (a repeated query parameter)."""
        return self._request("GET", path, params=params, timeout=READ_TIMEOUT_S)

    def post(self, path: str, body: Any = None) -> Any:
        return self._request("POST", path, params=None, timeout=REFRESH_TIMEOUT_S, body=body)

    def delete(self, path: str) -> Any:
        """``None`` for a ``204 No Content``."""
        return self._request("DELETE", path, params=None, timeout=READ_TIMEOUT_S)

    def _request(
        self, method: str, path: str, params: dict[str, Any] | None, timeout: float, body: Any = None
    ) -> Any:
        url = f"{self.base_url}/api/v1{path}"
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                json=body,
                timeout=(5.0, timeout),
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise CliError(f"cannot reach the service at {self.base_url}: {_reason(exc)}", EXIT_UNREACHABLE) from None
        except requests.RequestException as exc:
            raise CliError(f"bad service URL {self.base_url!r}: {short_error(exc)}", EXIT_USAGE) from None
        if response.status_code == 204:
            return None
        if response.status_code < 400:
            try:
                return response.json()
            except ValueError:
                raise CliError(
                    f"{method} {path}: the service answered HTTP {response.status_code} with a body that is not JSON;"
                    f" is {self.base_url} the model-catalog API?",
                    EXIT_FAILED,
                ) from None
        raise _http_error(method, path, response)


def _http_error(method: str, path: str, response: requests.Response) -> CliError:
    status = response.status_code
    code, message = f"http_{status}", response.reason or "request failed"
    try:
        error = response.json().get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or code)
            message = str(error.get("message") or message)
    except (ValueError, AttributeError):
        pass
    text = f"{message} (HTTP {status} {code})"
    if status == 401:
        return CliError(f"{text}; check --token or {TOKEN_ENV}", EXIT_USAGE, status)
    if status == 403:
        return CliError(f"{text}; use a token with a larger scope", EXIT_USAGE, status)
    if status == 409 and code == "refresh_in_progress":
        try:
            retry_after = float(response.headers.get("Retry-After", "2"))
        except ValueError:
            retry_after = 2.0
        return RefreshBusyError(text, retry_after)
    if status in (400, 404, 405, 422):
        return CliError(text, EXIT_USAGE, status)
    if status in (502, 503, 504):
        return CliError(f"{method} {path}: the service is unavailable: {text}", EXIT_UNREACHABLE, status)
    return CliError(text, EXIT_FAILED, status)


def _reason(exc: BaseException) -> str:
    """The innermost cause ("Connection refused", "timed out"), not urllib3's nested repr."""
    seen = exc
    while seen.__context__ is not None or seen.__cause__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    for candidate in (seen, exc):
        errno_text = getattr(candidate, "strerror", None)
        if errno_text:
            return str(errno_text)
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return short_error(exc)


def short_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
