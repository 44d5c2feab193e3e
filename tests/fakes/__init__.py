"""Fakes shared by the test suite: a real HTTP server playing provider APIs, the provider fixtures, and
``fetch_once`` (one provider through a fresh ``ProviderFetcher``)."""

from __future__ import annotations

import time
from typing import Any

from tests.fakes.provider_server import FIXTURES_DIR, FakeProviderServer, RecordedRequest, fixture_json, fixture_path


def fetch_once(settings: Any, provider: Any, *, deadline_s: float = 5.0, **fetcher_kwargs: Any) -> list[Any]:
    """Fetch one provider (a ``ProviderConfig`` or a dict of its fields) with a fresh ``ProviderFetcher``, and give
    its records back as ``Model``s (easy to compare). Retries do not really sleep unless ``sleep=`` is given. Raises
    ``ProviderError`` like the real thing."""
    from chalicelib.catalog_config import ProviderConfig
    from chalicelib.core.domain import Model
    from chalicelib.providers import ProviderFetcher

    config = provider if isinstance(provider, ProviderConfig) else ProviderConfig.model_validate(provider)
    fetcher_kwargs.setdefault("sleep", lambda _seconds: None)
    with ProviderFetcher(settings, **fetcher_kwargs) as fetcher:
        records = fetcher.fetch(config, time.monotonic() + deadline_s)
    return [Model(provider_id=config.id, **record) for record in records]


__all__ = [
    "FIXTURES_DIR",
    "FakeProviderServer",
    "RecordedRequest",
    "fetch_once",
    "fixture_json",
    "fixture_path",
]
