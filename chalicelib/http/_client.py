"""The client: ``HttpClient`` (one per refresh run: the session and the policies) and ``ProviderHttp`` (one
provider's fetch: the request loop, retries, redirects, body limits and the classification of failures)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ReadTimeoutError

from chalicelib.errors import ProviderError
from chalicelib.http._guard import (
    UnsafeUrlError,
    UrlGuard,
    _current,
    _PeerRefusedError,
    _UnresolvableHostError,
    _Watch,
    new_session,
)
from chalicelib.http._reasons import (
    _causes,
    _error_codes,
    _Failure,
    _looks_like_html,
    _looks_like_rejected_key,
    _never_sent,
    _parse_json,
    _short_cause,
    _size,
    _status_text,
    _try_json,
    provider_message,
)
from chalicelib.http._redact import Redactor, display_url
from chalicelib.http._retry import RetryPolicy, parse_retry_after
from chalicelib.logs import get_logger

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# Answers above this are read and processed one at a time per run (``HttpClient.large_answers``): concurrent
# fetches then hold at most one large answer in memory, plus small ones (docs/benchmarks.md, "Memory").
LARGE_ANSWER_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Header names that carry credentials; dropped when a redirect leaves the origin.
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-goog-api-key", "api-key"}
)
_ERROR_BODY_LIMIT = 64 * 1024  # how much of an error body is read to find the provider's message

_log = get_logger("http")


@dataclass(frozen=True)
class JsonResponse:
    status: int
    headers: Mapping[str, str]
    data: Any
    url: str


AuthKind = str  # "api_key" | "oauth" | "none"


# Connections idle longer than this are not reused: providers close idle keep-alive connections after a while (5 s
# to a few minutes), and a request written into one they have just closed fails.
KEPT_SESSION_IDLE_S = 30.0


class KeptSession:
    """One provider session lent to one refresh run after another, so that a run reuses the connections the last
    one left open instead of connecting (and, deployed, shaking hands over TLS) to every provider again. A session
    idle for more than ``idle_s`` is closed rather than lent. Thread-safe: runs may overlap (one waits for the lock)."""

    def __init__(
        self, pool_size: int, idle_s: float = KEPT_SESSION_IDLE_S, clock: Callable[[], float] = time.monotonic
    ):
        self._pool_size = pool_size
        self._idle_s = idle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._lent = 0
        self._idle_since = 0.0

    def lend(self) -> requests.Session:
        with self._lock:
            stale = self._lent == 0 and self._clock() - self._idle_since > self._idle_s
            if self._session is not None and stale:
                self._session.close()
                self._session = None
            if self._session is None:
                self._session = new_session(self._pool_size)
            self._lent += 1
            return self._session

    def give_back(self) -> None:
        with self._lock:
            self._lent -= 1
            self._idle_since = self._clock()


class HttpClient:
    """One per refresh run: the session (its own, or one lent to it) and the policies. Thread-safe; one
    ``ProviderHttp`` per fetch."""

    def __init__(
        self,
        guard: UrlGuard,
        *,
        session: requests.Session | None = None,
        pool_size: int = 16,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ):
        self.guard = guard
        self._owns_session = session is None  # a session given to it is not its to close
        self.session = session or new_session(pool_size)
        self.max_body_bytes = max_body_bytes
        self.retry = retry
        self.sleep = sleep
        self.clock = clock
        self.wall_clock = wall_clock
        self.rng = rng
        # One large answer at a time: taken by a fetch whose answer grows past LARGE_ANSWER_BYTES, held until the
        # fetch is done with it (``ProviderHttp.finish``). A fetch holds it at most once, so no fetch waits for
        # another while holding it: no deadlock; a wait is bounded by the fetch's deadline.
        self.large_answers = threading.BoundedSemaphore(1)

    def for_provider(
        self,
        provider_id: str,
        *,
        deadline: float,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        redactor: Redactor | None = None,
        headers: Mapping[str, str] | None = None,
        auth: AuthKind = "none",
        credential_env: str | None = None,
        max_body_bytes: int | None = None,
        limit_hint: str = "",
    ) -> ProviderHttp:
        """``max_body_bytes``: this provider's body limit (default: the client's); ``limit_hint``: what a reason
        naming that limit adds (how to raise it)."""
        return ProviderHttp(
            self,
            provider_id,
            deadline=deadline,
            timeout_s=timeout_s,
            redactor=redactor or Redactor(),
            headers=dict(headers or {}),
            auth=auth,
            credential_env=credential_env,
            max_body_bytes=max_body_bytes,
            limit_hint=limit_hint,
        )

    def close(self) -> None:
        if self._owns_session:
            self.session.close()


@dataclass
class ProviderHttp:
    """HTTP bound to one provider's fetch. Adapters call ``get_json``; OAuth calls ``post_form``."""

    client: HttpClient
    provider_id: str
    deadline: float
    timeout_s: float
    redactor: Redactor
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    auth: AuthKind = "none"
    credential_env: str | None = None
    max_body_bytes: int | None = None  # this provider's body limit (None: the client's)
    limit_hint: str = ""  # added to a reason naming the body limit
    requests_made: int = 0
    started: float = field(default=0.0)
    holds_large_answer: bool = False

    def __post_init__(self) -> None:
        self.started = self.client.clock()

    def finish(self) -> None:
        """The fetch is done with its answers (its models are records now): let the next large answer in."""
        if self.holds_large_answer:
            self.holds_large_answer = False
            self.client.large_answers.release()

    # -- public API ------------------------------------------------------------------------------

    def get_json(
        self,
        url: str,
        *,
        expect: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        on_error: Callable[[int, Any], None] | None = None,
        members: bool = False,
    ) -> Any:
        """GET ``url`` and return its parsed JSON. ``expect`` names the shape for error reasons
        ("a JSON object with `data`"). Any failure raises ``ProviderError``. With ``members``, a JSON object comes
        as ``JsonMembers``, parsed member by member as the caller reads them (an answer of tens of megabytes is then
        never held whole as Python objects)."""
        return self.request_json(
            "GET", url, expect=expect, params=params, headers=headers, on_error=on_error, members=members
        ).data

    def post_form(
        self,
        url: str,
        form: Mapping[str, str],
        *,
        expect: str,
        headers: Mapping[str, str] | None = None,
        on_error: Callable[[int, Any], None] | None = None,
    ) -> JsonResponse:
        """POST an urlencoded form (OAuth token requests). Not retried once the request may have reached
        the server (a refresh token must not be spent twice by us), and redirects are not followed."""
        return self.request_json("POST", url, expect=expect, data=dict(form), headers=headers, on_error=on_error)

    def redact(self, text: str) -> str:
        return self.redactor(text)

    def log(self, level: int, message: str, **fields: Any) -> None:
        """A structured log line for this provider, every string redacted."""
        clean = {k: self.redactor(v) if isinstance(v, str) else v for k, v in fields.items()}
        _log.log(level, self.redactor(message), extra={"provider_id": self.provider_id, **clean})

    # -- the request loop --------------------------------------------------------------------------

    def request_json(
        self,
        method: str,
        url: str,
        *,
        expect: str,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        on_error: Callable[[int, Any], None] | None = None,
        members: bool = False,
    ) -> JsonResponse:
        policy = self.client.retry
        # The provider's configured `headers` win over adapter defaults (e.g. another anthropic-version),
        # but not over the credentials the adapter set from api_key_env / the OAuth token.
        merged = CaseInsensitiveDict(headers or {})
        merged.update(self.headers)
        for name, value in (headers or {}).items():
            if name.lower() in _CREDENTIAL_HEADERS:
                merged[name] = value
        attempt = 0
        while True:
            attempt += 1
            try:
                failure = self._attempt(method, url, params, data, dict(merged), expect, on_error, members)
            except ProviderError as exc:
                raise ProviderError(self.redactor(exc.reason)) from None
            if isinstance(failure, JsonResponse):
                return failure
            if not failure.retryable:
                raise ProviderError(self.redactor(failure.reason()))
            if failure.retry_after is not None and failure.retry_after > policy.retry_after_cap_s:
                raise ProviderError(
                    self.redactor(failure.reason(f"; the provider asks to wait {failure.retry_after:.0f} s"))
                )
            if attempt >= policy.max_attempts:
                raise ProviderError(self.redactor(failure.reason(f" after {attempt} attempts")))
            wait = failure.retry_after if failure.retry_after is not None else policy.backoff(attempt, self.client.rng)
            remaining = self.deadline - self.client.clock()
            if wait >= remaining - 0.05:
                still = "limited" if failure.rate_limited else "failing"
                raise ProviderError(self.redactor(failure.reason(f" and still {still} at the deadline")))
            self.log(
                logging.WARNING,
                "provider request failed; retrying",
                url=display_url(url),
                attempt=attempt,
                wait_s=round(wait, 3),
                error=failure.reason(),
            )
            self.client.sleep(wait)

    def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        data: Mapping[str, str] | None,
        headers: dict[str, str],
        expect: str,
        on_error: Callable[[int, Any], None] | None,
        members: bool = False,
    ) -> JsonResponse | _Failure:
        clock = self.client.clock
        current_url, current_params, current_headers = url, params, dict(headers)
        for hop in range(MAX_REDIRECTS + 1):
            try:
                self.client.guard.check_url(current_url)
            except UnsafeUrlError as exc:
                prefix = f"the provider redirected to {display_url(current_url)}, which is refused: " if hop else ""
                return _Failure(f"{prefix}{exc}")
            except _UnresolvableHostError as exc:
                return _Failure(str(exc), retryable=True)
            remaining = self.deadline - clock()
            if remaining <= 0:
                return _Failure(self._deadline_reason())
            per_request = min(self.timeout_s, remaining)
            host = urlsplit(current_url).hostname or ""
            watch = _Watch(self.client.guard, host)
            watch.start(remaining)
            _current.watch = watch
            response: requests.Response | None = None
            try:
                self.requests_made += 1
                response = self.client.session.request(
                    method,
                    current_url,
                    params=current_params,
                    data=data,
                    headers=current_headers,
                    timeout=(per_request, per_request),
                    allow_redirects=False,
                    stream=True,
                )
                if response.status_code in _REDIRECT_STATUSES and response.headers.get("location"):
                    target = urljoin(response.url, response.headers["location"])
                    if method != "GET":
                        return _Failure(
                            f"the endpoint {display_url(current_url)} redirected (HTTP {response.status_code}) "
                            f"to {display_url(target)}; configure the final URL"
                        )
                    if _origin(target) != _origin(current_url):
                        current_headers = self._without_credentials(current_headers)
                    self.log(logging.INFO, "following redirect", url=display_url(target), hop=hop + 1)
                    current_url, current_params = target, None
                    continue
                return self._read(response, method, expect, on_error, watch, members)
            except _PeerRefusedError as exc:
                return _Failure(str(exc))
            except ProviderError:
                raise
            except requests.exceptions.SSLError as exc:
                return _Failure(f"TLS error talking to {host}: {_short_cause(exc)}")
            except requests.exceptions.ConnectTimeout:
                if watch.fired or per_request < self.timeout_s:
                    return _Failure(self._deadline_reason())
                return _Failure(f"could not connect to {host} within {per_request:.1f} s", retryable=True)
            except requests.exceptions.ReadTimeout:
                if watch.fired or per_request < self.timeout_s:
                    return _Failure(self._deadline_reason())
                return _Failure(f"timed out after {per_request:.1f} s", retryable=method == "GET")
            except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                if watch.fired:
                    return _Failure(self._deadline_reason())
                cause = _short_cause(exc)
                unsent = _never_sent(exc)
                return _Failure(f"could not reach {host}: {cause}", retryable=unsent or method == "GET")
            except requests.exceptions.RequestException as exc:
                if watch.fired:
                    return _Failure(self._deadline_reason())
                return _Failure(f"request to {host} failed: {_short_cause(exc)}")
            finally:
                watch.cancel()
                _current.watch = None
                if response is not None:
                    response.close()
        return _Failure(f"too many redirects (more than {MAX_REDIRECTS}) starting at {display_url(url)}")

    def _read(
        self,
        response: requests.Response,
        method: str,
        expect: str,
        on_error: Callable[[int, Any], None] | None,
        watch: _Watch,
        members: bool = False,
    ) -> JsonResponse | _Failure:
        status = response.status_code
        most = self.max_body_bytes or self.client.max_body_bytes
        limit = most if status < 400 else min(most, _ERROR_BODY_LIMIT)
        body, _ = self._read_body(response, limit, watch, allow_truncate=status >= 400)
        if status >= 400:
            data = _try_json(body)
            if on_error is not None:
                on_error(status, data)
            return self._classify(status, response.headers, data, body, method)
        if status >= 300 or status == 204:
            return _Failure(f"expected {expect}, got {_status_text(status)} with no usable body")
        content_type = response.headers.get("content-type", "")
        parsed = _parse_json(body, content_type, expect, members)
        if isinstance(parsed, _Failure):
            return parsed
        return JsonResponse(status=status, headers=dict(response.headers), data=parsed, url=response.url)

    def _read_body(
        self, response: requests.Response, limit: int, watch: _Watch, *, allow_truncate: bool
    ) -> tuple[bytearray, bool]:
        """The body in one buffer (never a list of chunks joined into a second copy), at most ``limit`` bytes."""
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit and not allow_truncate:
            raise ProviderError(
                f"the response is larger than the {_size(limit)} limit ({_size(int(declared))} declared)"
                f"{self.limit_hint}"
            )
        body = bytearray()
        try:
            for chunk in response.iter_content(chunk_size=64 * 1024):
                if len(body) + len(chunk) > limit:
                    if allow_truncate:
                        body += chunk[: limit - len(body)]
                        return body, True
                    raise ProviderError(f"the response is larger than the {_size(limit)} limit{self.limit_hint}")
                if len(body) + len(chunk) > LARGE_ANSWER_BYTES and not allow_truncate:
                    self._take_large_answer_slot(watch)
                body += chunk
                if watch.fired:
                    break
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            if watch.fired:
                raise ProviderError(self._deadline_reason()) from None
            if any(isinstance(c, (ReadTimeoutError, TimeoutError)) for c in _causes(exc)):
                # requests reports a read timeout inside the body as a ConnectionError; classify it as one.
                raise requests.exceptions.ReadTimeout() from None
            raise
        if watch.fired:
            raise ProviderError(self._deadline_reason())
        return body, False

    def _take_large_answer_slot(self, watch: _Watch) -> None:
        if self.holds_large_answer:
            return
        remaining = self.deadline - self.client.clock()
        if remaining <= 0 or not self.client.large_answers.acquire(timeout=remaining):
            raise ProviderError(
                f"timed out after {self.client.clock() - self.started:.1f} s waiting to read its answer: answers "
                f"over {_size(LARGE_ANSWER_BYTES)} are read one at a time to bound memory, and another provider's "
                "large answer was being processed"
            )
        self.holds_large_answer = True

    def _classify(self, status: int, headers: Mapping[str, str], data: Any, body: bytes, method: str) -> _Failure:
        message = provider_message(data)
        if message is None and body and _looks_like_html(body, headers.get("content-type", "")):
            message = "the provider answered with an HTML page"
        codes = _error_codes(data)
        policy = self.client.retry
        if status == 402:
            return _Failure(f"insufficient balance (HTTP {status})", message)
        if status == 429 and codes & {"insufficient_quota", "billing_hard_limit_reached"}:
            return _Failure(f"quota exhausted (HTTP {status})", message)
        if _looks_like_rejected_key(status, data, message):
            return _Failure(self._auth_reason(status), message)
        if policy.should_retry(status):
            retry_after = parse_retry_after(headers, data, self.client.wall_clock())
            if status == 429:
                return _Failure(f"rate limited (HTTP {status})", message, True, retry_after, rate_limited=True)
            if status == 529 or "overloaded_error" in codes:
                return _Failure(f"the provider is overloaded (HTTP {status})", message, True, retry_after)
            head = f"the provider failed ({_status_text(status)})"
            # A POST that reached the server may have been processed: not retried (see post_form).
            return _Failure(head, message, method == "GET" or status in (408, 429, 503), retry_after)
        if status == 404:
            return _Failure("not found (HTTP 404); check the provider URL", message)
        return _Failure(f"the provider refused the request ({_status_text(status)})", message)

    def _auth_reason(self, status: int) -> str:
        if self.auth == "oauth":
            return f"the access token was rejected (HTTP {status})"
        if self.auth == "api_key":
            hint = f"; check {self.credential_env}" if self.credential_env else ""
            return f"the API key was rejected (HTTP {status}{hint})"
        return f"the provider requires an API key (HTTP {status}; set api_key_env)"

    def _deadline_reason(self) -> str:
        return f"timed out after {self.client.clock() - self.started:.1f} s (the refresh deadline)"

    def _without_credentials(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {
            k: v
            for k, v in headers.items()
            if k.lower() not in _CREDENTIAL_HEADERS and not self.redactor.contains_secret(v)
        }


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port
