"""The one HTTP layer every provider adapter uses: bounded, retried, size-capped, redacted and URL-safe.

One ``HttpClient`` per refresh run owns one ``requests.Session`` (connection pooling across providers);
``HttpClient.for_provider`` hands each fetch a ``ProviderHttp`` bound to that provider's timeout, deadline,
credentials and redactor. Guarantees:

- **Deadline.** Connect/read timeouts are ``min(timeout_ms, time left)``; a per-request watchdog shuts the
  socket down when the deadline passes, so a server that trickles headers or body bytes cannot hold a fetch
  past it (a read timeout alone only bounds the gap between two bytes). Retries never sleep past it.
- **Retries.** 408/409/429/5xx and connection errors are retried with exponential backoff and jitter,
  honouring ``Retry-After`` (seconds or HTTP date), ``retry-after-ms`` and Google's ``RetryInfo`` up to
  ``RetryPolicy.retry_after_cap_s``; a longer wait than that fails at once with a reason saying so.
- **Size.** Bodies are streamed and refused beyond ``max_body_bytes`` (32 MB by default) without being
  read whole first (a declared ``Content-Length`` is refused before reading anything).
- **Reasons.** Every failure is a ``ProviderError`` whose reason a user can act on ("the API key was
  rejected (HTTP 401)", "insufficient balance (HTTP 402)", "expected a JSON object with `data`, got HTML")
  and that has gone through the provider's ``Redactor``, as has every log line.
- **URL safety.** Unless private URLs are allowed (the local default), only ``https`` is used, every host
  must resolve to public addresses only, the connected peer is checked again (DNS rebinding), and
  redirects are followed by hand (at most ``MAX_REDIRECTS``), each hop re-checked; credentials are dropped
  when a redirect leaves the origin. POST requests never follow redirects.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import quote, quote_plus, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError

from chalicelib.errors import ProviderError
from chalicelib.logs import get_logger

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_REDIRECTS = 5
USER_AGENT = "model-catalog/1.0 (+https://github.com/model-catalog)"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Header names that carry credentials; dropped when a redirect leaves the origin.
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-goog-api-key", "api-key"}
)
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "fd00:ec2::23")
)
_ERROR_BODY_LIMIT = 64 * 1024  # how much of an error body is read to find the provider's message
_MESSAGE_LIMIT = 200

_log = get_logger("http")


# --------------------------------------------------------------------------------------------- redaction


class Redactor:
    """Removes secrets from text: registered values (raw, URL- and JSON-encoded) and anything shaped like
    ``Bearer <token>``, ``key=<value>`` or ``"refresh_token": "<value>"``. Thread-safe; secrets are added
    as they become known (an access token obtained mid-fetch)."""

    MASK = "[redacted]"
    _PATTERNS = (
        (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), r"\1 [redacted]"),
        (
            re.compile(r"(?i)\b(api[_-]?key|key|access_token|refresh_token|id_token|token|client_secret)=[^&\s\"']+"),
            r"\1=[redacted]",
        ),
        (
            re.compile(r'(?i)"(access_token|refresh_token|id_token|api_key|client_secret)"\s*:\s*"[^"]*"'),
            r'"\1": "[redacted]"',
        ),
    )

    def __init__(self, secrets: Iterable[str | None] = ()):
        self._lock = threading.Lock()
        self._variants: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret:
            return
        variants = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
        with self._lock:
            merged = set(self._variants) | {v for v in variants if v}
            # Longest first, so a secret containing another is removed whole.
            self._variants = sorted(merged, key=len, reverse=True)

    def contains_secret(self, text: str) -> bool:
        return any(v in text for v in self._variants)

    def __call__(self, text: str) -> str:
        for variant in self._variants:
            if variant in text:
                text = text.replace(variant, self.MASK)
        for pattern, replacement in self._PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def display_url(url: str) -> str:
    """A URL fit for reasons and logs: no userinfo, no query string, no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# --------------------------------------------------------------------------------------------- URL safety


class UnsafeUrlError(Exception):
    """A URL or address that the URL policy does not allow. ``str(exc)`` is the user-facing reason."""


class _UnresolvableHostError(Exception):
    pass


Resolver = Callable[..., list]


