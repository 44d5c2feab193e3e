"""Every documented provider error body (tests/fixtures/providers/errors) maps to an actionable reason."""

from __future__ import annotations

import pytest

from chalicelib.errors import ProviderError
from tests.fakes import FakeProviderServer, fetch_once, fixture_json

KEY = "test-key-0123456789abcdefghij"

# (fixture, kind, status, response headers, expected reason (prefix when it ends with "…"), requests made)
CASES = [
    (
        "anthropic_401",
        "anthropic",
        401,
        None,
        "the API key was rejected (HTTP 401; check API_KEY): invalid x-api-key",
        1,
    ),
    (
        "anthropic_429",
        "anthropic",
        429,
        {"retry-after": "30"},
        "rate limited (HTTP 429); the provider asks to wait 30 s: This request would exceed the rate limit…",
        1,
    ),
    ("anthropic_529", "anthropic", 529, None, "the provider is overloaded (HTTP 529) after 4 attempts: Overloaded", 4),
    (
        "deepseek_401",
        "openai",
        401,
        None,
        'the API key was rejected (HTTP 401; check API_KEY): Authentication Fails, Your api key: ****18b" is invalid',
        1,
    ),
    (
        "gemini_400_bad_key",
        "gemini",
        400,
        None,
        "the API key was rejected (HTTP 400; check API_KEY): API key not valid. Please pass a valid API key.",
        1,
    ),
    (
        "gemini_429",
        "gemini",
        429,
        None,
        "rate limited (HTTP 429) after 4 attempts: You exceeded your current quota…",
        4,
    ),
    ("groq_401", "openai", 401, None, "the API key was rejected (HTTP 401; check API_KEY): Invalid API Key", 1),
    (
        "groq_429",
        "openai",
        429,
        {"retry-after": "2"},
        "rate limited (HTTP 429) after 4 attempts: Rate limit reached for model `llama-3.3-70b-versatile`…",
        4,
    ),
    ("mistral_401", "openai", 401, None, "the API key was rejected (HTTP 401; check API_KEY): Unauthorized", 1),
    ("mistral_429", "openai", 429, None, "rate limited (HTTP 429) after 4 attempts: Rate limit exceeded", 4),
    (
        "moonshot_401",
        "openai",
        401,
        None,
        "the API key was rejected (HTTP 401; check API_KEY): Invalid Authentication",
        1,
    ),
    (
        "moonshot_429",
        "openai",
        429,
        None,
        "rate limited (HTTP 429) after 4 attempts: Your account org-xxxx<ak-xxxx> request reached max request: 3…",
        4,
    ),
    (
        "ollama_error",
        "ollama",
        500,
        None,
        "the provider failed (HTTP 500 Internal Server Error) after 4 attempts: model list cache unavailable",
        4,
    ),
    (
        "openai_401",
        "openai",
        401,
        None,
        "the API key was rejected (HTTP 401; check API_KEY): Incorrect API key provided: sk-proj-****…",
        1,
    ),
    ("openai_429", "openai", 429, None, "rate limited (HTTP 429) after 4 attempts: Rate limit reached for gpt-4o…", 4),
    (
        "openrouter_401",
        "openrouter",
        401,
        None,
        "the API key was rejected (HTTP 401; check API_KEY): Missing Authentication header",
        1,
    ),
    ("openrouter_429", "openrouter", 429, None, "rate limited (HTTP 429) after 4 attempts: Rate limit exceeded", 4),
    (
        "together_401",
        "openai",
        401,
        None,
        "the API key was rejected (HTTP 401; check API_KEY): Invalid API key provided. You can find your API key at…",
        1,
    ),
    ("vllm_401", "openai", 401, None, "the API key was rejected (HTTP 401; check API_KEY): Unauthorized", 1),
    (
        "xai_400_bad_key",
        "openai",
        400,
        None,
        "the API key was rejected (HTTP 400; check API_KEY): Incorrect API key provided: xa***MN.…",
        1,
    ),
]


@pytest.mark.parametrize(
    ("fixture", "kind", "status", "headers", "expected", "attempts"), CASES, ids=[c[0] for c in CASES]
)
def test_error_body_maps_to_reason(make_settings, fixture, kind, status, headers, expected, attempts):
    sleeps: list[float] = []
    with FakeProviderServer() as server:
        path = "/api/tags" if kind == "ollama" else "/v1/models"
        server.route("GET", path, status=status, json=fixture_json(f"errors/{fixture}"), headers=headers)
        config = {
            "id": "p",
            "kind": kind,
            "base_url": server.url + ("" if kind == "ollama" else "/v1"),
            "api_key_env": "API_KEY",
        }
        with pytest.raises(ProviderError) as caught:
            fetch_once(make_settings("", API_KEY=KEY), config, sleep=sleeps.append)
        assert len(server.requests()) == attempts
    reason = caught.value.reason
    if expected.endswith("…"):
        assert reason.startswith(expected[:-1]), reason
    else:
        assert reason == expected
    assert KEY not in reason
    if headers and "retry-after" in headers and attempts > 1:
        assert sleeps == [float(headers["retry-after"])] * (attempts - 1)


def test_openrouter_401_without_a_key_says_to_configure_one(make_settings):
    with FakeProviderServer() as server:
        server.route("GET", "/v1/models", status=401, json=fixture_json("errors/openrouter_401"))
        with pytest.raises(ProviderError) as caught:
            fetch_once(make_settings(""), {"id": "p", "kind": "openrouter", "base_url": server.url + "/v1"})
    assert caught.value.reason == (
        "the provider requires an API key (HTTP 401; set api_key_env): Missing Authentication header"
    )


def test_every_error_fixture_is_covered():
    from tests.fakes import FIXTURES_DIR

    provider_errors = {p.stem for p in (FIXTURES_DIR / "errors").glob("*.json") if not p.stem.startswith("oauth_")}
    assert provider_errors == {c[0] for c in CASES}  # oauth_* are covered by tests/integration/test_oauth.py
