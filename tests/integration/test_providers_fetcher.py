"""ProviderFetcher: credentials (env, SSM, Secrets Manager), redaction at the boundary, threads, URL policy."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from moto import mock_aws

from chalicelib.catalog_config import ProviderConfig
from chalicelib.errors import ProviderError
from chalicelib.http import KeptSession
from chalicelib.providers import ProviderFetcher
from chalicelib.secrets import SecretResolver
from tests.fakes import FakeProviderServer, fetch_once, fixture_json

KEY = "sk-secret-0f1e2d3c4b5a69788796a5b4"


@pytest.fixture
def server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as fake:
        fake.route("GET", "/v1/models", json=fixture_json("openai_models.json"))
        yield fake




def openai(server: FakeProviderServer, **extra) -> dict:
    return {"id": "p", "kind": "openai", "base_url": server.url + "/v1", "api_key_env": "OPENAI_API_KEY", **extra}


def test_key_from_ssm_parameter(make_settings, server):
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        ssm.put_parameter(Name="/catalog/openai", Value=KEY, Type="SecureString")
        settings = make_settings("", OPENAI_API_KEY="ssm:/catalog/openai")
        fetch_once(settings, openai(server), secrets=SecretResolver(settings.secret_env, ssm_client=ssm))
    assert server.requests()[0].headers["authorization"] == f"Bearer {KEY}"


def test_key_from_a_secrets_manager_json_field(make_settings, server):
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="prod/llm", SecretString=json.dumps({"openai": KEY, "other": "x"}))
        settings = make_settings("", OPENAI_API_KEY="secretsmanager:prod/llm#openai")
        resolver = SecretResolver(settings.secret_env, secretsmanager_client=lambda: client)
        fetch_once(settings, openai(server), secrets=resolver)
    assert server.requests()[0].headers["authorization"] == f"Bearer {KEY}"


def test_unreadable_secret_reference_fails_without_calling_the_provider(make_settings, server):
    with mock_aws():
        settings = make_settings("", OPENAI_API_KEY="ssm:/catalog/missing")
        resolver = SecretResolver(settings.secret_env, ssm_client=boto3.client("ssm", region_name="us-east-1"))
        with pytest.raises(ProviderError) as caught:
            fetch_once(settings, openai(server), secrets=resolver)
    assert caught.value.reason == (
        "OPENAI_API_KEY refers to SSM parameter /catalog/missing, which could not be read (ParameterNotFound)"
    )
    assert server.requests() == []


def test_secret_values_are_cached_within_their_ttl():
    calls: list[str] = []

    class FakeSsm:
        meta = object()

        def get_parameter(self, Name, WithDecryption):  # noqa: N803 - boto3's names
            calls.append(Name)
            return {"Parameter": {"Value": f"value-{len(calls)}"}}

    now = [0.0]
    resolver = SecretResolver({"K": "ssm:/k"}.get, ssm_client=FakeSsm(), ttl_s=300, clock=lambda: now[0])
    assert resolver.resolve("K") == resolver.resolve("K") == "value-1"
    now[0] = 301.0
    assert resolver.resolve("K") == "value-2"
    assert resolver.resolve("UNSET") is None


def test_config_header_secrets_and_crashes_are_redacted(make_settings, server, logs, monkeypatch):
    from chalicelib.providers import openai_compatible

    def explode(*args, **kwargs):
        raise RuntimeError(f"parser saw {KEY} and tok-header-secret-123")

    monkeypatch.setattr(openai_compatible, "parse_models", explode)
    settings = make_settings("", OPENAI_API_KEY=KEY)
    with pytest.raises(ProviderError) as caught:
        fetch_once(settings, openai(server, headers={"X-Org-Token": "tok-header-secret-123"}))
    assert caught.value.reason == "unexpected error while fetching the model list (RuntimeError)"
    assert server.requests()[0].headers["x-org-token"] == "tok-header-secret-123"
    crash = [line for line in logs if "provider fetch crashed" in line]
    assert crash and "[redacted]" in crash[0]
    for line in logs:
        assert KEY not in line and "tok-header-secret-123" not in line


def test_success_is_logged_with_counts(make_settings, server, logs):
    fetch_once(make_settings("", OPENAI_API_KEY=KEY), openai(server))
    [line] = [line for line in logs if "provider fetched" in line]
    assert '"provider_id":"p"' in line and '"model_count":3' in line and '"requests":1' in line


def test_one_fetcher_serves_providers_concurrently(make_settings, server):
    server.route("GET", "/v1/models", json=fixture_json("openai_models.json"), delay=0.3)
    settings = make_settings("", OPENAI_API_KEY=KEY)
    providers = [ProviderConfig.model_validate(openai(server, id=f"p{i}")) for i in range(6)]
    with ProviderFetcher(settings) as fetcher, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda p: fetcher.fetch(p, time.monotonic() + 10), providers))
    assert [len(models) for models in results] == [3] * 6
    assert all(models == results[0] for models in results)  # records carry no provider id: the same list each
    assert server.max_in_flight("/v1/models") > 1  # not serialized behind one connection


def test_a_passed_deadline_fails_at_once(make_settings, server):
    settings = make_settings("", OPENAI_API_KEY=KEY)
    with pytest.raises(ProviderError, match=r"^timed out after .* \(the refresh deadline\)$"):
        fetch_once(settings, openai(server), deadline_s=-1)
    assert server.requests() == []


def test_private_urls_follow_the_settings(make_settings, server):
    settings = dataclasses.replace(make_settings("", OPENAI_API_KEY=KEY), allow_private_urls=False)
    with pytest.raises(ProviderError) as caught:
        fetch_once(settings, openai(server))
    assert caught.value.reason.endswith("does not use https:// (set MODEL_CATALOG_ALLOW_PRIVATE_URLS=1 to allow http)")
    assert server.requests() == []


# ------------------------------------------------------------------ the session kept from one run to the next


def _runs(settings, server, kept, count: int = 2) -> None:
    for _ in range(count):
        fetch_once(settings, openai(server), kept_session=kept)


def test_a_kept_session_reuses_the_last_runs_connection(make_settings, server):
    settings = make_settings("", OPENAI_API_KEY=KEY)
    _runs(settings, server, KeptSession(pool_size=4))
    assert server.connections() == 1 and len(server.requests()) == 2
    _runs(settings, server, None)  # negative control: each run's own session connects again
    assert server.connections() == 3


def test_a_kept_session_idle_too_long_is_closed_and_a_new_one_connects(make_settings, server):
    settings = make_settings("", OPENAI_API_KEY=KEY)
    now = [100.0]
    kept = KeptSession(pool_size=4, idle_s=30, clock=lambda: now[0])
    _runs(settings, server, kept)
    now[0] += 31
    _runs(settings, server, kept)
    assert server.connections() == 2 and len(server.requests()) == 4


def test_a_kept_session_is_not_closed_while_a_run_has_it():
    now = [100.0]
    kept = KeptSession(pool_size=4, idle_s=30, clock=lambda: now[0])
    first = kept.lend()
    now[0] += 60  # the first run is long; the second starts meanwhile (it waits for the lock)
    second = kept.lend()
    assert second is first
    kept.give_back()
    kept.give_back()
    assert kept.lend() is first  # idle since it came back, not since it was first lent


def test_a_connection_the_provider_closed_between_runs_is_not_reused(make_settings, server, logs):
    settings = make_settings("", OPENAI_API_KEY=KEY)
    kept = KeptSession(pool_size=4)
    _runs(settings, server, kept, count=1)
    server.drop_connections()  # the provider's keep-alive timeout
    time.sleep(0.1)
    _runs(settings, server, kept, count=1)
    assert server.connections() == 2 and len(server.requests()) == 2
    fetched = [json.loads(line) for line in logs if '"provider fetched"' in line]
    assert [entry["requests"] for entry in fetched] == [1, 1]  # no failed attempt, no retry
