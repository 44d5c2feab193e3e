"""The event journal (outbox) and the publisher, against moto's in-process DynamoDB."""

from __future__ import annotations

import random

import pytest
from botocore.exceptions import ClientError

from chalicelib.clock import utc_iso as utc_timestamp
from chalicelib.core.domain import ProviderChange, ProviderFailure, RefreshResult
from chalicelib.core.events import build_event_message
from chalicelib.events import EventPublisher, FanoutStats
from chalicelib.settings import TableNames
from chalicelib.storage import codec
from chalicelib.storage.journal import MAX_JOURNAL_BODY_BYTES, EventJournal

TABLES = TableNames()
EPOCH = "ep-test-1"


def journal_put_action(table: str, message: dict) -> dict:
    """The journal's transaction action for ``message`` (what the catalog commit sends)."""
    return EventJournal(None, table).append_action(message)








@pytest.fixture
def journal(dynamodb, clock):
    return EventJournal(dynamodb, TABLES.events, clock=clock)


def result(revision: int = 1, added: list[str] | None = None) -> RefreshResult:
    return RefreshResult(
        revision=revision,
        changed=[ProviderChange(provider_id="openai", provider_name="OpenAI", added=added or ["gpt-x"])],
        unchanged=["anthropic"],
        failed=[ProviderFailure(provider_id="groq", reason="HTTP 503 from https://api.groq.com/openai/v1/models")],
    )


def message(seq: int, epoch: str = EPOCH, **kwargs) -> dict:
    return build_event_message(seq, epoch, f"2026-01-01T00:00:{seq % 60:02d}.000Z", result(revision=seq, **kwargs))


def commit(client, *messages: dict) -> None:
    """What the catalog commit does: journal puts inside one TransactWriteItems."""
    client.transact_write_items(TransactItems=[journal_put_action(TABLES.events, m) for m in messages])


def seed(client, count: int, epoch: str = EPOCH) -> list[dict]:
    messages = [message(seq, epoch) for seq in range(1, count + 1)]
    for item in messages:
        commit(client, item)
    return messages


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


def test_journal_put_action_writes_the_item_in_a_transaction(dynamodb):
    original = message(1)
    commit(dynamodb, original)
    item = dynamodb.get_item(TableName=TABLES.events, Key={"epoch": {"S": EPOCH}, "seq": {"N": "1"}})["Item"]
    assert item["published"] == {"BOOL": False}
    assert item["timestamp"]["S"] == original["timestamp"]
    assert codec.unpack(item["body"]["B"]) == original
    assert "expires_at" not in item


def test_journal_put_action_refuses_a_duplicate_seq(dynamodb):
    first = message(1)
    commit(dynamodb, first)
    rival = message(1, added=["something-else"])
    with pytest.raises(ClientError) as caught:
        commit(dynamodb, rival)
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    item = dynamodb.get_item(TableName=TABLES.events, Key={"epoch": {"S": EPOCH}, "seq": {"N": "1"}})["Item"]
    assert codec.unpack(item["body"]["B"]) == first  # the first writer's event is untouched


def test_the_same_seq_in_another_epoch_is_a_different_event(dynamodb):
    commit(dynamodb, message(1))
    commit(dynamodb, message(1, epoch="another-epoch"))
    assert dynamodb.scan(TableName=TABLES.events)["Count"] == 2


def test_a_body_too_big_for_an_item_is_journaled_truncated(dynamodb):
    original = build_event_message(1, EPOCH, utc_timestamp(0), huge_result(20_000, providers=3))
    assert len(codec.pack(original)) > MAX_JOURNAL_BODY_BYTES
    action = journal_put_action(TABLES.events, original)
    assert len(action["Put"]["Item"]["body"]["B"]) <= MAX_JOURNAL_BODY_BYTES
    commit(dynamodb, original)
    stored = EventJournal(dynamodb, TABLES.events).replay(EPOCH, 0)
    assert stored is not None and stored[0]["truncated"] is True
    assert stored[0]["payload"]["changed"][0]["added_count"] == 20_000


# --- replay -----------------------------------------------------------------------------------------------


def test_replay_from_the_latest_seq_is_empty(dynamodb, journal):
    seed(dynamodb, 5)
    assert journal.replay(EPOCH, 5) == []
    assert journal.replay(EPOCH, 5, until=5) == []


def test_replay_from_the_middle_returns_the_missed_events_in_order(dynamodb, journal):
    messages = seed(dynamodb, 8)
    assert journal.replay(EPOCH, 3) == messages[3:]
    assert [m["seq"] for m in journal.replay(EPOCH, 3)] == [4, 5, 6, 7, 8]


