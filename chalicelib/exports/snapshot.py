"""What every export is rendered from, and helpers the formats share."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.catalog_config import ProviderConfig
    from chalicelib.core.domain import ModelRecord


@dataclass(frozen=True)
class CatalogSnapshot:
    """The catalog at one revision: its models by provider id (sorted by model id) and the configured providers.

    ``providers`` lists every provider an export shows: the configured ones, then any the catalog still holds that
    the config no longer names (they leave at the next full refresh), in id order.
    """

    revision: int
    models: Mapping[str, Sequence[ModelRecord]]
    configured: Sequence[ProviderConfig] = ()

    @property
    def provider_ids(self) -> list[str]:
        configured = [provider.id for provider in self.configured]
        return configured + sorted(set(self.models) - set(configured))

    def config(self, provider_id: str) -> ProviderConfig | None:
        return next((provider for provider in self.configured if provider.id == provider_id), None)

    def all_models(self) -> list[tuple[str, ModelRecord]]:
        """Every model as ``(provider id, record)``, by provider id then model id (the order of GET /models)."""
        return [(pid, record) for pid in sorted(self.models) for record in self.models[pid]]


@dataclass(frozen=True)
class Export:
    name: str
    render: Callable[[CatalogSnapshot], Any]
    content_type: str = "application/json"


def api_key_env(provider_id: str, config: ProviderConfig | None) -> str:
    """The env var that holds the provider's key: ``api_key_env`` where configured, else a stable name derived from
    the id (``my-llm.v2`` → ``MY_LLM_V2_API_KEY``), so a tool that shows a provider once its key is set works."""
    if config is not None and config.api_key_env:
        return config.api_key_env
    stem = re.sub(r"[^A-Z0-9]+", "_", provider_id.upper()).strip("_") or "PROVIDER"
    if stem[0].isdigit():
        stem = "P_" + stem
    return f"{stem}_API_KEY"


def capabilities(record: ModelRecord) -> set[str]:
    return set(record.get("capabilities") or ())


def modalities(record: ModelRecord) -> dict[str, list[str]]:
    """The model's input/output modalities (models.dev's words): the record's own where it has them, else derived
    from its capabilities (the inverse of the registry adapter's mapping)."""
    own = record.get("modalities")
    if isinstance(own, Mapping) and (own.get("input") is not None or own.get("output") is not None):
        return {"input": list(own.get("input") or []), "output": list(own.get("output") or [])}
    caps = capabilities(record)
    inputs = ["text"] + [word for cap, word in (("vision", "image"), ("audio", "audio"), ("video", "video"),
                                                ("files", "pdf")) if cap in caps]
    outputs = ["text"] + (["image"] if "image_output" in caps else [])
    return {"input": inputs, "output": outputs}


def pricing(record: ModelRecord) -> Mapping[str, Any]:
    value = record.get("pricing")
    return value if isinstance(value, Mapping) else {}


def is_deprecated(record: ModelRecord) -> bool:
    return record.get("status") == "deprecated"


def retires_on(record: ModelRecord) -> str | None:
    """``retires_at`` as a date (``YYYY-MM-DD``), or ``None``."""
    value = record.get("retires_at")
    return value[:10] if isinstance(value, str) and len(value) >= 10 else None
