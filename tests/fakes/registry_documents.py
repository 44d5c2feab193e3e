"""models.dev-style ``api.json`` documents for tests that change what a registry provider serves.

``RegistryModels`` keeps a set of models with the fields the catalog's filters look at (capabilities, context
length, display name, status) and renders the document a ``registry`` provider reads; tests add, drop and change
models, then refresh.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

VENDOR = "acme"


def registry_model(
    key: str,
    *,
    name: str | None = None,
    context: int | None = 8_192,
    tools: bool = False,
    reasoning: bool = False,
    vision: bool = False,
    status: str | None = None,
) -> dict[str, Any]:
    """One model entry (catalog id ``acme/<key>``): ``tool_call`` → tools, ``reasoning`` → reasoning, image input →
    vision; ``status: "deprecated"`` is what models.dev says of a retired model."""
    entry: dict[str, Any] = {"id": key, "name": name if name is not None else key.title(), "tool_call": tools,
                             "reasoning": reasoning, "modalities": {"input": ["text", *(["image"] if vision else [])],
                                                                    "output": ["text"]}}
    if context is not None:
        entry["limit"] = {"context": context, "output": 1_024}
    if status is not None:
        entry["status"] = status
    return entry


class RegistryModels:
    def __init__(self, vendor: str = VENDOR, vendor_name: str = "Acme"):
        self.vendor = vendor
        self.vendor_name = vendor_name
        self.models: dict[str, dict[str, Any]] = {}

    def put(self, key: str, **fields: Any) -> str:
        """Add or replace a model; returns its catalog id."""
        self.models[key] = registry_model(key, **fields)
        return f"{self.vendor}/{key}"

    def drop(self, key: str) -> str:
        del self.models[key]
        return f"{self.vendor}/{key}"

    def document(self) -> dict[str, Any]:
        return {self.vendor: {"id": self.vendor, "name": self.vendor_name, "models": copy.deepcopy(self.models)}}


class GrowingRegistry:
    """What a local stack's demo registry serves, one more model per ``add_model`` (each refresh then reports it
    added). The test keeps the list: a stack forgets the served document when it restarts."""

    def __init__(self) -> None:
        self.served = RegistryModels()
        self._names = itertools.count(1)

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        return self.served.models

    @property
    def ids(self) -> set[str]:
        return {f"{self.served.vendor}/{key}" for key in self.served.models}

    def add_model(self, stack: Any) -> str:
        """Serve one more model on ``stack`` (a ``tests.stack.LocalStack``); returns its catalog id."""
        model_id = self.served.put(f"model-{next(self._names):04d}")
        stack.set_registry(self.served.document())
        return model_id
