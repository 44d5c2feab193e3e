"""What a body derived from the catalog depends on, read from the manifest alone (no model chunk).

``catalog_version`` gives the parts of a strong ETag (``chalicelib.entrypoints.http_cache.strong_etag``) for any
route whose body is a function of the catalog's models and the configured providers: the revision, each provider's
model fingerprint, and each provider's exported settings. A route adds its own parts (its name, its query, provider
statuses…). Cheap: one GetItem of the manifest, however big the catalog.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from chalicelib.core.manifest import Manifest

if TYPE_CHECKING:
    from chalicelib.catalog_config import ProviderConfig


def catalog_version(manifest: Manifest, providers: Iterable[ProviderConfig] = ()) -> tuple[str, ...]:
    parts = [f"revision={manifest.revision}"]
    parts += [f"models:{pid}={entry.fingerprint}" for pid, entry in sorted(manifest.providers.items())]
    parts += [
        f"provider:{p.id}={p.display_name}|{p.kind}|{p.endpoint}|{p.api_key_env or ''}" for p in providers
    ]
    return tuple(parts)