@dataclass(frozen=True)
class UrlGuard:
    """The URL policy. ``allow_private`` = MODEL_CATALOG_ALLOW_PRIVATE_URLS. ``resolve`` is
    ``socket.getaddrinfo`` (a hook for tests); ``exempt_networks`` are addresses allowed even when private
    ones are not (tests; an operator's single internal gateway)."""

    allow_private: bool
    require_https: bool | None = None
    resolve: Resolver = socket.getaddrinfo
    exempt_networks: tuple[str, ...] = ()

    @property
    def https_only(self) -> bool:
        return (not self.allow_private) if self.require_https is None else self.require_https

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UnsafeUrlError(f"{display_url(url)} is not an http(s) URL")
        if self.https_only and parts.scheme != "https":
            raise UnsafeUrlError(
                f"{display_url(url)} does not use https:// (set MODEL_CATALOG_ALLOW_PRIVATE_URLS=1 to allow http)"
            )
        if self.allow_private:
            return
        host = parts.hostname
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                infos = self.resolve(host, port, 0, socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise _UnresolvableHostError(f"could not resolve the host name {host}") from exc
            addresses = [info[4][0] for info in infos]
        for address in addresses:
            self.check_address(address, host)

    def check_address(self, address: str, host: str | None = None) -> None:
        """Raise ``UnsafeUrlError`` unless ``address`` is a public unicast address (or explicitly exempt)."""
        if self.allow_private:
            return
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in ipaddress.ip_network(net) for net in self.exempt_networks):
            return
        what = _address_problem(ip)
        if what:
            name = f"{host} ({ip})" if host and host != str(ip) else str(ip)
            raise UnsafeUrlError(
                f"{name} is {what}, which provider URLs may not use (set MODEL_CATALOG_ALLOW_PRIVATE_URLS=1 to allow)"
            )


def _address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if ip in _METADATA_ADDRESSES:
        return "the cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified or ip.is_multicast:
        return "a reserved address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return "a reserved address"
    return None


# ---------------------------------------------------------------------- deadline watchdog + peer check

_current = threading.local()


class _Watch:
    """One request's watchdog: at the deadline it shuts the connection's socket down, which wakes a read
    blocked on a slow server (closing alone would not). Also re-checks the connected peer's address."""

    def __init__(self, guard: UrlGuard, host: str):
        self.guard = guard
        self.host = host
        self.fired = False
        self._lock = threading.Lock()
        self._conn: Any = None
        self._sock: socket.socket | None = None
        self._timer: threading.Timer | None = None

    def attach(self, conn: Any, sock: socket.socket | None) -> None:
        with self._lock:
            self._conn = conn
            if sock is not None:
                self._sock = sock
            fired = self.fired
        if fired:
            self._shutdown()

    def check_peer(self, sock: socket.socket) -> None:
        if self.guard.allow_private:
            return
        try:
            peer = sock.getpeername()[0]
        except OSError:
            return
        self.guard.check_address(peer, self.host)

    def start(self, seconds: float) -> None:
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
        self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            sockets = [s for s in (getattr(self._conn, "sock", None), self._sock) if s is not None]
        for sock in sockets:
            try:
                # The plain-socket shutdown: SSLSocket.shutdown would also tear down TLS state that the
                # reading thread is using.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


class _PeerRefusedError(Exception):
    """Raised from inside urllib3 when the connected peer is not allowed (not an OSError: never retried)."""

    def __init__(self, refused: UnsafeUrlError):
        super().__init__(str(refused))
        self.refused = refused


class _WatchedConnectionMixin:
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        watch: _Watch | None = getattr(_current, "watch", None)
        if watch is not None:
            watch.attach(self, sock)
            try:
                watch.check_peer(sock)
            except UnsafeUrlError as exc:
                sock.close()
                raise _PeerRefusedError(exc) from None
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch: _Watch | None = getattr(_current, "watch", None)
        if watch is not None:
            watch.attach(self, getattr(self, "sock", None))
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedConnectionMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def new_session(pool_size: int = 16) -> requests.Session:
    """A session for provider calls: watched connections, no cookies kept, no env proxies or .netrc
    (credentials are set explicitly per provider; nothing from the environment may add or reroute them)."""
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = _WatchedAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    return session


# ------------------------------------------------------------------------------------------ retries


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_cap_s: float = 20.0
    retry_statuses: frozenset[int] = frozenset({408, 409, 429})

    def should_retry(self, status: int) -> bool:
        return status in self.retry_statuses or status >= 500

    def backoff(self, attempt: int, rng: Callable[[], float]) -> float:
        """Exponential backoff with jitter: half fixed, half random, so racing clients spread out."""
        base = min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1)))
        return base * (0.5 + 0.5 * rng())


