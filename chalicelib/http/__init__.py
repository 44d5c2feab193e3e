"""The one HTTP layer every provider adapter uses: bounded, retried, size-capped, redacted and URL-safe.

One ``HttpClient`` per refresh run uses one ``requests.Session`` (connection pooling across providers), which the
service keeps from one run to the next (``KeptSession``: a run reuses the connections the last one left open);
``HttpClient.for_provider`` hands each fetch a ``ProviderHttp`` bound to that provider's timeout, deadline,
credentials and redactor. Guarantees:

- **Deadline.** Connect/read timeouts are ``min(timeout_ms, time left)``; at each request's deadline a watchdog
  (one thread for every request in the process) shuts its socket down, so a server that trickles headers or
  body bytes cannot hold a fetch past it (a read timeout alone only bounds the gap between two bytes). Retries
  never sleep past it.
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

The API (everything else is private to the package):

- ``HttpClient``, ``ProviderHttp``, ``JsonResponse``, ``DEFAULT_MAX_BODY_BYTES``: the client (``_client``);
  ``KeptSession``: the provider session kept from one refresh run to the next (its connections reused).
- ``UrlGuard``, ``UnsafeUrlError``: the URL policy (``_guard``).
- ``Redactor``: secrets out of reasons and logs (``_redact``).
- ``RetryPolicy``, ``parse_retry_after``: when to retry and how long to wait (``_retry``).
- ``describe_json``, ``provider_message``: words for a JSON value and a provider's error message (``_reasons``);
  ``JsonMembers``: a large JSON object read member by member (``ProviderHttp.get_json(..., members=True)``).
- ``post_bytes``, ``PostOutcome``, ``url_problem``, ``new_session``: one guarded POST (webhook deliveries, ``_post``).
"""

from chalicelib.http._client import DEFAULT_MAX_BODY_BYTES, HttpClient, JsonResponse, KeptSession, ProviderHttp
from chalicelib.http._guard import UnsafeUrlError, UrlGuard, new_session
from chalicelib.http._post import PostOutcome, post_bytes, url_problem
from chalicelib.http._reasons import JsonMembers, describe_json, provider_message
from chalicelib.http._redact import Redactor
from chalicelib.http._retry import RetryPolicy, parse_retry_after

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "HttpClient",
    "JsonMembers",
    "JsonResponse",
    "KeptSession",
    "PostOutcome",
    "ProviderHttp",
    "Redactor",
    "RetryPolicy",
    "UnsafeUrlError",
    "UrlGuard",
    "describe_json",
    "new_session",
    "parse_retry_after",
    "post_bytes",
    "provider_message",
    "url_problem",
]
