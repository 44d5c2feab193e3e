"""The limits of one provider's answer (chalicelib.core.limits, docs/reference.md §4 "Limits") and the bounded fetch
path: the model count checked before models are built, deep JSON, one large answer at a time, a linear-time
``model_filter``, a fingerprint that never holds the whole list's text."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.core.domain import canonical_json, models_fingerprint
from chalicelib.core.limits import (
    MAX_DISPLAY_NAME_CHARS,
    MAX_LIST_ITEMS,
    MAX_MODELS_CEILING,
    MAX_MODELS_PER_PROVIDER,
    record_violation,
    records_violation,
)
from chalicelib.errors import ProviderError
from chalicelib.http import HttpClient, Redactor, UrlGuard
from chalicelib.http._client import LARGE_ANSWER_BYTES
from tests.fakes import FakeProviderServer, fetch_once


def record(model_id: str = "m", **fields) -> dict:
    return {"id": model_id, "display_name": None, "context_length": None, "max_output_tokens": None,
            "capabilities": [], "pricing": None, **fields}


# -- the pure limits ----------------------------------------------------------------------------------------------


def test_a_normal_record_is_within_every_limit() -> None:
    full = record("openai/gpt-4o", display_name="GPT-4o", context_length=128_000, max_output_tokens=16_384,
                  capabilities=["tools", "vision"], pricing={"input_per_mtok": 2.5, "output_per_mtok": 10.0})
    assert record_violation(full) is None
    assert records_violation([full, record("x")]) is None


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"display_name": "x" * 600_000}, "display_name is 600,000 characters long, over the limit of 256"),
        ({"id": "m" * 257}, "id is 257 characters long, over the limit of 256"),
        ({"status": "s" * 1_025}, "status is 1,025 characters long, over the limit of 1,024"),
        ({"capabilities": ["tools"] * (MAX_LIST_ITEMS + 1)}, "capabilities has 65 items, over the limit of 64"),
        ({"context_length": 10**16}, "context_length is a 17-digit number, beyond the limit of ±10^15"),
        ({"context_length": 10**5000}, "a number of more than 4,000 digits"),
        ({"pricing": {"input_per_mtok": float("inf"), "output_per_mtok": 1.0}}, "pricing.input_per_mtok is inf"),
        ({"modalities": {"input": {"deeper": {"still": ["x"]}}}}, "nested deeper than 4 levels"),
        ({"modalities": {"input": ["y" * 1_000] * 17}}, "more than 16,384 characters together"),
        ({"extra": object()}, "extra holds a object, not a JSON value"),
    ],
)
def test_each_limit_names_the_field_and_the_limit(fields, words) -> None:
    assert words in record_violation(record(**fields))


def test_a_provider_answer_names_the_first_offender_and_how_many_break_a_limit() -> None:
    models = [record("fine"), record("n" * 300), record("big", display_name="x" * (MAX_DISPLAY_NAME_CHARS + 1))]
    reason = records_violation(models)
    assert reason.startswith("2 of 3 models break the model field limits: model 'nnnnnnnn")
    assert "…': id is 300 characters long, over the limit of 256; keeping the last good list" in reason
    assert len(reason) < 300  # a reason quotes a clipped id, never the offending value


def test_too_many_models_for_one_provider() -> None:
    assert records_violation([record(f"m{i}") for i in range(MAX_MODELS_PER_PROVIDER)]) is None
    reason = records_violation([record(f"m{i}") for i in range(MAX_MODELS_PER_PROVIDER + 1)])
    assert reason == ("the provider listed 50,001 models, more than the limit of 50,000 models per provider "
                      "(max_models in the provider's config raises it, up to 100,000); keeping the last good list")
    assert records_violation([record(f"m{i}") for i in range(MAX_MODELS_PER_PROVIDER + 1)], max_models=60_000) is None
    at_the_ceiling = records_violation([record(f"m{i}") for i in range(MAX_MODELS_CEILING + 1)], MAX_MODELS_CEILING)
    assert at_the_ceiling == ("the provider listed 100,001 models, more than the limit of 100,000 models per provider; "
                              "keeping the last good list")  # nothing left to raise: no setting named


def test_the_fingerprint_is_the_hash_of_the_lists_canonical_json_without_building_it() -> None:
    for records in ([], [record("a")], [record("é", display_name="ü"), record("b", pricing={"z": 1, "a": 2})]):
        assert models_fingerprint(records) == hashlib.sha256(canonical_json(records).encode()).hexdigest()


# -- the fetch path ---------------------------------------------------------------------------------------------------


@pytest.fixture
def settings(make_settings):
    return make_settings("")


def openai_provider(server: FakeProviderServer, **extra) -> dict:
    return {"id": "p", "kind": "openai", "base_url": server.url + "/v1", **extra}


def tiny_models(count: int) -> dict:
    return {"data": [{"id": f"m-{i:07d}"} for i in range(count)]}


def test_too_many_models_fail_before_any_model_is_built(settings, server, monkeypatch) -> None:
    import chalicelib.providers.openai_compatible as adapter

    built = []
    monkeypatch.setattr(adapter, "to_model", lambda *args: built.append(args))
    server.route("GET", "/v1/models", json=tiny_models(MAX_MODELS_PER_PROVIDER + 1))
    with pytest.raises(ProviderError) as caught:
        fetch_once(settings, openai_provider(server))
    assert "listed 50,001 models, more than the limit of 50,000" in caught.value.reason
    assert built == []


def test_a_registry_with_too_many_models_fails_before_they_are_built(settings, server) -> None:
    document = {"a": {"models": {f"m{i}": {} for i in range(30_000)}},
                "b": {"models": {f"m{i}": {} for i in range(30_000)}}}
    server.route("GET", "/api.json", json=document)
    with pytest.raises(ProviderError) as caught:
        fetch_once(settings, {"id": "r", "kind": "registry", "url": server.url + "/api.json"})
    assert "listed 60,000 models, more than the limit of 50,000" in caught.value.reason


def test_json_nested_too_deeply_fails_that_provider_with_a_reason(settings, server) -> None:
    server.route("GET", "/v1/models", body="[" * 200_000 + "]" * 200_000, headers={"Content-Type": "application/json"})
    # The engine fetches in worker threads (smaller C stacks than the main thread): check there.
    with ThreadPoolExecutor(max_workers=1) as pool, pytest.raises(ProviderError) as caught:
        pool.submit(fetch_once, settings, openai_provider(server)).result()
    assert caught.value.reason.endswith("got JSON nested too deeply to read")


@pytest.mark.timeout(60)
def test_a_pathological_model_filter_runs_in_linear_time(settings, server) -> None:
    """``(a+)+$`` against a long id: exponential for a backtracking engine, linear for RE2. (The timeout only
    turns a hang into a failure; it is no speed target.)"""
    long_id = "a" * 50_000 + "b"
    server.route("GET", "/v1/models", json={"data": [{"id": long_id[-250:]}, {"id": "aaaa"}]})
    models = fetch_once(settings, openai_provider(server, model_filter="(a+)+$"))
    assert [m.id for m in models] == ["aaaa"]
    from chalicelib.providers.model_filter import compile_model_filter

    assert compile_model_filter("(a+)+$").search(long_id) is None


def test_negative_control_pythons_re_does_not_finish_the_same_filter() -> None:
    code = "import re; re.search(r'(a+)+$', 'a' * 40 + 'b')"
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", code], timeout=3)


class TestOneLargeAnswerAtATime:
    """Answers over LARGE_ANSWER_BYTES are read one at a time per run (the slot is held until the fetch finishes)."""

    @staticmethod
    def http(client: HttpClient, deadline_s: float):
        return client.for_provider("p", deadline=time.monotonic() + deadline_s, redactor=Redactor())

    def test_a_large_answer_waits_for_the_slot_and_gives_up_at_its_deadline(self, server) -> None:
        client = HttpClient(UrlGuard(allow_private=True))
        big = {"data": [{"id": "x" * 1_000}] * (LARGE_ANSWER_BYTES // 1_000 + 10)}
        server.route("GET", "/big", json=big)
        server.route("GET", "/small", json={"data": [{"id": "x"}]})
        holder = self.http(client, 10)
        holder.get_json(server.url + "/big", expect="a list")  # holds the slot until it finishes
        assert holder.holds_large_answer
        waiting = self.http(client, 0.5)
        with pytest.raises(ProviderError) as caught:
            waiting.get_json(server.url + "/big", expect="a list")
        assert "waiting to read its answer: answers over 1 MB are read one at a time" in caught.value.reason
        assert self.http(client, 0.5).get_json(server.url + "/small", expect="a list")  # small ones never wait
        holder.finish()
        after = self.http(client, 5)
        assert len(after.get_json(server.url + "/big", expect="a list")["data"]) == len(big["data"])
        after.finish()
        assert client.large_answers.acquire(blocking=False)  # released: nothing leaks

    def test_the_fetcher_releases_the_slot_after_each_fetch_even_a_failed_one(self, settings, server) -> None:
        from chalicelib.catalog_config import ProviderConfig
        from chalicelib.providers import ProviderFetcher

        big = {"data": [{"id": f"m{i}", "description": "d" * 1_000} for i in range(1_200)]}
        server.route("GET", "/v1/models", json=big)
        server.route("GET", "/bad/v1/models", body=json.dumps(big)[:-5] + "[[[[", headers={"Content-Type": "x"})
        fetcher = ProviderFetcher(settings, sleep=lambda _s: None)
        good = ProviderConfig.model_validate(openai_provider(server))
        bad = ProviderConfig.model_validate({"id": "b", "kind": "openai", "base_url": server.url + "/bad/v1"})
        with pytest.raises(ProviderError):
            fetcher.fetch(bad, time.monotonic() + 5)
        for _ in range(2):
            assert len(fetcher.fetch(good, time.monotonic() + 5)) == 1_200
        fetcher.close()


def test_a_body_over_the_limit_names_the_setting_that_raises_it(settings, server) -> None:
    from chalicelib.core.domain import Model

    server.route("GET", "/v1/models", json={"data": [{"id": f"m-{i:07d}", "pad": "x" * 200} for i in range(20_000)]})
    small = {"max_response_mb": 1}
    with pytest.raises(ProviderError) as caught:
        fetch_once(settings, openai_provider(server, **small))
    assert caught.value.reason.startswith("the response is larger than the 1 MB limit (4.4")
    assert caught.value.reason.endswith(" MB declared); max_response_mb in the provider's config raises it, up to 64")
    assert len(fetch_once(settings, openai_provider(server, max_response_mb=5))) == 20_000  # raised: it is read
    assert all(isinstance(m, Model) for m in fetch_once(settings, openai_provider(server))[:1])


def test_max_models_raises_the_model_limit_for_one_provider(settings, server) -> None:
    server.route("GET", "/v1/models", json=tiny_models(MAX_MODELS_PER_PROVIDER + 1))
    assert len(fetch_once(settings, openai_provider(server, max_models=60_000))) == MAX_MODELS_PER_PROVIDER + 1


def test_the_quick_check_of_plain_records_never_passes_what_the_full_check_refuses(monkeypatch) -> None:
    """records_violation skips walking a record whose every value is plainly within the limits; over plain records
    and every kind of odd one, it must answer exactly what walking every record answers."""
    import math as _math
    import random

    from chalicelib.core import limits

    rng = random.Random(17)
    plain = {"id": "vendor/model-1", "display_name": "Model 1", "context_length": 128_000, "max_output_tokens": 8_192,
             "capabilities": ["tools", "vision"], "status": "active", "retires_at": None,
             "pricing": {"input_per_mtok": 1.5, "output_per_mtok": 6.0, "cache_read_per_mtok": None,
                         "cache_write_per_mtok": 0.3},
             "modalities": {"input": ["text", "image"], "output": ["text"]}}
    odd_values = {
        "id": ["x" * 256, "x" * 257, 5, None], "display_name": ["y" * 256, "y" * 257, ["a"], True],
        "context_length": [10**15, 10**15 + 1, -(10**16), 1.5, True, "12"],
        "max_output_tokens": [float("nan"), 2**70], "status": ["s" * 1_024, "s" * 1_025, {"a": 1}],
        "retires_at": ["2026-01-01", "r" * 2_000], "capabilities": [["t"] * 64, ["t"] * 65, [["deep"]], [1], "tools"],
        "pricing": [{"input_per_mtok": _math.inf}, {"a": {"b": {"c": {"d": 1}}}}, {f"k{i}": 1 for i in range(65)},
                    {"input_per_mtok": 10**16}, {"x" * 2_000: 1}, []],
        "modalities": [{"input": ["w" * 2_000]}, {"input": [["x"]]}, {"input": "text"}, {f"k{i}": [] for i in range(9)},
                       {"input": ["w"] * 20}],
    }
    records = [plain, {**plain, "extra": 1}, {k: v for k, v in plain.items() if k != "status"}]
    for name, values in odd_values.items():
        records += [{**plain, name: value} for value in values]
    for _ in range(300):  # combinations
        record = dict(plain)
        for name in rng.sample(list(odd_values), 2):
            record[name] = rng.choice(odd_values[name])
        records.append(record)
    for record in records:
        if limits._plainly_within(record, set()):
            assert limits.record_violation(record) is None, record
    assert limits._plainly_within(plain, set())  # the quick path is taken for the usual record
    quick = limits.records_violation(records)
    monkeypatch.setattr(limits, "_plainly_within", lambda record, seen: False)
    assert limits.records_violation(records) == quick and quick is not None
