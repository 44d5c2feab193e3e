"""Which (epoch, seq) the next event gets (chalicelib.core.epoch): continue the epoch only when the journal ends
exactly where the manifest's seq says; any disagreement (a table restored from a backup) starts a new epoch."""

from __future__ import annotations

import pytest

from chalicelib.core.epoch import Cursor, after_collision, next_cursor
from chalicelib.core.manifest import Manifest
from chalicelib.core.plan import FetchOutcome
from tests.unit.test_plan import config, openai, plan, records


def test_an_agreeing_journal_continues_the_epoch() -> None:
    decision = next_cursor("ep", 7, 7, fresh_epoch="new")
    assert decision.cursor == Cursor("ep", 8) and not decision.rotated


def test_a_fresh_catalog_starts_at_seq_one_of_its_own_epoch() -> None:
    decision = next_cursor("ep", 0, None, fresh_epoch="new")
    assert decision.cursor == Cursor("ep", 1) and not decision.rotated


@pytest.mark.parametrize(
    ("manifest_seq", "journal_seq", "words"),
    [
        (5, 9, "already holds seq 9, past the catalog's seq 5"),  # the catalog table was restored (older manifest)
        (9, 5, "ends at seq 5, before the catalog's seq 9"),  # the events table was restored (older journal)
        (9, None, "ends at seq 0, before the catalog's seq 9"),  # the journal lost the epoch altogether
    ],
)
def test_a_disagreeing_journal_starts_a_new_epoch_at_seq_one(manifest_seq, journal_seq, words) -> None:
    decision = next_cursor("ep", manifest_seq, journal_seq, fresh_epoch="new")
    assert decision.cursor == Cursor("new", 1)
    assert decision.rotated and words in decision.rotated_because
    assert "restored" in decision.rotated_because


def test_a_collision_at_commit_retries_in_a_new_epoch() -> None:
    decision = after_collision("ep", 6, fresh_epoch="new")
    assert decision.cursor == Cursor("new", 1) and "seq 6 of epoch ep is already journaled" in decision.rotated_because


def test_the_plan_puts_the_manifest_and_the_event_at_the_cursor() -> None:
    """A new epoch moves the manifest and the event together: the manifest says (new, 1), the event is (new, 1)."""
    manifest = Manifest(revision=4, epoch="ep", seq=4)
    decided = plan(config(openai("a")), manifest, [FetchOutcome.succeeded("a", records("m1"))])
    cursor = next_cursor("ep", 4, 9, fresh_epoch="new").cursor
    new_manifest = decided.next_manifest(manifest, cursor)
    event = decided.event(manifest, cursor)
    assert (new_manifest.epoch, new_manifest.seq, new_manifest.revision) == ("new", 1, 5)
    assert (event["epoch"], event["seq"], event["payload"]["revision"]) == ("new", 1, 5)
