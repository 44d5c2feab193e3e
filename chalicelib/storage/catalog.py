"""The catalog in DynamoDB: immutable model chunks behind one manifest item.

Layout (catalog table, keys pk/sk):
- ``MANIFEST/MANIFEST``: revision, epoch, seq (last event) and, per provider, its current list: model count,
  fingerprint and the refs of its chunks (``chalicelib.core.manifest.ProviderEntry``).
- ``MODELS#<provider>/<generation>#<n>``: a chunk written by the run of that generation; a compressed JSON list of
  consecutive models, at most ``chunk_bytes`` of JSON before compression (so far below the 400 KB item limit,
  whatever the provider's size). Chunk boundaries are content-defined (``chalicelib.core.chunking``): a list that
  changed in one place keeps its other chunks, which the new manifest references again.

Chunks are written before the manifest points at them and never change afterwards, so switching any
number of providers' lists is a single conditional write of the manifest (in one transaction with the
lock's fencing check and the event record): readers see the old catalog or the new one, never a mix,
and never an empty list in between. Chunks are read by key (``BatchGetItem``) and cached: they are immutable.

A provider whose current chunks are missing or unreadable does not take the catalog down: ``read_catalog``
returns the other providers and names the broken one (``CatalogSnapshot.unreadable``); readers ask the next refresh
to repair it, and each refresh checks a few chunks (``check_chunks``). Chunks are deleted only under the refresh
lock's fencing token (``delete_chunks(..., fence=...)``): a run whose lease expired cannot delete what a newer run
committed.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chalicelib.core.chunking import DEFAULT_MAX_CHUNK_BYTES, ListWrite, chunk_json_bytes, layout, plan_list
from chalicelib.core.domain import ModelRecord, current_record
from chalicelib.core.manifest import Manifest, ProviderEntry
from chalicelib.errors import CatalogChanged
from chalicelib.logs import get_logger
from chalicelib.storage import codec
from chalicelib.storage.dynamo import cancellation_reasons, from_item, query_items, to_item, values

log = get_logger("store")

MANIFEST_KEY = {"pk": "MANIFEST", "sk": "MANIFEST"}
# Writes of chunks go in BatchWriteItem calls of at most 25 requests, reads in BatchGetItem calls of at most 100
# keys (DynamoDB's limits).
_BATCH_LIMIT = 25
_BATCH_GET_LIMIT = 100
# Fenced deletes go in TransactWriteItems of at most 100 actions: the fence and 99 deletes.
_FENCED_DELETES = 99
_FENCED_ATTEMPTS = 4  # a transaction cancelled by a conflicting one is tried again


class StaleRead(Exception):
    """A generation is incomplete (collected after a newer commit, or its chunks were lost): re-read the
    manifest; if it still points there, the provider's stored list is broken."""


class UnreadableChunks(Exception):
    """A chunk of a provider's current generation cannot be decoded."""


class FenceLost(Exception):
    """A fenced write was refused: the refresh lock's lease moved on (nothing was written)."""


@dataclass(frozen=True)
class CatalogSnapshot:
    """A consistent read of the catalog: the manifest, the models of every readable provider it points at, and
    why each of the others could not be read. Unpacks as ``manifest, models``."""

    manifest: Manifest
    models: dict[str, list[ModelRecord]]
    unreadable: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.manifest, self.models))


def new_epoch_id() -> str:
    """A fresh, opaque event epoch."""
    return uuid.uuid4().hex[:16]


def manifest_item(manifest: Manifest) -> dict[str, Any]:
    body = {pid: entry.to_json() for pid, entry in sorted(manifest.providers.items())}
    return to_item(
        {
            **MANIFEST_KEY,
            "revision": manifest.revision,
            "epoch": manifest.epoch,
            "seq": manifest.seq,
            "providers": codec.pack(body),
            "updated_at": manifest.updated_at,
        }
    )


def manifest_from_item(item: Mapping[str, Any]) -> Manifest:
    fields = from_item(item)
    providers = codec.unpack(fields["providers"]) if "providers" in fields else {}
    return Manifest(
        revision=fields["revision"],
        epoch=fields["epoch"],
        seq=fields["seq"],
        providers={pid: ProviderEntry.from_json(raw) for pid, raw in providers.items()},
        updated_at=fields.get("updated_at"),
    )


def _models_pk(provider_id: str) -> str:
    return f"MODELS#{provider_id}"


