"""The version of what the catalog's read routes render, for strong ETags (docs/reference.md §8, conditional GET).

``catalog_version`` is computed from the small items a reader has anyway, never from the models themselves: the
manifest (its revision and, per provider, the generation and content fingerprint of the current list), the config
(provider names and kinds, and whatever else a renderer may show of it), for routes that show provider statuses
the refresh state, and the code that renders the bodies (a new deployment may render them differently). Equal
versions mean equal inputs; a route adds its own name and query to the ETag.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from chalicelib.core.domain import canonical_json
from chalicelib.core.manifest import Manifest
from chalicelib.core.state import RefreshState

if TYPE_CHECKING:
    from chalicelib.catalog_config import CatalogConfig

# Provider headers may carry secrets (``${VAR}`` expanded); no body shows them, so they stay out of the digest.
_UNRENDERED_PROVIDER_FIELDS = {"headers"}


def catalog_version(
    manifest: Manifest,
    config: CatalogConfig | None = None,
    state: RefreshState | None = None,
    code: str | None = None,
) -> str:
    """A hex digest that changes whenever the catalog (models), the config, the ``code`` (the deployment id:
    ``Settings.deployment_id``) or (with ``state``) a provider's status changes. Pass ``state`` only for bodies
    that show statuses (``GET /providers``): a refresh that changes no model then leaves the models' version
    alone."""
    parts: dict[str, Any] = {
        "epoch": manifest.epoch,
        "revision": manifest.revision,
        "providers": {
            pid: [entry.generation, entry.fingerprint, entry.count] for pid, entry in sorted(manifest.providers.items())
        },
    }
    if code is not None:
        parts["code"] = code
    if config is not None:
        parts["config"] = config.model_dump(
            mode="json", exclude={"providers": {"__all__": _UNRENDERED_PROVIDER_FIELDS}}
        )
    if state is not None:
        parts["statuses"] = {
            pid: [status.last_refreshed_at, status.last_error] for pid, status in sorted(state.providers.items())
        }
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()
