"""The provider kinds: one entry each. Adding a kind = one adapter module + one entry here.

Kept free of heavy imports: the config module validates `kind` against this table at startup.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KindSpec:
    module: str  # chalicelib.providers.<module> holds `fetch_models`
    required_fields: tuple[str, ...] = ("base_url",)
    default_base_url: str | None = None
    oauth: bool = False


KINDS: dict[str, KindSpec] = {
    "openai": KindSpec("openai_compatible", default_base_url="https://api.openai.com/v1"),
    "anthropic": KindSpec("anthropic", default_base_url="https://api.anthropic.com/v1"),
    "gemini": KindSpec("gemini", default_base_url="https://generativelanguage.googleapis.com/v1beta"),
    "openrouter": KindSpec("openrouter", default_base_url="https://openrouter.ai/api/v1"),
    "ollama": KindSpec("ollama", default_base_url="http://127.0.0.1:11434"),
    "registry": KindSpec("registry", required_fields=("url",)),
    "managed_oauth": KindSpec(
        "managed_oauth",
        required_fields=("base_url", "token_url", "client_id", "refresh_token_env"),
        oauth=True,
    ),
}
