"""The event message (docs/reference.md §3) and its size limits: pure, no DynamoDB."""

from __future__ import annotations

import json
import random

from chalicelib.clock import utc_iso as utc_timestamp
from chalicelib.core.domain import FieldChange, ProviderChange, ProviderFailure, RefreshResult
from chalicelib.core.events import EVENT_TYPE, build_event_message
from chalicelib.core.results import shrunk_results
from chalicelib.events import MAX_WIRE_BYTES, encode_for_wire
from chalicelib.events._message import fit_to_wire, wire_size

EPOCH = "ep-test-1"


def result(revision: int = 1, added: list[str] | None = None) -> RefreshResult:
    return RefreshResult(
        revision=revision,
        changed=[ProviderChange(provider_id="openai", provider_name="OpenAI", added=added or ["gpt-x"])],
        unchanged=["anthropic"],
        failed=[ProviderFailure(provider_id="groq", reason="HTTP 503 from https://api.groq.com/openai/v1/models")],
    )


def message(seq: int, epoch: str = EPOCH, **kwargs) -> dict:
    return build_event_message(seq, epoch, f"2026-01-01T00:00:{seq % 60:02d}.000Z", result(revision=seq, **kwargs))


def huge_result(ids_per_provider: int, providers: int = 4, seed_value: int = 7) -> RefreshResult:
    # Random ids barely compress, so they stress both the wire limit and the packed journal limit.
    rng = random.Random(seed_value)
    changed = [
        ProviderChange(
            provider_id=f"p{index}",
            provider_name=f"Provider {index}",
            added=[f"{rng.getrandbits(96):024x}" for _ in range(ids_per_provider)],
            removed=[f"{rng.getrandbits(64):016x}" for _ in range(ids_per_provider // 4)],
            updated=[f"{rng.getrandbits(64):016x}" for _ in range(ids_per_provider // 8)],
        )
        for index in range(providers)
    ]
    return RefreshResult(revision=9, changed=changed, unchanged=["quiet"], failed=[])


# --- message shape ---------------------------------------------------------------------------------------


def test_build_event_message_has_the_contract_shape_and_the_rest_payload():
    refresh = result(revision=4)
    built = build_event_message(7, EPOCH, "2026-01-01T00:00:00.000Z", refresh)
    assert built == {
        "type": EVENT_TYPE,
        "seq": 7,
        "epoch": EPOCH,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "payload": refresh.model_dump(mode="json"),
    }
    assert built["type"] == "event.model_catalog.changed"
    json.dumps(built)  # JSON-serializable as is


def test_utc_timestamp_is_iso_8601_utc_with_z():
    assert utc_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert utc_timestamp(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"


# --- truncation -------------------------------------------------------------------------------------------


def test_a_small_message_is_left_alone():
    original = message(1)
    assert fit_to_wire(original, MAX_WIRE_BYTES) is original
    assert json.loads(encode_for_wire(original)) == original


def test_a_message_over_128kb_is_truncated_to_fit_with_counts_and_provider_ids():
    original = build_event_message(3, EPOCH, utc_timestamp(0), huge_result(3_000))
    assert wire_size(original) > MAX_WIRE_BYTES
    text = encode_for_wire(original)
    assert len(text.encode("utf-8")) <= MAX_WIRE_BYTES <= 128 * 1024
    sent = json.loads(text)
    assert sent["truncated"] is True and sent["payload"]["truncated"] is True
    assert (sent["type"], sent["seq"], sent["epoch"]) == (EVENT_TYPE, 3, EPOCH)
    assert sent["payload"]["revision"] == 9
    assert [c["provider_id"] for c in sent["payload"]["changed"]] == ["p0", "p1", "p2", "p3"]
    first = sent["payload"]["changed"][0]
    assert (first["added_count"], first["removed_count"], first["updated_count"]) == (3_000, 750, 375)
    assert first["added"] == [] and first["provider_name"] == "Provider 0"
    assert sent["payload"]["unchanged"] == ["quiet"]


def test_truncation_still_fits_when_even_the_provider_lists_are_too_big():
    failed = [ProviderFailure(provider_id=f"prov-{i:05d}", reason="x" * 500) for i in range(2_000)]
    changed = [ProviderChange(provider_id=f"chg-{i:05d}", provider_name="n" * 40, added=["a"]) for i in range(3_000)]
    big = RefreshResult(revision=2, changed=changed, unchanged=[f"u-{i}" for i in range(3_000)], failed=failed)
    sent = json.loads(encode_for_wire(build_event_message(1, EPOCH, utc_timestamp(0), big)))
    assert len(json.dumps(sent, separators=(",", ":")).encode()) <= MAX_WIRE_BYTES
    assert sent["truncated"] is True
    payload = sent["payload"]
    assert payload["revision"] == 2 and payload["truncated"] is True
    # Whatever had to go is still counted, so a client knows what it is missing.
    assert payload["unchanged_count"] == 3_000
    assert payload.get("failed_count", len(payload["failed"])) == 2_000


def priced_changes(model_id: str) -> list[FieldChange]:
    before = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cache_read_per_mtok": 0.3, "cache_write_per_mtok": 3.75}
    return [
        FieldChange(model_id=model_id, field="context_length", before=128_000, after=200_000),
        FieldChange(model_id=model_id, field="pricing", before=before, after={**before, "input_per_mtok": 2.5}),
        FieldChange(model_id=model_id, field="status", before="deprecated", after="active"),
    ]


def result_with_changes(models: int) -> RefreshResult:
    ids = [f"model-{i:05d}" for i in range(models)]
    change = ProviderChange(
        provider_id="or", provider_name="OpenRouter", updated=ids, changes=[c for i in ids for c in priced_changes(i)]
    )
    return RefreshResult(revision=4, changed=[change], unchanged=["quiet"], failed=[])


def test_field_changes_are_dropped_first_and_the_ids_stay() -> None:
    original = build_event_message(5, EPOCH, utc_timestamp(0), result_with_changes(1_000))
    assert wire_size(original) > MAX_WIRE_BYTES  # the changes are what does not fit
    assert wire_size({**original, "payload": {**original["payload"], "changed": [
        {**original["payload"]["changed"][0], "changes": []}]}}) < MAX_WIRE_BYTES  # the ids alone would
    sent = json.loads(encode_for_wire(original))
    assert sent["truncated"] is True and sent["payload"]["truncated"] is True
    [entry] = sent["payload"]["changed"]
    assert entry["updated"] == [f"model-{i:05d}" for i in range(1_000)]  # every id is still there
    assert entry["changes"] == [] and entry["changes_count"] == 3_000
    assert sent["payload"]["unchanged"] == ["quiet"]


def test_then_the_ids_go_as_before_with_every_count() -> None:
    original = build_event_message(6, EPOCH, utc_timestamp(0), result_with_changes(12_000))
    sent = json.loads(encode_for_wire(original))
    [entry] = sent["payload"]["changed"]
    assert entry["updated"] == [] and entry["changes"] == []
    assert (entry["updated_count"], entry["changes_count"]) == (12_000, 36_000)


def test_the_stand_ins_drop_changes_before_ids() -> None:
    payload = result_with_changes(2).model_dump(mode="json")
    first, second, *_ = shrunk_results(payload)
    assert first["changed"][0]["updated"] == ["model-00000", "model-00001"] and first["changed"][0]["changes"] == []
    assert first["changed"][0]["changes_count"] == 6
    assert second["changed"][0]["updated"] == [] and second["changed"][0]["updated_count"] == 2
    # Without field changes there is nothing to drop first: the stand-ins start with the ids, as before.
    plain = result(revision=2).model_dump(mode="json")
    assert next(shrunk_results(plain))["changed"][0]["added"] == []


# --- journal writes ---------------------------------------------------------------------------------------
