"""Provider adapters behind one entry point, ``ProviderFetcher``.

Each kind (docs/reference.md §4) is one module here with ``fetch_models(ctx) -> list[Model]`` and one entry in
``kinds.KINDS``; ``base`` holds what adapters share (``FetchContext``, value helpers, ``finalize``).
``fetcher.ProviderFetcher`` resolves credentials, binds the shared HTTP layer (``chalicelib.http``) to the
provider, runs the adapter, and normalizes the result.

The API: ``ProviderFetcher``. A fetch that fails raises ``chalicelib.errors.ProviderError``.

Importing this package stays cheap (no requests, boto3 or pydantic): ``chalicelib.settings`` imports
``providers.kinds`` at startup.
"""

from chalicelib.providers.fetcher import ProviderFetcher

__all__ = ["ProviderFetcher"]
