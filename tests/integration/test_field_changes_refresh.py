"""Field-level changes, lifecycle and overrides (docs/reference.md §10) through the real refresh: the service as
``bootstrap`` wires it on moto, the real provider fetcher against fake providers (real HTTP servers on 127.0.0.1)
serving the recorded fixtures."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.core.domain import MODEL_FIELDS, models_fingerprint
from chalicelib.storage import codec
from chalicelib.storage.journal import EventJournal
from tests.conftest import wired
from tests.fakes import fixture_json
from tests.fakes.engine import CatalogWrites

# What version 1's records held: the fields of docs/reference.md §2 before §10 added any.
V1_FIELDS = ("id", "display_name", "context_length", "max_output_tokens", "capabilities", "pricing")


class Version1Fetcher:
    """The real fetcher, with its records cut down to what version 1 stored (no status, retires_at, modalities, and
    pricing without cache prices): running a refresh through it leaves exactly the catalog version 1 left."""

    def __init__(self, fetcher: Any):
        self._fetcher = fetcher

    def fetch(self, provider: Any, deadline: float) -> list[dict[str, Any]]:
        records = []
        for record in self._fetcher.fetch(provider, deadline):
            old = {name: record[name] for name in V1_FIELDS}
            if old["pricing"] is not None:
                old["pricing"] = {k: old["pricing"][k] for k in ("input_per_mtok", "output_per_mtok")}
            records.append(old)
        return records

    def close(self) -> None:
        self._fetcher.close()


def config(server_url: str, *providers: str, overrides: str = "") -> str:
    blocks = {
        "groq": f'[[providers]]\nid = "groq"\nkind = "openai"\nbase_url = "{server_url}/groq/v1"\n',
        "or": f'[[providers]]\nid = "or"\nkind = "openrouter"\nbase_url = "{server_url}/or/api/v1"\n',
        "openai": f'[[providers]]\nid = "openai"\nkind = "openai"\nbase_url = "{server_url}/openai/v1"\n',
    }
    head = "[model_catalog]\nrefresh_interval_ms = 0\nrefresh_on_start = false\n"
    return head + "".join(blocks[p] for p in providers) + overrides


@pytest.fixture
def providers(server):
    server.route("GET", "/groq/v1/models", json=fixture_json("groq_models.json"))
    server.route("GET", "/or/api/v1/models", json=fixture_json("openrouter_models.json"))
    server.route("GET", "/openai/v1/models", json=fixture_json("openai_models.json"))
    return server


def version_1_catalog(settings: Any, dynamodb_client: Any) -> dict[str, Any]:
    """Refresh once as version 1 would have: its records and its fingerprints end up in the store."""
    today = wired(settings, dynamodb_client)
    v1 = wired(settings, dynamodb_client, fetcher_factory=lambda: Version1Fetcher(today.fetcher_factory()))
    return v1.service.refresh("all")


def test_a_catalog_stored_by_version_1_reads_with_defaults_and_refreshes_without_updates(
    providers, make_settings, dynamodb_client
) -> None:
    settings = make_settings(config(providers.url, "groq"))
    first = version_1_catalog(settings, dynamodb_client)
    assert first["changed"][0]["added"] == ["llama-3.1-8b-instant", "openai/gpt-oss-20b", "whisper-large-v3-turbo"]
    container = wired(settings, dynamodb_client)
    manifest = container.catalog.read_manifest()
    stored = container.catalog.read_provider_models("groq", manifest.providers["groq"])
    chunks = dynamodb_client.query(
        TableName=settings.tables.catalog,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "MODELS#groq"}},
    )["Items"]
    written = [record for item in chunks for record in codec.unpack(item["body"]["B"])]
    assert [set(r) for r in written] == [set(V1_FIELDS)] * 3  # the chunks hold version 1's records...
    assert manifest.providers["groq"].fingerprint == models_fingerprint(written)  # ...and the manifest its fingerprint
    assert [set(r) for r in stored] == [set(MODEL_FIELDS)] * 3  # read in today's shape

    # Read: every REST model carries the new fields, with their defaults.
    models = container.service.list_models()["models"]
    assert [set(m) for m in models] == [{"provider_id", *MODEL_FIELDS}] * 3
    assert {(m["status"], m["retires_at"], m["modalities"]) for m in models} == {("active", None, None)}

    # Refresh with today's adapters: the fingerprint differs (the records gained keys), the stored list is read
    # and diffed, and nothing changed: no update, no event, no catalog write.
    writes = CatalogWrites(dynamodb_client, settings.tables.catalog)
    again = container.service.refresh("all")
    assert again == {"revision": 1, "changed": [], "unchanged": ["groq"], "failed": []}
    assert writes.count == 0
    after = container.catalog.read_manifest()
    assert (after.revision, after.seq, after.providers) == (manifest.revision, manifest.seq, manifest.providers)
    assert [e["seq"] for e in EventJournal(dynamodb_client, settings.tables.events).replay(manifest.epoch, 0)] == [1]

    # The next real change is reported alone, and the list is stored in today's shape (its fingerprint adopted).
    changed = fixture_json("groq_models.json")
    changed["data"][1]["context_window"] = 65536
    providers.route("GET", "/groq/v1/models", json=changed)
    result = container.service.refresh("all")
    assert result["changed"] == [
        {"provider_id": "groq", "provider_name": "groq", "added": [], "removed": [], "updated": ["llama-3.1-8b-instant"],
         "changes": [{"model_id": "llama-3.1-8b-instant", "field": "context_length", "before": 131072, "after": 65536}]}
    ]
    entry = container.catalog.read_manifest().providers["groq"]
    current = container.catalog.read_provider_models("groq", entry)
    assert entry.fingerprint == models_fingerprint(current) and all(set(r) == set(MODEL_FIELDS) for r in current)


def test_a_provider_that_publishes_the_new_fields_reports_them_once_after_the_upgrade(
    providers, make_settings, dynamodb_client
) -> None:
    """OpenRouter publishes modalities and cache prices that version 1 did not read: the first refresh after the
    upgrade reports exactly those fields (null → value) as changes; the refresh after it, nothing."""
    settings = make_settings(config(providers.url, "or"))
    version_1_catalog(settings, dynamodb_client)
    container = wired(settings, dynamodb_client)
    result = container.service.refresh("all")
    [change] = result["changed"]
    assert change["updated"] == ["anthropic/claude-sonnet-4.5", "meta-llama/llama-3.3-70b-instruct:free",
                                 "openai/gpt-4o-mini"]
    sonnet = [c for c in change["changes"] if c["model_id"] == "anthropic/claude-sonnet-4.5"]
    assert sonnet == [
        {"model_id": "anthropic/claude-sonnet-4.5", "field": "pricing",
         "before": {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cache_read_per_mtok": None,
                    "cache_write_per_mtok": None},
         "after": {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cache_read_per_mtok": 0.3,
                   "cache_write_per_mtok": 3.75}},
        {"model_id": "anthropic/claude-sonnet-4.5", "field": "modalities",
         "before": None, "after": {"input": ["text", "image", "pdf"], "output": ["text"]}},
    ]
    free = [c["field"] for c in change["changes"] if c["model_id"] == "meta-llama/llama-3.3-70b-instruct:free"]
    assert free == ["modalities"]  # no cache prices published: its pricing did not change
    assert container.service.refresh("all")["unchanged"] == ["or"]


OVERRIDES = """
[[overrides]]
provider_id = "openai"
model = "gpt-4*"
status = "deprecated"
retires_at = "2026-12-31"