def parse_retry_after(headers: Mapping[str, str], body: Any = None, now: float | None = None) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, ``Retry-After`` (seconds or HTTP date), or a
    Google ``RetryInfo.retryDelay`` ("12s") in the error body. ``None`` when it says nothing usable."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
            if value >= 0:
                return value
        except ValueError:
            pass
    raw = (lowered.get("retry-after") or "").strip()
    if raw:
        try:
            value = float(raw)
            if value >= 0:
                return value
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                now = time.time() if now is None else now
                return max(0.0, when.timestamp() - now)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        for detail in body["error"].get("details") or []:
            if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
                match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", str(detail.get("retryDelay", "")))
                if match:
                    return float(match.group(1))
    return None


# ------------------------------------------------------------------------------------- error reasons


def describe_json(value: Any) -> str:
    """What a JSON value is, in words ("a JSON array", "a JSON object with keys error, message")."""
    if isinstance(value, dict):
        if not value:
            return "an empty JSON object"
        keys = list(value)[:6]
        more = ", …" if len(value) > 6 else ""
        return "a JSON object with keys " + ", ".join(str(k) for k in keys) + more
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, (int, float)):
        return "a JSON number"
    return "JSON null"


def provider_message(data: Any) -> str | None:
    """The human message inside a provider's error body, whatever its shape (OpenAI/Anthropic/Google
    ``{"error": {"message"}}``, xAI/Ollama/vLLM ``{"error": "..."}``, Mistral ``{"message"}``/``{"detail"}``,
    OAuth ``{"error", "error_description"}``)."""
    if not isinstance(data, dict):
        return None
    message: Any = None
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("error_description")
    elif isinstance(error, str):
        message = data.get("error_description") or error
    if not message:
        message = data.get("message") or data.get("detail") or data.get("error_description")
    if isinstance(message, list):  # FastAPI-style validation details
        message = "; ".join(str(m.get("msg", m)) if isinstance(m, dict) else str(m) for m in message)
    if not isinstance(message, str) or not message.strip():
        return None
    text = " ".join(message.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def _error_codes(data: Any) -> set[str]:
    """Machine-readable codes in an error body (``code``, ``type``, ``status``, Google ``details[].reason``)."""
    codes: set[str] = set()
    if not isinstance(data, dict):
        return codes
    error = data.get("error")
    for source in (data, error if isinstance(error, dict) else {}):
        for key in ("code", "type", "status"):
            if isinstance(source.get(key), str):
                codes.add(source[key].lower())
        for detail in source.get("details") or []:
            if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
                codes.add(detail["reason"].lower())
    return codes


_BAD_KEY_MESSAGE = re.compile(r"(?i)api[ _-]?key.*\b(invalid|incorrect|not valid|wrong|expired)\b|"
                              r"\b(invalid|incorrect)\b.*api[ _-]?key")


def _looks_like_rejected_key(status: int, data: Any, message: str | None) -> bool:
    if status in (401, 403):
        return True
    if status == 400:
        codes = _error_codes(data)
        if "api_key_invalid" in codes or "invalid_api_key" in codes:
            return True
        return bool(message and _BAD_KEY_MESSAGE.search(message))
    return False


def _status_text(status: int) -> str:
    from http import HTTPStatus

    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


@dataclass
class _Failure:
    head: str
    detail: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    rate_limited: bool = False

    def reason(self, suffix: str = "") -> str:
        text = self.head + suffix
        return f"{text}: {self.detail}" if self.detail else text


# --------------------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class JsonResponse:
    status: int
    headers: Mapping[str, str]
    data: Any
    url: str


AuthKind = str  # "api_key" | "oauth" | "none"


class HttpClient:
    """One per refresh run: the shared session and the policies. Thread-safe; one ``ProviderHttp`` per fetch."""

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
        self.session = session or new_session(pool_size)
        self.max_body_bytes = max_body_bytes
        self.retry = retry
        self.sleep = sleep
        self.clock = clock
        self.wall_clock = wall_clock
        self.rng = rng

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
    ) -> ProviderHttp:
        return ProviderHttp(
            self,
            provider_id,
            deadline=deadline,
            timeout_s=timeout_s,
            redactor=redactor or Redactor(),
            headers=dict(headers or {}),
            auth=auth,
            credential_env=credential_env,
        )

    def close(self) -> None:
        self.session.close()