class _ChunkCache:
    """Chunks are immutable, so a warm Lambda keeps the ones it read or wrote (an LRU bounded by model count):
    a list that changed in one place is mostly chunks already cached."""

    def __init__(self, max_models: int = 120_000):
        self._items: OrderedDict[tuple[str, str], list[ModelRecord]] = OrderedDict()
        self._max = max_models
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> list[ModelRecord] | None:
        with self._lock:
            models = self._items.get(key)
            if models is not None:
                self._items.move_to_end(key)
            return models

    def put(self, key: tuple[str, str], models: list[ModelRecord]) -> None:
        with self._lock:
            previous = self._items.pop(key, None)
            if previous is not None:
                self._size -= len(previous)
            self._items[key] = models
            self._size += len(models)
            while self._size > self._max and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)


class CatalogStore:
    def __init__(self, dynamodb_client: Any, table_name: str, chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES):
        self._client = dynamodb_client
        self._table = table_name
        self._chunk_bytes = chunk_bytes
        self._cache = _ChunkCache()

    @property
    def table(self) -> str:
        return self._table

    @property
    def chunk_bytes(self) -> int:
        """The most JSON a chunk holds before compression (``chalicelib.core.chunking.layout``'s ``max_bytes``)."""
        return self._chunk_bytes

    # -- manifest ---------------------------------------------------------------------------
    def read_manifest(self) -> Manifest:
        """The current manifest (strongly consistent). Creates the empty catalog and its epoch once."""
        key = to_item(MANIFEST_KEY)
        item = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        if item:
            return manifest_from_item(item)
        empty = Manifest(revision=0, epoch=new_epoch_id(), seq=0)
        try:
            self._client.put_item(
                TableName=self._table, Item=manifest_item(empty), ConditionExpression="attribute_not_exists(pk)"
            )
            return empty
        except self._client.exceptions.ConditionalCheckFailedException:
            pass  # created by someone else in between: read theirs
        item = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True)["Item"]
        return manifest_from_item(item)

    def read_position(self) -> tuple[int, str, int]:
        """``(seq, epoch, revision)`` of the current manifest (strongly consistent), without its provider entries:
        what a subscribe needs, read on every connect (the entries grow with the catalog)."""
        item = self._client.get_item(
            TableName=self._table,
            Key=to_item(MANIFEST_KEY),
            ConsistentRead=True,
            ProjectionExpression="#revision, #epoch, #seq",
            ExpressionAttributeNames={"#revision": "revision", "#epoch": "epoch", "#seq": "seq"},
        ).get("Item")
        if not item:
            manifest = self.read_manifest()  # creates the empty catalog
            return manifest.seq, manifest.epoch, manifest.revision
        fields = from_item(item)
        return int(fields["seq"]), str(fields["epoch"]), int(fields["revision"])

    def start_new_epoch(self, reason: str, attempts: int = 3) -> Manifest:
        """Start the event history over: a fresh epoch with ``seq = 0``, the same revision and providers.

        For a state that may be older than what clients were served (restored from a snapshot or backup): their
        ``(epoch, seq)`` could otherwise be given to a different event, so resuming clients get
        ``resync_required`` instead. A conditional write on the manifest as read; if a commit moved it in
        between, read it again (``CatalogChanged`` after ``attempts``). ``reason`` goes to the log.
        """
        for _ in range(attempts):
            current = self.read_manifest()
            new = replace(current, epoch=new_epoch_id(), seq=0)
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item=manifest_item(new),
                    ConditionExpression="#revision = :revision AND #epoch = :epoch AND #seq = :seq",
                    ExpressionAttributeNames={"#revision": "revision", "#epoch": "epoch", "#seq": "seq"},
                    ExpressionAttributeValues=values(revision=current.revision, epoch=current.epoch, seq=current.seq),
                )
            except self._client.exceptions.ConditionalCheckFailedException:
                continue
            log.warning(
                "new event epoch",
                extra={"reason": reason, "previous_epoch": current.epoch, "previous_seq": current.seq,
                       "epoch": new.epoch, "revision": new.revision},
            )
            return new
        raise CatalogChanged("the catalog kept changing; no new epoch was started")

    def manifest_put_action(self, new: Manifest, expected_revision: int) -> dict[str, Any]:
        """A TransactWriteItems ``Put`` of ``new`` that fails unless the stored revision is still ``expected``."""
        return {
            "Put": {
                "TableName": self._table,
                "Item": manifest_item(new),
                "ConditionExpression": "revision = :expected",
                "ExpressionAttributeValues": values(expected=expected_revision),
            }
        }

    # -- models -----------------------------------------------------------------------------
    def read_provider_models(self, provider_id: str, entry: ProviderEntry) -> list[ModelRecord]:
        """One provider's models (records: no ``provider_id``; in today's shape: ``current_record``), by id.
        ``StaleRead`` when chunks are missing, ``UnreadableChunks`` when one cannot be decoded."""
        return self.read_chunks(provider_id, entry.chunk_keys())

    def read_chunks(self, provider_id: str, keys: Sequence[str]) -> list[ModelRecord]:
        """The models of these chunks of one provider, in the order given (cached chunks are not read again)."""
        chunks = self._chunks(provider_id, keys)
        missing = [key for key in keys if key not in chunks]
        if missing:
            found = len(keys) - len(missing)
            raise StaleRead(f"its stored models are incomplete ({found} of {len(keys)} chunks found)")
        models: list[ModelRecord] = []
        for key in keys:
            models.extend(chunks[key])
        return models

    def check_chunks(self, provider_id: str, keys: Sequence[str]) -> str | None:
        """``None`` when these chunks of a provider are there and readable, else what is wrong (they are read: a
        chunk can be lost or damaged whatever a cache says, and DynamoDB charges a read by the item's size anyway)."""
        try:
            chunks = self._chunks(provider_id, keys, cached=False)
        except UnreadableChunks as exc:
            return str(exc)
        found = sum(1 for key in keys if key in chunks)
        if found == len(keys):
            return None
        return f"its stored models are incomplete ({found} of {len(keys)} chunks checked were found)"

    def _chunks(self, provider_id: str, keys: Sequence[str], cached: bool = True) -> dict[str, list[ModelRecord]]:
        """The chunks of ``keys`` that exist, decoded, by key."""
        found: dict[str, list[ModelRecord]] = {}
        wanted: list[str] = []
        for key in dict.fromkeys(keys):
            models = self._cache.get((provider_id, key)) if cached else None
            if models is None:
                wanted.append(key)
            else:
                found[key] = models
        for item in self._batch_get(provider_id, wanted):
            key = item["sk"]["S"]
            try:
                models = list(map(current_record, codec.unpack(item["body"]["B"])))  # older records: defaults
            except (KeyError, TypeError, ValueError, zlib.error) as exc:
                raise UnreadableChunks(
                    f"chunk {key} of its stored models cannot be decoded ({type(exc).__name__})"
                ) from None
            self._cache.put((provider_id, key), models)
            found[key] = models
        return found
    def read_catalog(self, provider_ids: Iterable[str] | None = None, attempts: int = 3) -> CatalogSnapshot:
        """A consistent snapshot: the manifest and the models it points at.

        A provider whose chunks are missing is read again with a fresh manifest (a newer commit may have collected
        the generation just read); one that is still broken after ``attempts``, or unreadable, is left out and
        named in ``unreadable``: one provider's broken list never hides the others."""
        for attempt in range(attempts):
            manifest = self.read_manifest()
            known = manifest.providers.keys()
            wanted = sorted(known if provider_ids is None else set(provider_ids) & known)
            models: dict[str, list[ModelRecord]] = {}
            unreadable: dict[str, str] = {}
            stale = False
            for pid in wanted:
                try:
                    models[pid] = self.read_provider_models(pid, manifest.providers[pid])
                except StaleRead as exc:
                    unreadable[pid], stale = str(exc), True
                except UnreadableChunks as exc:
                    unreadable[pid] = str(exc)
            if not stale or attempt == attempts - 1 or self.read_manifest() == manifest:
                if unreadable:
                    log.warning("stored models unreadable", extra={"providers": unreadable})
                return CatalogSnapshot(manifest, models, unreadable)
            time.sleep(0.05)
        raise AssertionError("unreachable")

    def write_lists(self, lists: Mapping[str, tuple[Sequence[ModelRecord], ListWrite]]) -> None:
        """Store the new chunks of several providers' lists (``ListWrite.writes``; the kept chunks are stored
        already). Invisible until committed. The chunks of all providers share 25-item BatchWriteItem calls, so a
        run where many small providers changed costs one or two round trips, not one per provider. What is written
        is cached, exactly as reading it back would return it."""
        requests: list[dict[str, Any]] = []
        for provider_id, (models, plan) in lists.items():
            for ref, piece in plan.writes:
                body = codec.compress_bytes(chunk_json_bytes(models, piece))
                requests.append({"PutRequest": {"Item": to_item({"pk": _models_pk(provider_id), "sk": ref.key,
                                                                 "body": body})}})
        self._batch_write(requests)
        for provider_id, (models, plan) in lists.items():
            for ref, piece in plan.writes:
                self._cache.put((provider_id, ref.key), list(models[piece.start : piece.end]))

    def write_generation(self, provider_id: str, generation: str, models: Sequence[ModelRecord]) -> ListWrite:
        """Write ``models`` (sorted by id) as new chunks of ``generation``, reusing nothing (tooling and tests: a
        list nobody commits is what a crashed run leaves)."""
        plan = plan_list(None, layout(models, self._chunk_bytes), generation)
        self.write_lists({provider_id: (models, plan)})
        return plan

    def chunk_keys(self, provider_id: str, sort_keys: Iterable[str]) -> list[dict[str, Any]]:
        """The item keys of a provider's chunks (for ``delete_chunks``)."""
        return [{"pk": {"S": _models_pk(provider_id)}, "sk": {"S": key}} for key in sort_keys]

    def unkept_chunks(self, provider_id: str, keep: set[str]) -> list[dict[str, Any]]:
        """The keys of a provider's chunks whose generation is not in ``keep`` (one query of its chunk keys)."""
        return [
            {"pk": item["pk"], "sk": item["sk"]}
            for item in self._query_keys(provider_id)
            if item["sk"]["S"].rsplit("#", 1)[0] not in keep
        ]

    def unreferenced_chunks(self, provider_id: str, keep: set[str]) -> list[dict[str, Any]]:
        """The keys of a provider's chunks whose sort key is not in ``keep`` (one query of its chunk keys)."""
        items = self._query_keys(provider_id)
        return [{"pk": item["pk"], "sk": item["sk"]} for item in items if item["sk"]["S"] not in keep]

    def delete_chunks(self, keys: Sequence[dict[str, Any]], fence: dict[str, Any] | None = None) -> int:
        """Delete chunks by key. With ``fence`` (a TransactWriteItems action of the refresh lock, e.g.
        ``LeaseLock.fence_check_action``), every batch of deletes is one transaction with it: ``FenceLost`` and
        nothing deleted once the lease moved on. Without it, shared 25-item BatchWriteItem calls (unfenced: only
        for tooling and tests)."""
        if fence is None:
            self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys])
            return len(keys)
        for start in range(0, len(keys), _FENCED_DELETES):
            batch = keys[start : start + _FENCED_DELETES]
            deletes = [{"Delete": {"TableName": self._table, "Key": key}} for key in batch]
            for attempt in range(_FENCED_ATTEMPTS):
                try:
                    self._client.transact_write_items(TransactItems=[fence, *deletes])
                    break
                except self._client.exceptions.TransactionCanceledException as error:
                    reasons = cancellation_reasons(error)
                    if reasons[:1] == ["ConditionalCheckFailed"]:
                        raise FenceLost("the refresh lock moved on; nothing more is deleted") from None
                    if "TransactionConflict" not in reasons or attempt == _FENCED_ATTEMPTS - 1:
                        raise
                time.sleep(0.05 * 2**attempt)
        return len(keys)

    # -- helpers ----------------------------------------------------------------------------
    def _query_keys(self, provider_id: str) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": values(pk=_models_pk(provider_id)),
            "ProjectionExpression": "pk, sk",
        }
        return query_items(self._client, request)

    def _batch_get(self, provider_id: str, keys: Sequence[str]) -> Iterator[dict[str, Any]]:
        """The chunk items of ``keys`` that exist (strongly consistent), 100 keys a call, unprocessed keys again."""
        for start in range(0, len(keys), _BATCH_GET_LIMIT):
            pending: dict[str, Any] = {
                self._table: {"Keys": self.chunk_keys(provider_id, keys[start : start + _BATCH_GET_LIMIT]),
                              "ConsistentRead": True}
            }
            delay = 0.05
            for _ in range(10):
                answer = self._client.batch_get_item(RequestItems=pending)
                yield from answer.get("Responses", {}).get(self._table, [])
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                raise RuntimeError(f"DynamoDB left {len(pending[self._table]['Keys'])} chunk reads unprocessed")

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), _BATCH_LIMIT):
            pending = {self._table: requests[start : start + _BATCH_LIMIT]}
            delay = 0.05
            for _ in range(10):
                unprocessed = self._client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not unprocessed:
                    break
                pending = unprocessed
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                raise RuntimeError(f"DynamoDB left {len(pending.get(self._table, []))} writes unprocessed")