[[overrides]]
provider_id = "openai"
model = "gpt-4o-mini"
context_length = 128000
pricing = { input_per_mtok = 0.15, output_per_mtok = 0.6 }
"""


def by_id(container: Any) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in container.service.list_models("openai")["models"]}


def test_overrides_win_survive_every_refresh_and_a_changed_override_is_an_update(
    providers, make_settings, dynamodb_client
) -> None:
    container = wired(make_settings(config(providers.url, "openai", overrides=OVERRIDES)), dynamodb_client)
    first = container.service.refresh("all")
    assert first["changed"][0]["added"] == ["gpt-4-0613", "gpt-4o-mini", "text-embedding-3-small"]
    models = by_id(container)
    # The glob: both gpt-4* models; the provider's own shutdown_date (2026-10-23) loses to the config.
    assert {i: (m["status"], m["retires_at"]) for i, m in models.items()} == {
        "gpt-4-0613": ("deprecated", "2026-12-31"),
        "gpt-4o-mini": ("deprecated", "2026-12-31"),
        "text-embedding-3-small": ("active", None),
    }
    # The exact id: values the provider does not publish at all.
    assert models["gpt-4o-mini"]["context_length"] == 128000
    assert models["gpt-4o-mini"]["pricing"] == {"input_per_mtok": 0.15, "output_per_mtok": 0.6,
                                                "cache_read_per_mtok": None, "cache_write_per_mtok": None}

    # Survives refreshes: the same answer stays unchanged (no flip back to the provider's values)...
    assert container.service.refresh("all")["unchanged"] == ["openai"]
    # ...and a refresh with a real change keeps the overrides on the old models and applies them to new ones.
    body = fixture_json("openai_models.json")
    body["data"].append({"id": "gpt-4.1", "object": "model", "created": 1744316542, "owned_by": "system"})
    providers.route("GET", "/openai/v1/models", json=body)
    added = container.service.refresh("all")
    assert added["changed"][0]["added"] == ["gpt-4.1"] and added["changed"][0]["updated"] == []
    models = by_id(container)
    assert models["gpt-4.1"]["status"] == "deprecated" and models["gpt-4o-mini"]["context_length"] == 128000

    # Changing an override (the config is read at start: a new deployment) is an update at the next refresh.
    changed = OVERRIDES.replace("context_length = 128000", "context_length = 200000").replace(
        "input_per_mtok = 0.15", "input_per_mtok = 0.1"
    )
    redeployed = wired(make_settings(config(providers.url, "openai", overrides=changed)), dynamodb_client)
    result = redeployed.service.refresh("all")
    assert result["changed"] == [
        {"provider_id": "openai", "provider_name": "openai", "added": [], "removed": [], "updated": ["gpt-4o-mini"],
         "changes": [
             {"model_id": "gpt-4o-mini", "field": "context_length", "before": 128000, "after": 200000},
             {"model_id": "gpt-4o-mini", "field": "pricing",
              "before": {"input_per_mtok": 0.15, "output_per_mtok": 0.6, "cache_read_per_mtok": None,
                         "cache_write_per_mtok": None},
              "after": {"input_per_mtok": 0.1, "output_per_mtok": 0.6, "cache_read_per_mtok": None,
                        "cache_write_per_mtok": None}},
         ]}
    ]
    # Removing the overrides gives the provider's own values back, reported as changes too.
    plain = wired(make_settings(config(providers.url, "openai")), dynamodb_client)
    back = plain.service.refresh("all")["changed"][0]
    assert {(c["model_id"], c["field"]): (c["before"], c["after"]) for c in back["changes"]} == {
        ("gpt-4-0613", "retires_at"): ("2026-12-31", "2026-10-23"),  # the provider's shutdown_date
        ("gpt-4.1", "status"): ("deprecated", "active"),
        ("gpt-4.1", "retires_at"): ("2026-12-31", None),
        ("gpt-4o-mini", "context_length"): (200000, None),
        ("gpt-4o-mini", "pricing"): (
            {"input_per_mtok": 0.1, "output_per_mtok": 0.6, "cache_read_per_mtok": None, "cache_write_per_mtok": None},
            None,
        ),
        ("gpt-4o-mini", "status"): ("deprecated", "active"),
        ("gpt-4o-mini", "retires_at"): ("2026-12-31", None),
    }


def test_an_override_for_a_model_the_provider_does_not_list_adds_nothing(
    providers, make_settings, dynamodb_client
) -> None:
    overrides = '[[overrides]]\nprovider_id = "openai"\nmodel = "gpt-9*"\nstatus = "deprecated"\n'
    container = wired(make_settings(config(providers.url, "openai", overrides=overrides)), dynamodb_client)
    container.service.refresh("all")
    assert sorted(by_id(container)) == ["gpt-4-0613", "gpt-4o-mini", "text-embedding-3-small"]
    assert by_id(container)["gpt-4-0613"]["status"] == "deprecated"  # by its own shutdown_date, not the override
