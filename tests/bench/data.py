"""Synthetic provider answers for the benchmarks: realistic shapes, deterministic content."""

from __future__ import annotations

import json
import random
from typing import Any

from tests.fakes.provider_server import fixture_json

_FAMILIES = ["gpt", "claude", "gemini", "llama", "qwen", "mistral", "deepseek", "phi", "gemma", "command"]
_INPUTS = [["text"], ["text", "image"], ["text", "image", "pdf"], ["text", "audio"], ["text", "image", "video"]]


def openai_models_body(provider_index: int, version: int, count: int = 12) -> dict[str, Any]:
    """An OpenAI-style ``/v1/models`` answer; ``version`` changes one model (so a refresh sees a change)."""
    data = [
        {
            "id": f"p{provider_index:02d}-model-{n:02d}",
            "object": "model",
            "created": 1_700_000_000 + n,
            "owned_by": "bench",
            "context_window": 8192 * (n + 1),
        }
        for n in range(count)
    ]
    data.append({"id": f"p{provider_index:02d}-rev-{version:04d}", "object": "model", "created": 1_700_000_000,
                 "owned_by": "bench", "context_window": 4096})
    return {"object": "list", "data": data}


def registry_model(provider_key: str, index: int, rng: random.Random) -> dict[str, Any]:
    """One models.dev-style model entry, shaped like tests/fixtures/providers/models_dev_api.json's."""
    family = rng.choice(_FAMILIES)
    model_id = f"{family}-{index:05d}"
    context = rng.choice([8_192, 32_768, 128_000, 200_000, 1_000_000])
    entry: dict[str, Any] = {
        "id": model_id,
        "name": f"{family.title()} {index} ({provider_key})",
        "family": family,
        "attachment": rng.random() < 0.5,
        "reasoning": rng.random() < 0.3,
        "tool_call": rng.random() < 0.7,
        "temperature": True,
        "knowledge": f"20{rng.randint(23, 25)}-{rng.randint(1, 12):02d}",
        "release_date": f"20{rng.randint(23, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "last_updated": f"2026-{rng.randint(1, 3):02d}-{rng.randint(1, 28):02d}",
        "modalities": {"input": rng.choice(_INPUTS), "output": ["text"]},
        "open_weights": rng.random() < 0.4,
        "limit": {"context": context, "output": min(context, rng.choice([4_096, 8_192, 32_000, 64_000, 128_000]))},
    }
    if rng.random() < 0.9:
        price = round(rng.uniform(0.05, 20), 2)
        entry["cost"] = {"input": price, "output": round(price * 4, 2), "cache_read": round(price / 10, 3)}
    if rng.random() < 0.2:
        entry["reasoning_options"] = [{"type": "effort", "values": ["low", "medium", "high"]}]
    return entry


class SyntheticRegistry:
    """A models.dev ``api.json`` with ``size`` models spread over provider keys (500 per key).

    ``churn(n)`` removes the ``n`` oldest-added models and adds ``n`` new ones: a refresh then reports exactly
    ``n`` added and ``n`` removed.
    """

    def __init__(self, size: int, per_provider: int = 500, seed: int = 20_000):
        self._rng = random.Random(seed)
        self._per_provider = per_provider
        self._next = 0
        self._updates = 0
        self._models: dict[str, dict[str, Any]] = {}  # "<provider key>/<model key>" → entry, in insertion order
        self._add(size)

    def _add(self, count: int) -> list[str]:
        added = []
        for _ in range(count):
            provider_key = f"vendor{self._next // self._per_provider:03d}"
            entry = registry_model(provider_key, self._next, self._rng)
            key = f"{provider_key}/{entry['id']}"
            self._models[key] = entry
            added.append(key)
            self._next += 1
        return added

    def churn(self, count: int) -> tuple[list[str], list[str]]:
        removed = list(self._models)[:count]
        for key in removed:
            del self._models[key]
        return self._add(count), removed

    def update(self, count: int, seed: int = 7) -> list[str]:
        """Change ``count`` models picked at random over the whole list (their context length): a spread-out
        change, where a refresh reports exactly ``count`` updated."""
        rng = random.Random(seed * 1_000 + self._updates)
        self._updates += 1
        picked = rng.sample(list(self._models), count)
        for key in picked:
            entry = self._models[key]
            entry["limit"] = {**entry["limit"], "context": entry["limit"]["context"] + 1}
        return picked

    def __len__(self) -> int:
        return len(self._models)

    def document(self) -> dict[str, Any]:
        providers: dict[str, Any] = {}
        for key, entry in self._models.items():
            provider_key = key.split("/", 1)[0]
            provider = providers.setdefault(
                provider_key,
                {"id": provider_key, "env": [f"{provider_key.upper()}_API_KEY"], "npm": "@ai-sdk/openai-compatible",
                 "name": provider_key.title(), "doc": f"https://{provider_key}.example/docs", "models": {}},
            )
            provider["models"][entry["id"]] = entry
        return providers

    def body(self) -> bytes:
        return json.dumps(self.document()).encode("utf-8")


def average_fixture_entry_bytes() -> float:
    """Mean JSON size of a model entry in the shared models.dev fixture (to show the synthetic data is alike)."""
    document = fixture_json("models_dev_api.json")
    sizes = [len(json.dumps(m)) for p in document.values() for m in p["models"].values()]
    return sum(sizes) / len(sizes)