def test_replay_from_zero_returns_everything(dynamodb, journal):
    messages = seed(dynamodb, 4)
    assert journal.replay(EPOCH, 0) == messages


def test_replay_stops_at_until(dynamodb, journal):
    messages = seed(dynamodb, 6)
    assert journal.replay(EPOCH, 2, until=4) == messages[2:4]


def test_replay_over_a_trimmed_gap_cannot_be_done(dynamodb, journal):
    seed(dynamodb, 6)
    for seq in (1, 2, 3):  # what TTL does to trimmed events
        dynamodb.delete_item(TableName=TABLES.events, Key={"epoch": {"S": EPOCH}, "seq": {"N": str(seq)}})
    assert journal.replay(EPOCH, 0) is None
    assert journal.replay(EPOCH, 2) is None  # needs seq 3, gone
    assert [m["seq"] for m in journal.replay(EPOCH, 3)] == [4, 5, 6]  # oldest kept == since + 1: fine


def test_replay_over_a_hole_in_the_middle_cannot_be_done(dynamodb, journal):
    seed(dynamodb, 6)
    dynamodb.delete_item(TableName=TABLES.events, Key={"epoch": {"S": EPOCH}, "seq": {"N": "4"}})
    assert journal.replay(EPOCH, 2) is None
    assert [m["seq"] for m in journal.replay(EPOCH, 4)] == [5, 6]


def test_replay_of_an_unknown_epoch_cannot_be_done(dynamodb, journal):
    seed(dynamodb, 3)
    assert journal.replay("some-other-epoch", 1) is None
    assert journal.replay("some-other-epoch", 1, until=3) is None


def test_replay_past_the_newest_journaled_event_cannot_be_done(dynamodb, journal):
    seed(dynamodb, 3)
    assert journal.replay(EPOCH, 1, until=5) is None


def test_replay_of_too_many_events_asks_for_a_resync(dynamodb, journal):
    seed(dynamodb, 12)
    assert journal.replay(EPOCH, 0, max_events=10) is None
    assert len(journal.replay(EPOCH, 2, max_events=10)) == 10


# --- unpublished / claim / mark / trim --------------------------------------------------------------------


def test_unpublished_lists_recent_unpublished_events_oldest_first(dynamodb, journal):
    seed(dynamodb, 5)
    journal.mark_published(EPOCH, 4)
    journal.mark_published(EPOCH, 1)
    assert [m["seq"] for m in journal.unpublished(EPOCH)] == [2, 3, 5]
    assert [m["seq"] for m in journal.unpublished(EPOCH, limit=2)] == [5]  # only the newest two are looked at
    assert journal.unpublished("unknown") == []


def test_claim_is_exclusive_until_its_lease_runs_out(dynamodb, journal, clock):
    seed(dynamodb, 1)
    assert journal.claim(EPOCH, 1, lease_s=60) is True
    assert journal.claim(EPOCH, 1, lease_s=60) is False
    clock.now += 61
    assert journal.claim(EPOCH, 1, lease_s=60) is True
    journal.mark_published(EPOCH, 1)
    clock.now += 1_000
    assert journal.claim(EPOCH, 1) is False  # published events are never claimed again
    assert journal.claim(EPOCH, 99) is False  # nor events that do not exist


def test_mark_published_of_a_missing_event_is_a_no_op(dynamodb, journal):
    journal.mark_published(EPOCH, 42)
    assert dynamodb.scan(TableName=TABLES.events)["Count"] == 0  # it did not create an item


def expiry(client, seq: int, epoch: str = EPOCH):
    item = client.get_item(TableName=TABLES.events, Key={"epoch": {"S": epoch}, "seq": {"N": str(seq)}})["Item"]
    return int(item["expires_at"]["N"]) if "expires_at" in item else None


def test_trim_keeps_the_last_1000_events_and_expires_the_one_before(dynamodb, journal, clock):
    # The journal item is all trim looks at; put them directly (1,001 transactions would be slow for nothing).
    for seq in range(1, 1_002):
        dynamodb.put_item(**{"TableName": TABLES.events, **journal_put_action(TABLES.events, message(seq))["Put"]})
    marked = journal.trim(EPOCH, 1_001)
    assert marked == 1
    assert expiry(dynamodb, 1) is not None and expiry(dynamodb, 1) > clock.now
    assert all(expiry(dynamodb, seq) is None for seq in (2, 500, 1_001))  # the last 1,000 stay
    assert journal.trim(EPOCH, 1_001) == 0  # idempotent