@dataclass
class ProviderHttp:
    """HTTP bound to one provider's fetch. Adapters call ``get_json``; OAuth calls ``post_form``."""

    client: HttpClient
    provider_id: str
    deadline: float
    timeout_s: float
    redactor: Redactor
    headers: dict[str, str] = field(default_factory=dict)
    auth: AuthKind = "none"
    credential_env: str | None = None
    requests_made: int = 0
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.client.clock()

    # -- public API ------------------------------------------------------------------------------

    def get_json(
        self,
        url: str,
        *,
        expect: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        on_error: Callable[[int, Any], None] | None = None,
    ) -> Any:
        """GET ``url`` and return its parsed JSON. ``expect`` names the shape for error reasons
        ("a JSON object with `data`"). Any failure raises ``ProviderError``."""
        return self.request_json("GET", url, expect=expect, params=params, headers=headers, on_error=on_error).data

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
                failure = self._attempt(method, url, params, data, dict(merged), expect, on_error)
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
                return self._read(response, method, expect, on_error, watch)
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
    ) -> JsonResponse | _Failure:
        status = response.status_code
        limit = self.client.max_body_bytes if status < 400 else min(self.client.max_body_bytes, _ERROR_BODY_LIMIT)
        body, _ = self._read_body(response, limit, watch, allow_truncate=status >= 400)
        if status >= 400:
            data = _try_json(body)
            if on_error is not None:
                on_error(status, data)
            return self._classify(status, response.headers, data, body, method)
        if status >= 300 or status == 204:
            return _Failure(f"expected {expect}, got {_status_text(status)} with no usable body")
        content_type = response.headers.get("content-type", "")
        parsed = _parse_json(body, content_type, expect)
        if isinstance(parsed, _Failure):
            return parsed
        return JsonResponse(status=status, headers=dict(response.headers), data=parsed, url=response.url)

    def _read_body(
        self, response: requests.Response, limit: int, watch: _Watch, *, allow_truncate: bool
    ) -> tuple[bytes, bool]:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit and not allow_truncate:
            raise ProviderError(
                f"the response is larger than the {_size(limit)} limit ({_size(int(declared))} declared)"
            )
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_content(chunk_size=64 * 1024):
                total += len(chunk)
                if total > limit:
                    if allow_truncate:
                        chunks.append(chunk[: len(chunk) - (total - limit)])
                        return b"".join(chunks), True
                    raise ProviderError(f"the response is larger than the {_size(limit)} limit")
                chunks.append(chunk)
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
        return b"".join(chunks), False

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


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):g} MB"
    if n >= 1024:
        return f"{n / 1024:g} KB"
    return f"{n} bytes"


def _looks_like_html(body: bytes, content_type: str) -> bool:
    head = body[:512].lstrip().lower()
    return "html" in content_type.lower() or head.startswith(
        (b"<!doctype html", b"<html", b"<head", b"<body", b"<title", b"<!--", b"<h1", b"<p>", b"<div")
    )


def _try_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _parse_json(body: bytes, content_type: str, expect: str) -> Any:
    if not body.strip():
        return _Failure(f"expected {expect}, got an empty response")
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        return _Failure(f"expected {expect}, got a response that is not UTF-8 text")
    except json.JSONDecodeError as exc:
        if _looks_like_html(body, content_type):
            return _Failure(f"expected {expect}, got HTML")
        return _Failure(f"expected {expect}, got invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")


def _causes(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
        for attr in ("reason", "__cause__", "__context__"):
            nested = getattr(current, attr, None)
            if isinstance(nested, BaseException):
                stack.append(nested)


def _short_cause(exc: BaseException) -> str:
    from http.client import IncompleteRead, RemoteDisconnected

    for cause in _causes(exc):
        if isinstance(cause, socket.gaierror):
            return "could not resolve the host name"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, RemoteDisconnected):
            return "the server closed the connection without answering"
        if isinstance(cause, IncompleteRead):
            return "the connection closed before the whole response arrived"
        if type(cause).__name__ in ("SSLCertVerificationError",):
            return "certificate verify failed"
    return type(exc).__name__


def _never_sent(exc: BaseException) -> bool:
    """True when the request cannot have reached the server (no connection was made), so even a POST
    may be retried."""
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    return any(isinstance(c, (NewConnectionError, NameResolutionError, ConnectionRefusedError)) for c in _causes(exc))
