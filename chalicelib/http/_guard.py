"""The URL policy and its enforcement on the wire.

``UrlGuard`` decides which URLs and addresses provider calls may use. Sessions from ``new_session`` use watched
connections: the client puts a per-request ``_Watch`` in the thread-local ``_current``, which shuts the socket
down when the deadline passes and re-checks the connected peer's address (DNS rebinding).
"""

from __future__ import annotations

import heapq
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from chalicelib.http._redact import display_url
from chalicelib.logs import get_logger

USER_AGENT = "model-catalog/1.0 (+https://github.com/model-catalog)"
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "fd00:ec2::23")
)


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
    subject: str = "provider URLs"  # what the refusals name ("webhook URLs" for webhook endpoints)

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
                f"{name} is {what}, which {self.subject} may not use (set MODEL_CATALOG_ALLOW_PRIVATE_URLS=1 to allow)"
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
_log = get_logger("http")


def _nothing() -> None:
    pass


class _Alarm:
    __slots__ = ("action", "cancelled", "when")

    def __init__(self, when: float, action: Callable[[], None]):
        self.when = when
        self.action = action
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.action = _nothing  # what the action holds (a connection, its socket) is not kept until the deadline

    def __lt__(self, other: _Alarm) -> bool:
        return self.when < other.when


class _Watchdog:
    """One thread for every request's deadline, started on first use. A ``threading.Timer`` per request started
    a thread per request: 20 concurrent fetches then queued 20 thread starts, each a hand-over of the
    interpreter lock, before their requests went out (docs/benchmarks.md, refresh-all)."""

    def __init__(self) -> None:
        self._due: list[_Alarm] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._forget_thread)

    def set(self, seconds: float, action: Callable[[], None]) -> _Alarm:
        alarm = _Alarm(time.monotonic() + seconds, action)
        with self._changed:
            heapq.heappush(self._due, alarm)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-watchdog", daemon=True)
                self._thread.start()
            elif self._due[0] is alarm:
                self._changed.notify()
        return alarm

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._due and self._due[0].cancelled:
                    heapq.heappop(self._due)  # cancelled alarms leave as they reach the front
                wait = self._due[0].when - time.monotonic() if self._due else None
                if wait is None or wait > 0:
                    self._changed.wait(wait)
                    continue
                alarm = heapq.heappop(self._due)
            try:
                alarm.action()
            except Exception:  # an alarm's failure must not stop the others
                _log.exception("a request's deadline action failed")

    def _forget_thread(self) -> None:
        self._changed = threading.Condition()
        self._thread = None


_WATCHDOG = _Watchdog()


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
        self._alarm: _Alarm | None = None

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
        self._alarm = _WATCHDOG.set(max(seconds, 0.0), self._fire)

    def cancel(self) -> None:
        if self._alarm is not None:
            self._alarm.cancel()

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
