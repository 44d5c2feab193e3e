"""One POST through the guarded session: the webhook sender's request (docs/reference.md §9).

It uses the same watched connections as provider calls (``_guard``): the URL policy is checked before sending,
the connected peer's address is checked again (DNS rebinding), and a watchdog shuts the socket down at the
deadline, so a server that trickles its answer cannot hold a sender past ``timeout_s``. Redirects are never
followed. It never raises for a failed request: the outcome says what happened in words a user can act on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

from chalicelib.http._guard import UnsafeUrlError, UrlGuard, _current, _PeerRefusedError, _UnresolvableHostError, _Watch
from chalicelib.http._reasons import _short_cause
from chalicelib.http._redact import display_url
from chalicelib.http._retry import parse_retry_after

_DRAINED_BYTES = 64 * 1024  # read this much of an answer so the connection can be reused; the rest is dropped


@dataclass(frozen=True)
class PostOutcome:
    """``status_code`` of the answer (None when there was none), ``error`` (None for a 2xx) and the answer's
    ``Retry-After`` in seconds."""

    status_code: int | None
    error: str | None
    retry_after_s: float | None = None


def url_problem(guard: UrlGuard, url: str) -> str | None:
    """Why ``url`` may not be used under ``guard`` (None when it may)."""
    try:
        guard.check_url(url)
    except (UnsafeUrlError, _UnresolvableHostError) as exc:
        return str(exc)
    return None


def post_bytes(
    session: requests.Session,
    guard: UrlGuard,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
    wall_clock: Callable[[], float] = time.time,
) -> PostOutcome:
    """POST ``body`` to ``url`` once, within ``timeout_s`` in all (connect, send, answer)."""
    problem = url_problem(guard, url)
    if problem is not None:
        return PostOutcome(None, f"refused: {problem}")
    host = urlsplit(url).hostname or ""
    watch = _Watch(guard, host)
    watch.start(timeout_s)
    _current.watch = watch
    response: requests.Response | None = None
    try:
        response = session.post(
            url, data=body, headers=dict(headers), timeout=(timeout_s, timeout_s), allow_redirects=False, stream=True
        )
        status = response.status_code
        location = response.headers.get("location")
        retry_after = parse_retry_after(response.headers, None, wall_clock())
        try:
            response.raw.read(_DRAINED_BYTES, decode_content=False)
        except Exception:  # the answer's status is what counts; a body cut short changes nothing
            pass
        if 300 <= status < 400:
            target = f" to {display_url(urljoin(url, location))}" if location else ""
            return PostOutcome(status, f"HTTP {status}: redirected{target}; redirects are not followed")
        if 200 <= status < 300:
            return PostOutcome(status, None)
        return PostOutcome(status, f"HTTP {status}", retry_after)
    except _PeerRefusedError as exc:
        return PostOutcome(None, f"refused: {exc}")
    except requests.exceptions.Timeout:
        return PostOutcome(None, f"timed out after {timeout_s:g} s")
    except requests.exceptions.RequestException as exc:
        if watch.fired:
            return PostOutcome(None, f"timed out after {timeout_s:g} s")
        return PostOutcome(None, f"could not reach {host}: {_short_cause(exc)}")
    finally:
        watch.cancel()
        _current.watch = None
        if response is not None:
            response.close()