def test_trim_catches_up_on_trims_that_were_skipped(dynamodb, journal):
    seed(dynamodb, 20)
    assert journal.trim(EPOCH, 20, keep=5) == 10  # the sweep: seq 6..15
    assert [expiry(dynamodb, s) is not None for s in (5, 6, 15, 16)] == [False, True, True, False]
    assert journal.trim(EPOCH, 20, keep=5, sweep=20) == 5  # 1..5 were below the first sweep
    assert journal.trim(EPOCH, 3, keep=5) == 0  # nothing is older than the window yet


def test_trim_never_raises(journal):
    journal._table = "no-such-table"
    assert journal.trim(EPOCH, 5_000) == 0


# --- publisher ----------------------------------------------------------------------------------------------


class RecordingFanout:
    def __init__(self, fail: bool = False, stats: FanoutStats | None = None):
        self.messages: list[dict] = []
        self.fail = fail
        self.stats = stats or FanoutStats(sent=1)

    def broadcast(self, message: dict):
        if self.fail:
            raise RuntimeError("connections table unreachable")
        self.messages.append(message)
        return self.stats


def published(client, seq: int) -> bool:
    item = client.get_item(TableName=TABLES.events, Key={"epoch": {"S": EPOCH}, "seq": {"N": str(seq)}})["Item"]
    return item["published"]["BOOL"]


def test_publish_broadcasts_then_marks_published(dynamodb, journal):
    (event,) = seed(dynamodb, 1)
    fanout = RecordingFanout()
    publisher = EventPublisher(journal, fanout)
    assert publisher.publish(event) == FanoutStats(sent=1)
    assert fanout.messages == [event]
    assert published(dynamodb, 1)
    assert publisher.publish(event) is None  # already published: not broadcast twice
    assert len(fanout.messages) == 1


def test_publish_trims_the_journal(dynamodb, journal):
    events = seed(dynamodb, 8)
    EventPublisher(journal, RecordingFanout(), keep=5).publish(events[-1])
    assert expiry(dynamodb, 3) is not None and expiry(dynamodb, 4) is None


def test_a_failed_broadcast_never_raises_and_leaves_the_event_pending(dynamodb, journal, clock):
    (event,) = seed(dynamodb, 1)
    publisher = EventPublisher(journal, RecordingFanout(fail=True), claim_lease_s=30)
    assert publisher.publish(event) is None
    assert not published(dynamodb, 1)
    retry = RecordingFanout()
    later = EventPublisher(journal, retry, claim_lease_s=30)
    assert later.publish_pending(EPOCH) == 0  # the failed publisher's claim is still live
    clock.now += 31
    assert later.publish_pending(EPOCH) == 1
    assert retry.messages == [event] and published(dynamodb, 1)


def test_an_event_nobody_received_stays_pending_but_partial_failures_do_not(dynamodb, journal, clock):
    first, second = seed(dynamodb, 2)
    nobody = RecordingFanout(stats=FanoutStats(sent=0, failed=3))
    EventPublisher(journal, nobody, claim_lease_s=30).publish(first)
    assert not published(dynamodb, 1)
    some = RecordingFanout(stats=FanoutStats(sent=2, gone=1, failed=1))
    EventPublisher(journal, some, claim_lease_s=30).publish(second)
    assert published(dynamodb, 2)
    cut_short = RecordingFanout(stats=FanoutStats(sent=5, incomplete=True))
    clock.now += 31
    EventPublisher(journal, cut_short, claim_lease_s=30).publish_pending(EPOCH)
    assert not published(dynamodb, 1)
    no_connections = RecordingFanout(stats=FanoutStats())
    clock.now += 31
    assert EventPublisher(journal, no_connections).publish_pending(EPOCH) == 1  # nobody to tell is fine
    assert published(dynamodb, 1)


def test_publish_pending_rebroadcasts_what_a_crash_left_unpublished(dynamodb, journal):
    events = seed(dynamodb, 4)  # committed; "crashed" before fan-out for all of them
    journal.mark_published(EPOCH, 1)
    fanout = RecordingFanout()
    publisher = EventPublisher(journal, fanout)
    assert publisher.publish_pending(EPOCH) == 3
    assert fanout.messages == events[1:]
    assert publisher.publish_pending(EPOCH) == 0
    assert all(published(dynamodb, seq) for seq in (1, 2, 3, 4))


def test_publish_survives_a_journal_outage(dynamodb, clock):
    broken = EventJournal(dynamodb, "no-such-table", clock=clock)
    fanout = RecordingFanout()
    # The claim fails, so it cannot know whether someone else publishes: it broadcasts (clients dedupe by seq).
    assert EventPublisher(broken, fanout).publish(message(1)) == FanoutStats(sent=1)
    assert len(fanout.messages) == 1
    assert EventPublisher(broken, fanout).publish_pending(EPOCH) == 0
