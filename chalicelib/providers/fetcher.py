"""``ProviderFetcher``: one provider's fetch, from credentials to normalized models.

The fetcher resolves credentials, binds the shared HTTP layer (``chalicelib.http``) to the provider, runs the
kind's adapter (``kinds.KINDS``), and normalizes the result (``model_filter``, unique ids, sorted).

Heavy imports (requests, boto3) happen when a fetcher is built, not when this module is imported: the package
is imported at startup (``chalicelib.settings`` imports ``providers.kinds``).
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalicelib.core.limits import response_limit_hint
from chalicelib.errors import ProviderError
from chalicelib.logs import get_logger
from chalicelib.providers.kinds import KINDS

if TYPE_CHECKING:
    from chalicelib.catalog_config import ProviderConfig
    from chalicelib.core.domain import ModelRecord
    from chalicelib.http import KeptSession, RetryPolicy, UrlGuard
    from chalicelib.oauth import TokenStore
    from chalicelib.secrets import SecretResolver
    from chalicelib.settings import Settings

_log = get_logger("providers")
# Config `headers` whose values are credentials (e.g. `Authorization = "Bearer ${TOKEN}"`) are redacted too.
_SENSITIVE_HEADER = re.compile(r"(?i)auth|key|token|secret|cookie|session|signature|password")


class ProviderFetcher:
    """One per refresh run: one ``requests.Session`` shared by all adapters (its own, or borrowed from
    ``kept_session`` until ``close``); ``fetch()`` is thread-safe (the engine calls it from a thread pool, one
    provider per thread).

    Keyword-only arguments are seams for tests and wiring: ``secrets`` (a ``SecretResolver``),
    ``url_guard`` (``chalicelib.http.UrlGuard``; default from ``settings.allow_private_urls``), ``session``,
    ``kept_session`` (``chalicelib.http.KeptSession``: the session kept across runs),
    ``sleep``/``clock`` (monotonic, the deadline's clock)/``wall_clock`` (token expiry, Retry-After dates),
    ``max_body_bytes`` and ``retry`` (``RetryPolicy``)."""

    def __init__(
        self,
        settings: Settings,
        token_store: TokenStore | None = None,
        *,
        secrets: SecretResolver | None = None,
        url_guard: UrlGuard | None = None,
        session: Any = None,
        kept_session: KeptSession | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_body_bytes: int | None = None,
        retry: RetryPolicy | None = None,
    ):
        from chalicelib.http import DEFAULT_MAX_BODY_BYTES, HttpClient, RetryPolicy, UrlGuard
        from chalicelib.secrets import SecretResolver

        self._settings = settings
        self._token_store = token_store
        self._secrets = secrets or SecretResolver.from_settings(settings)
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._kept_session = kept_session
        if kept_session is not None and session is None:
            session = kept_session.lend()
        else:
            self._kept_session = None
        self._http = HttpClient(
            url_guard or UrlGuard(allow_private=settings.allow_private_urls),
            session=session,
            pool_size=settings.options.fetch_concurrency,
            max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES,
            retry=retry or RetryPolicy(),
            sleep=sleep,
            clock=clock,
            wall_clock=wall_clock,
        )

    def fetch(self, provider: ProviderConfig, deadline: float) -> list[ModelRecord]:
        """deadline = time.monotonic() value the whole fetch (all pages, retries, oauth) must finish by.
        Returns models sorted by id, unique by id, model_filter applied. Raises ProviderError(reason) with a
        user-actionable, redacted reason."""
        from chalicelib.http import Redactor
        from chalicelib.providers.base import FetchContext, finalize

        started = self._clock()
        redactor = Redactor()
        http = None
        try:
            adapter = importlib.import_module(f"chalicelib.providers.{KINDS[provider.kind].module}")
            for name, value in provider.headers.items():
                if _SENSITIVE_HEADER.search(name):
                    redactor.add(value)

            def read_secret(env_name: str) -> str | None:
                value = self._read_secret(env_name)
                redactor.add(value)
                return value

            # Checked before any network call: a missing key is a config problem, not a provider failure.
            api_key = None
            if provider.api_key_env:
                api_key = read_secret(provider.api_key_env)
                if api_key is None:
                    raise ProviderError(f"{provider.api_key_env} is not set")
            # The provider's own body limit when its config sets one (max_response_mb), else the fetcher's.
            own_limit = provider.max_response_mb << 20 if "max_response_mb" in provider.model_fields_set else None
            http = self._http.for_provider(
                provider.id,
                deadline=deadline,
                timeout_s=provider.timeout_ms / 1000.0,
                redactor=redactor,
                headers=provider.headers,
                auth="oauth" if KINDS[provider.kind].oauth else ("api_key" if api_key else "none"),
                credential_env=provider.api_key_env,
                max_body_bytes=own_limit,
                limit_hint=response_limit_hint((own_limit or self._http.max_body_bytes) >> 20),
            )
            context = FetchContext(
                provider=provider,
                http=http,
                api_key=api_key,
                token_store=self._token_store,
                read_secret=read_secret,
                time_left=lambda: deadline - self._clock(),
                wall_clock=self._wall_clock,
                sleep=self._sleep,
            )
            models = finalize(provider, adapter.fetch_models(context), http.log)
        except ProviderError as exc:
            reason = redactor(exc.reason)
            _log.warning(
                "provider fetch failed",
                extra={"provider_id": provider.id, "kind": provider.kind, "reason": reason}
                | self._stats(started, http),
            )
            raise ProviderError(reason) from None
        except Exception as exc:
            # A bug or an unforeseen library error: the type is safe to show, the message may not be.
            _log.error(
                "provider fetch crashed",
                extra={
                    "provider_id": provider.id,
                    "kind": provider.kind,
                    "error_type": type(exc).__name__,
                    "error": redactor(str(exc))[:500],
                    **self._stats(started, http),
                },
            )
            raise ProviderError(f"unexpected error while fetching the model list ({type(exc).__name__})") from None
        finally:
            if http is not None:
                http.finish()  # its answers are records now (or dropped): the next large answer may be read
        _log.info(
            "provider fetched",
            extra={"provider_id": provider.id, "kind": provider.kind, "model_count": len(models)}
            | self._stats(started, http),
        )
        return models

    def close(self) -> None:
        self._http.close()
        if self._kept_session is not None:
            self._kept_session.give_back()
            self._kept_session = None

    def __enter__(self) -> ProviderFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_secret(self, env_name: str) -> str | None:
        from chalicelib.secrets import SecretUnavailable

        try:
            return self._secrets.resolve(env_name)
        except SecretUnavailable as exc:
            raise ProviderError(str(exc)) from None

    def _stats(self, started: float, http: Any) -> dict[str, Any]:
        return {
            "duration_ms": round((self._clock() - started) * 1000),
            "requests": getattr(http, "requests_made", 0),
        }

