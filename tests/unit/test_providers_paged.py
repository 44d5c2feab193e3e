"""Kinds `anthropic` (after_id pages) and `gemini` (pageToken pages) against the shared fixtures."""

from __future__ import annotations

import pytest

from chalicelib.core.domain import Model
from chalicelib.errors import ProviderError
from tests.fakes import FakeProviderServer, fetch_once, fixture_json

ANTHROPIC_KEY = "sk-ant-api03-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
GEMINI_KEY = "AIzaSyA1234567890abcdefghijklmnopqrstu"




@pytest.fixture
def settings(make_settings):
    return make_settings("", ANTHROPIC_API_KEY=ANTHROPIC_KEY, GEMINI_API_KEY=GEMINI_KEY)


def anthropic(server: FakeProviderServer) -> dict:
    return {"id": "claude", "kind": "anthropic", "base_url": server.url + "/v1", "api_key_env": "ANTHROPIC_API_KEY"}


def gemini(server: FakeProviderServer) -> dict:
    return {"id": "gem", "kind": "gemini", "base_url": server.url + "/v1beta", "api_key_env": "GEMINI_API_KEY"}


def test_anthropic_fetches_every_page_and_normalizes(settings, server):
    server.route(
        "GET",
        "/v1/models",
        responses=[
            (200, fixture_json("anthropic_models_page1.json"), None),
            (200, fixture_json("anthropic_models_page2.json"), None),
        ],
    )
    models = fetch_once(settings, anthropic(server))
    assert models == [
        Model(
            provider_id="claude",
            id="claude-haiku-4-5-20251001",
            display_name="Claude Haiku 4.5",
            context_length=200000,
            max_output_tokens=64000,
            capabilities=("files", "reasoning", "vision"),
        ),
        Model(
            provider_id="claude",
            id="claude-opus-4-6",
            display_name="Claude Opus 4.6",
            context_length=1000000,
            max_output_tokens=128000,
            capabilities=("files", "reasoning", "vision"),
        ),
        Model(
            provider_id="claude",
            id="claude-sonnet-4-5-20250929",
            display_name="Claude Sonnet 4.5",
            context_length=200000,
            max_output_tokens=64000,
            capabilities=("files", "reasoning", "vision"),
        ),
    ]
    first, second = server.requests("/v1/models")
    assert "after_id" not in first.query
    assert second.query["after_id"] == "claude-haiku-4-5-20251001"
    for request in (first, second):
        assert request.headers["x-api-key"] == ANTHROPIC_KEY
        assert request.headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in request.headers


def test_anthropic_legacy_items_without_limits(settings, server):
    server.route(
        "GET",
        "/v1/models",
        json={"data": [{"id": "MiniMax-M2", "display_name": "MiniMax M2", "type": "model"}], "has_more": False},
    )
    assert fetch_once(settings, anthropic(server)) == [
        Model(provider_id="claude", id="MiniMax-M2", display_name="MiniMax M2")
    ]


def test_anthropic_pagination_that_does_not_advance_fails(settings, server):
    stuck = {"data": [{"id": "a"}], "has_more": True, "last_id": "a"}
    server.route("GET", "/v1/models", json=stuck)
    with pytest.raises(ProviderError) as caught:
        fetch_once(settings, anthropic(server))
    assert caught.value.reason == "the provider's pagination did not advance (has_more without a new last_id)"
    assert len(server.requests()) == 2


def test_gemini_fetches_every_page_and_drops_the_models_prefix(settings, server):
    server.route(
        "GET",
        "/v1beta/models",
        responses=[
            (200, fixture_json("gemini_models_page1.json"), None),
            (200, fixture_json("gemini_models_page2.json"), None),
        ],
    )
    models = {m.id: m for m in fetch_once(settings, gemini(server))}
    assert sorted(models) == ["embedding-001", "gemini-2.0-flash", "gemini-2.5-flash", "text-embedding-004"]
    assert models["gemini-2.5-flash"] == Model(
        provider_id="gem",
        id="gemini-2.5-flash",
        display_name="Gemini 2.5 Flash",
        context_length=1048576,
        max_output_tokens=65536,
        capabilities=("reasoning",),
    )
    assert models["gemini-2.0-flash"].capabilities == ()
    assert models["gemini-2.0-flash"].max_output_tokens == 8192
    assert models["text-embedding-004"] == Model(
        provider_id="gem",
        id="text-embedding-004",
        display_name="Text Embedding 004",
        context_length=2048,
        max_output_tokens=1,
        capabilities=("embedding",),
    )
    first, second = server.requests("/v1beta/models")
    assert "pageToken" not in first.query
    assert second.query["pageToken"] == "Chhtb2RlbHMvZ2VtaW5pLTIuMC1mbGFzaA=="
    assert first.headers["x-goog-api-key"] == GEMINI_KEY
    assert "key" not in first.query  # the key never travels in the URL


def test_gemini_empty_account_is_an_empty_list(settings, server):
    server.route("GET", "/v1beta/models", json={})
    assert fetch_once(settings, gemini(server)) == []
