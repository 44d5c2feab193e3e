"""``CatalogStore.start_new_epoch`` and the local stack's rule for calling it (devstack/recovery.py), on moto."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.core.manifest import Manifest, ProviderEntry
from chalicelib.errors import CatalogChanged
from chalicelib.settings import TableNames
from chalicelib.storage.catalog import CatalogStore, manifest_item
from devstack.recovery import ensure_unused_cursor, stale_state_reason

TABLES = TableNames()
PROVIDERS = {"demo": ProviderEntry(generation="g1", chunks=1, count=3, fingerprint="f")}


@pytest.fixture
def store(dynamodb_client: Any) -> CatalogStore:
    store = CatalogStore(dynamodb_client, TABLES.catalog)
    dynamodb_client.put_item(
        TableName=TABLES.catalog,
        Item=manifest_item(Manifest(revision=9, epoch="old-epoch", seq=41, providers=PROVIDERS, updated_at="t")),
    )
    return store


def test_a_new_epoch_keeps_the_catalog_and_restarts_the_seq(store: CatalogStore) -> None:
    new = store.start_new_epoch("test")
    assert new.epoch != "old-epoch" and new.seq == 0
    assert (new.revision, dict(new.providers), new.updated_at) == (9, PROVIDERS, "t")
    assert store.read_manifest() == new
    assert store.start_new_epoch("again").epoch not in {new.epoch, "old-epoch"}


def test_a_commit_in_between_is_not_overwritten(store: CatalogStore, dynamodb_client: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The write is conditional on the manifest as read: a commit that lands first is read again, not lost."""
    real_read = store.read_manifest
    commits = iter([Manifest(revision=10, epoch="old-epoch", seq=42, providers=PROVIDERS)])

    def read_then_commit() -> Manifest:
        manifest = real_read()
        for committed in commits:  # once: another writer commits right after our read
            dynamodb_client.put_item(TableName=TABLES.catalog, Item=manifest_item(committed))
        return manifest

    monkeypatch.setattr(store, "read_manifest", read_then_commit)
    new = store.start_new_epoch("test")
    assert new.revision == 10 and new.seq == 0 and new.epoch != "old-epoch"


def test_a_manifest_that_keeps_moving_is_reported(store: CatalogStore, dynamodb_client: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real_read = store.read_manifest
    revisions = iter(range(100, 200))

    def read_then_commit() -> Manifest:
        manifest = real_read()
        dynamodb_client.put_item(
            TableName=TABLES.catalog, Item=manifest_item(Manifest(revision=next(revisions), epoch="x", seq=1))
        )
        return manifest

    monkeypatch.setattr(store, "read_manifest", read_then_commit)
    with pytest.raises(CatalogChanged):
        store.start_new_epoch("test", attempts=3)


MANIFEST = Manifest(revision=1, epoch="e", seq=4)


@pytest.mark.parametrize(
    ("restored", "journal_latest", "stale"),
    [
        ({"clean": True, "state": "clean"}, 4, False),
        ({"clean": True, "state": "fresh"}, 4, False),
        (None, 4, False),  # an external DynamoDB: only the journal rule applies
        ({"clean": False, "reason": "no clean-shutdown marker"}, 4, True),
        ({"clean": True}, 3, True),
        ({"clean": True}, 5, True),
        ({"clean": True}, None, True),
    ],
)
def test_when_the_state_counts_as_possibly_older(restored: Any, journal_latest: int | None, stale: bool) -> None:
    assert (stale_state_reason(restored, MANIFEST, journal_latest) is not None) is stale


def test_an_empty_catalog_and_journal_agree() -> None:
    assert stale_state_reason({"clean": True}, Manifest(revision=0, epoch="e", seq=0), None) is None


def test_ensure_unused_cursor_rotates_only_when_asked(store: CatalogStore, dynamodb_client: Any) -> None:
    unclean = {"clean": False, "reason": "no clean-shutdown marker"}
    assert ensure_unused_cursor(dynamodb_client, TABLES, unclean, rotate=False) == "no clean-shutdown marker"
    assert store.read_manifest().epoch == "old-epoch"  # the test-only control changes nothing
    assert ensure_unused_cursor(dynamodb_client, TABLES, unclean) == "no clean-shutdown marker"
    rotated = store.read_manifest()
    assert rotated.epoch != "old-epoch" and rotated.seq == 0
    assert ensure_unused_cursor(dynamodb_client, TABLES, {"clean": True}) is None  # seq 0, empty journal: agree
    assert store.read_manifest() == rotated
