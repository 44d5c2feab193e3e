"""``core.version.catalog_version``: what the ETags of the read routes are made of (docs/reference.md §8)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.catalog_config import CatalogConfig
from chalicelib.core.manifest import Manifest, ProviderEntry
from chalicelib.core.state import ProviderStatus, RefreshState
from chalicelib.core.version import catalog_version

MANIFEST = Manifest(
    revision=4,
    epoch="e1",
    seq=4,
    providers={
        "openai": ProviderEntry(generation="g1", chunks=1, count=3, fingerprint="f1"),
        "demo": ProviderEntry(generation="g2", chunks=2, count=900, fingerprint="f2"),
    },
)
STATE = RefreshState(providers={"openai": ProviderStatus(last_refreshed_at="2026-12-01T00:00:00.000Z")})


def config(**provider: object) -> CatalogConfig:
    return CatalogConfig.model_validate({
        "providers": [
            {"id": "openai", "kind": "openai", "base_url": "https://api.openai.com/v1", **provider},
            {"id": "demo", "kind": "registry", "url": "https://models.example/api.json"},
        ]
    })


def entry(**changes: object) -> ProviderEntry:
    return replace(MANIFEST.providers["demo"], **changes)


def test_equal_inputs_give_equal_versions() -> None:
    assert catalog_version(MANIFEST, config(), STATE) == catalog_version(MANIFEST, config(), STATE)
    reordered = replace(MANIFEST, providers=dict(reversed(list(MANIFEST.providers.items()))))
    assert catalog_version(reordered, config()) == catalog_version(MANIFEST, config())


@pytest.mark.parametrize(
    "changed",
    [
        replace(MANIFEST, revision=5),
        replace(MANIFEST, epoch="e2"),  # a new epoch after a crash may reuse a revision with other content
        replace(MANIFEST, providers={**MANIFEST.providers, "demo": entry(fingerprint="f3")}),
        replace(MANIFEST, providers={**MANIFEST.providers, "demo": entry(generation="g9")}),
        replace(MANIFEST, providers={**MANIFEST.providers, "demo": entry(count=901)}),
        replace(MANIFEST, providers={"openai": MANIFEST.providers["openai"]}),
    ],
)
def test_any_change_of_the_manifest_changes_the_version(changed: Manifest) -> None:
    assert catalog_version(changed, config()) != catalog_version(MANIFEST, config())


def test_a_config_change_that_a_body_shows_changes_the_version() -> None:
    assert catalog_version(MANIFEST, config(name="OpenAI")) != catalog_version(MANIFEST, config())
    assert catalog_version(MANIFEST, config(api_key_env="OPENAI_KEY")) != catalog_version(MANIFEST, config())


def test_provider_headers_stay_out_of_it() -> None:
    # They may carry secrets and no body shows them.
    with_headers = config(headers={"X-Secret": "s3cr3t"})
    assert catalog_version(MANIFEST, with_headers) == catalog_version(MANIFEST, config())


def test_statuses_count_only_when_given() -> None:
    failing = RefreshState(providers={
        "openai": ProviderStatus(last_refreshed_at="2026-12-01T00:00:00.000Z", last_error="HTTP 503"),
    })
    assert catalog_version(MANIFEST, config(), failing) != catalog_version(MANIFEST, config(), STATE)
    # A status-only change leaves the models' version (no state) alone.
    assert catalog_version(MANIFEST, config()) == catalog_version(MANIFEST, config())
    later = RefreshState(providers={"openai": ProviderStatus(last_refreshed_at="2026-12-02T00:00:00.000Z")})
    assert catalog_version(MANIFEST, config(), later) != catalog_version(MANIFEST, config(), STATE)


def test_new_code_gives_a_new_version() -> None:
    # A deployment may render the same catalog differently (a new field): clients must not keep the old body.
    assert catalog_version(MANIFEST, config(), code="code-1") != catalog_version(MANIFEST, config(), code="code-2")
    assert catalog_version(MANIFEST, config(), code="code-1") == catalog_version(MANIFEST, config(), code="code-1")
