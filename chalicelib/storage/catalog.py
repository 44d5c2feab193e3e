"""The catalog in DynamoDB: immutable model chunks behind one manifest item.

Layout (catalog table, keys pk/sk):
- ``MANIFEST/MANIFEST``: revision, epoch, seq (last event) and, per provider, a pointer to its current
  *generation* of chunks (generation id, chunk count, model count, fingerprint).
- ``MODELS#<provider>/<generation>#<n>``: chunk n of a generation; a compressed JSON list of models,
  each chunk at most ``chunk_bytes`` of JSON before compression (so far below the 400 KB item limit,
  whatever the provider's size).

Chunks are written before the manifest points at them and never change afterwards, so switching any
number of providers' lists is a single conditional write of the manifest (in one transaction with the
lock's fencing check and the event record): readers see the old catalog or the new one, never a mix,
and never an empty list in between.

A provider whose current chunks are missing or unreadable does not take the catalog down: ``read_catalog``
returns the other providers and names the broken one (``CatalogSnapshot.unreadable``), and the refresh engine,
which checks the lists it does not read (``check_generation``), writes that provider again. Chunks are deleted
only under the refresh lock's fencing token (``delete_chunks(..., fence=...)``): a run whose lease expired cannot
delete what a newer run committed.
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

from chalicelib.core.domain import ModelRecord, canonical_json, current_record
from chalicelib.core.manifest import Manifest, ProviderEntry
from chalicelib.errors import CatalogChanged
from chalicelib.logs import get_logger
from chalicelib.storage import codec
from chalicelib.storage.dynamo import cancellation_reasons, from_item, query_items, to_item, values

log = get_logger("store")

MANIFEST_KEY = {"pk": "MANIFEST", "sk": "MANIFEST"}
# Writes of chunks go in BatchWriteItem calls of at most 25 requests (DynamoDB's limit).
_BATCH_LIMIT = 25
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


def pack_chunks(models: Sequence[ModelRecord], chunk_bytes: int) -> list[bytes]:
    """A sorted model list as packed chunks, each at most ``chunk_bytes`` of JSON before compression.

    Every model is serialized once: the canonical JSON of a list is its items' JSON joined by commas, so a chunk's
    bytes are exactly ``codec.pack(chunk)`` without serializing the models a second time.
    """
    packed: list[bytes] = []
    parts: list[str] = []
    size = 2
    for model in models:
        text = canonical_json(model)
        model_size = len(text.encode("utf-8")) + 1
        if parts and size + model_size > chunk_bytes:
            packed.append(codec.compress_json("[" + ",".join(parts) + "]"))
            parts, size = [], 2
        parts.append(text)
        size += model_size
    if parts or not packed:
        packed.append(codec.compress_json("[" + ",".join(parts) + "]"))
    return packed


def _models_pk(provider_id: str) -> str:
    return f"MODELS#{provider_id}"


class _GenerationCache:
    """Chunks are immutable, so a warm Lambda can keep generations it read or wrote (bounded LRU).

    At most one generation per provider is kept (the one put last: normally the newest, which every reader
    wants; a reader that still needs the previous one reads it from DynamoDB), so a large provider's superseded
    lists do not pile up in memory.
    """

    def __init__(self, max_models: int = 60_000):
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
            for other in [k for k in self._items if k[0] == key[0]]:
                self._size -= len(self._items.pop(other))
            self._items[key] = models
            self._size += len(models)
            while self._size > self._max and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)


class CatalogStore:
    def __init__(self, dynamodb_client: Any, table_name: str, chunk_bytes: int = 300_000):
        self._client = dynamodb_client
        self._table = table_name
        self._chunk_bytes = chunk_bytes
        self._cache = _GenerationCache()

    @property
    def table(self) -> str:
        return self._table

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
        key = (provider_id, entry.generation)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        models: list[ModelRecord] = []
        chunks = 0
        for item in self._query_generation(provider_id, entry.generation, keys_only=False):
            try:
                models.extend(map(current_record, codec.unpack(item["body"]["B"])))  # older records: defaults
            except (KeyError, TypeError, ValueError, zlib.error) as exc:
                raise UnreadableChunks(
                    f"chunk {item['sk']['S']} of its stored models cannot be decoded ({type(exc).__name__})"
                ) from None
            chunks += 1
        if chunks != entry.chunks:
            raise StaleRead(f"its stored models are incomplete ({chunks} of {entry.chunks} chunks found)")
        self._cache.put(key, models)
        return models

    def check_generation(self, provider_id: str, entry: ProviderEntry) -> str | None:
        """``None`` when a provider's current generation is complete and readable, else what is wrong with it.

        A generation this process already read (or wrote) is only counted (a keys-only query: chunks never change,
        but they can be lost); any other is read, which also caches it for the readers that follow."""
        if self._cache.get((provider_id, entry.generation)) is not None:
            found = sum(1 for _ in self._query_generation(provider_id, entry.generation, keys_only=True))
            if found == entry.chunks:
                return None
            return f"its stored models are incomplete ({found} of {entry.chunks} chunks found)"
        try:
            self.read_provider_models(provider_id, entry)
        except (StaleRead, UnreadableChunks) as exc:
            return str(exc)
        return None

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

    def write_generation(self, provider_id: str, generation: str, models: Sequence[ModelRecord]) -> int:
        """Write one provider's new generation (see ``write_generations``); returns its chunk count."""
        return self.write_generations(generation, {provider_id: models})[provider_id]

    def write_generations(self, generation: str, lists: Mapping[str, Sequence[ModelRecord]]) -> dict[str, int]:
        """Write new immutable generations of chunks for several providers; returns each one's chunk count.

        Invisible until committed. The chunks of all providers share 25-item BatchWriteItem calls, so a run
        where many small providers changed costs one or two round trips, not one per provider. Once written,
        a list is cached as the generation's, exactly what reading the chunks back would return.
        """
        counts: dict[str, int] = {}
        requests: list[dict[str, Any]] = []
        for provider_id, models in lists.items():
            chunks = pack_chunks(models, self._chunk_bytes)
            counts[provider_id] = len(chunks)
            requests += [
                {"PutRequest": {"Item": to_item(
                    {"pk": _models_pk(provider_id), "sk": f"{generation}#{index:05d}", "body": body}
                )}}
                for index, body in enumerate(chunks)
            ]
        self._batch_write(requests)
        for provider_id, models in lists.items():
            self._cache.put((provider_id, generation), list(models))
        return counts

    def delete_generations(self, provider_id: str, keep: set[str]) -> int:
        """Delete chunks of every generation of a provider not in ``keep`` (old or orphaned by a crash)."""
        return self.delete_chunks(self.unkept_chunks(provider_id, keep))

    def generation_keys(self, provider_id: str, generation: str) -> list[dict[str, Any]]:
        """The keys of one generation's chunks (however many of them were written)."""
        return [{"pk": item["pk"], "sk": item["sk"]} for item in self._query_generation(provider_id, generation, True)]

    def unkept_chunks(self, provider_id: str, keep: set[str]) -> list[dict[str, Any]]:
        """The keys of a provider's chunks whose generation is not in ``keep``."""
        return [
            {"pk": item["pk"], "sk": item["sk"]}
            for item in self._query_generation(provider_id, None, keys_only=True)
            if item["sk"]["S"].rsplit("#", 1)[0] not in keep
        ]

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
    def _query_generation(self, provider_id: str, generation: str | None, keys_only: bool) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True}
        if generation is None:
            request["KeyConditionExpression"] = "pk = :pk"
            request["ExpressionAttributeValues"] = values(pk=_models_pk(provider_id))
        else:
            request["KeyConditionExpression"] = "pk = :pk AND begins_with(sk, :prefix)"
            request["ExpressionAttributeValues"] = values(pk=_models_pk(provider_id), prefix=f"{generation}#")
        if keys_only:
            request["ProjectionExpression"] = "pk, sk"
        return query_items(self._client, request)

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
