"""The embedded DynamoDB of the local stack: moto's server, serialized, made durable on disk.

Run as its own process (own GIL, own crash domain)::

    python -m devstack.dynamodb --port 0 --state-dir .local/state

It prints ``MODEL_CATALOG_DYNAMODB_READY {"port": ..., "endpoint": ..., "restored": {...}}`` on stdout once it
serves; ``restored`` says whether the state it loaded is exactly what it served before (see "Clean stops").

Why a lock: moto serves each request on its own thread and evaluates a ``ConditionExpression`` and then
writes, with nothing in between holding other writers off. Real DynamoDB makes condition-then-write
atomic per item; the lease lock and the event journal rely on that. One lock around every request gives
the same guarantee (and more: requests are linearizable, which DynamoDB does not promise across items).

Durability: every successful write request is appended to a write-ahead log (``devstack/wal.py``) and
fsync'd before its answer leaves, so whatever a client was told was written survives any crash, ``kill -9``
included. The log is compacted into a snapshot shortly after changes and at stop. The snapshot is taken with
DynamoDB's own JSON (``DescribeTable``, ``DescribeTimeToLive``, ``Scan``) sent in-process to moto's WSGI app
while holding the request lock, so it is consistent across tables and does not depend on moto's internal
classes; restoring replays ``CreateTable`` / ``UpdateTimeToLive`` / ``BatchWriteItem``, then the log, before
the server accepts any request.

Clean stops: after its final snapshot the server writes a clean-shutdown marker naming that snapshot, and
deletes it (durably) before serving again. A start without a matching marker, or with a damaged log, reports
``restored.clean = false``: the stack then starts a new event epoch before serving (docs/reference.md §1.3).

Browsers: requests carrying an ``Origin`` header (every cross-origin request and preflight), and requests
whose ``Host`` is not this server's loopback address (DNS rebinding), are refused without CORS headers; so
is moto's global CORS (``MOTO_DISABLE_GLOBAL_CORS``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import io
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from chalicelib.clock import utc_iso
from chalicelib.logs import get_logger
from devstack.logformat import install_log_format, log_format_choice
from devstack.signals import StopSignals, signal_name
from devstack.statefiles import private_directory, remove_durably, write_atomically
from devstack.wal import LogReader, WalError, WriteAheadLog, set_aside

log = get_logger("local.dynamodb")

SNAPSHOT_FILE = "dynamodb.json"
CLEAN_MARKER_FILE = "dynamodb.clean"
LOCK_FILE = ".dynamodb.lock"
SNAPSHOT_FORMAT = "model-catalog/dynamodb-snapshot"
SNAPSHOT_VERSION = 1
READY_PREFIX = "MODEL_CATALOG_DYNAMODB_READY "
DEFAULT_REGION = "us-east-1"
TARGET_PREFIX = "DynamoDB_20120810."
# Operations that never change data; everything else marks the tables dirty and is logged (a spurious snapshot
# or log record is cheap, a missed one is lost data).
READ_ONLY_OPERATIONS = frozenset(
    {
        "BatchGetItem",
        "DescribeContinuousBackups",
        "DescribeEndpoints",
        "DescribeLimits",
        "DescribeTable",
        "DescribeTimeToLive",
        "GetItem",
        "ListBackups",
        "ListTables",
        "ListTagsOfResource",
        "Query",
        "Scan",
        "TransactGetItems",
    }
)
# Writes of items (a table's own changes, such as CreateTable, are always logged).
ITEM_WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/dynamodb/aws4_request")
_BATCH_WRITE_LIMIT = 25
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
# How long a new server waits for the previous one on the same state directory to finish its final snapshot.
STATE_LOCK_WAIT_S = 60.0


class DynamoRequestError(RuntimeError):
    """An in-process DynamoDB request (snapshot, restore, TTL sweep) failed."""


class SnapshotError(RuntimeError):
    """The snapshot on disk cannot be restored."""


def _error_response(status: str, kind: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": message}).encode()
    return status, [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(body)))], body


def browser_refusal(environ: dict[str, Any], allowed_hosts: frozenset[str]) -> str | None:
    """Why a request is refused as one a web page may have sent, or None.

    SDKs never send ``Origin``; browsers send it with every cross-origin request and every CORS preflight, so
    no page can read or change the local tables (OAuth tokens included). A ``Host`` that is not our own
    address is a DNS-rebinding page talking to us under its own name.
    """
    if environ.get("HTTP_ORIGIN") is not None:
        return "cross-origin requests are refused"
    if environ.get("REQUEST_METHOD") == "OPTIONS":
        return "CORS preflight requests are refused"
    host = environ.get("HTTP_HOST", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.lower() not in allowed_hosts:
        return f"requests for host {host!r} are refused"
    return None


class SerializedDynamoApp:
    """WSGI middleware around moto's app: one request at a time; writes are logged before they are answered.

    ``serialize=False`` exists only for negative controls in tests (proving the race is real without it).
    ``wal`` is attached once the state is restored (restoring must not log itself again).
    """

    def __init__(
        self,
        app: Callable[..., Any],
        serialize: bool = True,
        allowed_hosts: Iterable[str] = (),
        ephemeral_tables: Iterable[str] = (),
    ):
        self._app = app
        self.serialize = serialize
        # Tables whose items need not outlive the process (the stack's WebSocket connections die with it): their
        # item writes are neither logged nor snapshotted, so a burst of connects waits for no fsync.
        self.ephemeral_tables = frozenset(ephemeral_tables)
        self.allowed_hosts = _LOOPBACK_HOSTS | {host.lower() for host in allowed_hosts}
        # Reentrant so that the snapshot/TTL code, which holds it, can call ``request`` in-process.
        self.lock = threading.RLock()
        self.generation = 0  # bumped (under the lock) by every successful write
        self.regions: set[str] = set()
        self.changed = threading.Event()
        self._write_mutex = threading.Lock()  # guards generation/regions when serialize=False
        self.writes_by_table: dict[str, int] = {}  # successful write calls per table (GET /_stats/writes)
        self.wal: WriteAheadLog | None = None
        self.closed = False  # set under the lock by the final snapshot: later requests are refused
        self.failure: str | None = None  # the write-ahead log failed: nothing more is accepted
        self.on_failure: Callable[[], None] = lambda: None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        refusal = browser_refusal(environ, self.allowed_hosts)
        if refusal is not None:
            status, headers, body = _error_response("403 Forbidden", "AccessDeniedException", refusal)
            start_response(status, headers)
            return [body]
        if environ.get("PATH_INFO") == "/_stats/writes" and environ.get("REQUEST_METHOD") == "GET":
            with self._write_mutex:
                body = json.dumps(self.writes_by_table).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target.rpartition(".")[2]
        region = _region_of(environ.get("HTTP_AUTHORIZATION", ""))
        written = target.startswith(TARGET_PREFIX) and operation not in READ_ONLY_OPERATIONS
        body = self._read_body(environ) if written else b""
        with self.lock if self.serialize else contextlib.nullcontext():
            status, headers, payload = self._serve(environ, operation, region, body if written else None)
        start_response(status, headers)
        return [payload]

    def _serve(
        self, environ: dict[str, Any], operation: str, region: str, body: bytes | None
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        if self.closed or self.failure:
            return _error_response("500 Internal Server Error", "InternalServerError",
                                   "the embedded DynamoDB is stopping; nothing was written")
        status, headers, payload = self._run(environ)
        if body is not None:
            failure = self._record(operation, region, status, body)
            if failure is not None:
                return failure
        return status, headers, payload

    def _record(
        self, operation: str, region: str, status: str, body: bytes, counted: bool = True
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """After a write request moto answered: log it (unless it only wrote items of ephemeral tables) and note
        it for the snapshot and (``counted``: a client's request) the write counters. Returns the answer to give
        instead when the log failed."""
        if operation in READ_ONLY_OPERATIONS or not status.startswith("2"):
            return None
        tables = _tables_named(body)
        durable = not (operation in ITEM_WRITE_OPERATIONS and tables and tables <= self.ephemeral_tables)
        if durable:
            try:
                self._log_write(operation, region, body)
            except WalError as exc:
                return self._fail(exc)
        self._note(region, tables if counted else set(), durable)
        return None

    def _log_write(self, operation: str, region: str, body: bytes) -> None:
        if self.wal is not None:
            self.wal.append(operation, region, body)

    def _fail(self, exc: WalError) -> tuple[str, list[tuple[str, str]], bytes]:
        """The log cannot take the write moto just applied: answer 500 (not acknowledged) and stop serving."""
        self.failure = str(exc)
        log.critical("the write-ahead log failed; the embedded DynamoDB stops", extra={"error": str(exc)})
        self.on_failure()
        return _error_response("500 Internal Server Error", "InternalServerError", str(exc))

    @staticmethod
    def _read_body(environ: dict[str, Any]) -> bytes:
        """The request body (read here, handed on to moto unchanged)."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        return raw

    def _run(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        chunks = self._app(environ, capture)
        try:
            body = b"".join(chunks)  # materialized inside the lock: moto may work lazily while iterating
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return captured["status"], captured["headers"], body

    def _note(self, region: str, tables: set[str], durable: bool) -> None:
        """A successful write (``_record`` filtered the rest): its region, its tables' counters, and the snapshot's
        generation when it changed what a snapshot keeps."""
        with self._write_mutex:
            self.regions.add(region)
            for table in tables:
                self.writes_by_table[table] = self.writes_by_table.get(table, 0) + 1
            if not durable:
                return  # nothing a snapshot would keep changed
            self.generation += 1
        self.changed.set()

    def reset_backends(self) -> None:
        """moto keeps its data in module globals: a server started in-process must not inherit another's."""
        from werkzeug.test import EnvironBuilder, run_wsgi_app

        builder = EnvironBuilder(path="/moto-api/reset", method="POST", base_url="http://127.0.0.1/")
        try:
            app_iter, status, _headers = run_wsgi_app(self._app, builder.get_environ(), buffered=True)
            b"".join(app_iter)
        finally:
            builder.close()
        if not status.startswith("2"):
            raise DynamoRequestError(f"resetting moto failed: {status}")

    def request(self, region: str, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One DynamoDB call in-process (no socket), bypassing nothing but the network: callers hold ``lock``.

        Writes are logged like a client's (a TTL sweep's deletes must survive a crash too).
        """
        status, raw = self.request_raw(region, operation, json.dumps(payload).encode())
        data = json.loads(raw or b"{}")
        if not status.startswith("2"):
            raise DynamoRequestError(f"{operation} failed: {status}: {data.get('__type')}: {data.get('message')}")
        return data

    def request_raw(self, region: str, operation: str, body: bytes) -> tuple[str, bytes]:
        from werkzeug.test import EnvironBuilder

        builder = EnvironBuilder(
            path="/",
            method="POST",
            base_url="http://127.0.0.1/",
            headers={
                "X-Amz-Target": TARGET_PREFIX + operation,
                "Content-Type": "application/x-amz-json-1.0",
                "Authorization": (
                    f"AWS4-HMAC-SHA256 Credential=testing/20200101/{region}/dynamodb/aws4_request, "
                    "SignedHeaders=host;x-amz-target, Signature=0"
                ),
            },
            data=body,
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        with self.lock:
            status, _headers, raw = self._run(environ)
            failure = self._record(operation, region, status, body, counted=False)
            if failure is not None:
                status, _headers, raw = failure
        return status, raw


def _tables_named(raw: bytes) -> set[str]:
    """The tables a write request names."""
    try:
        payload = json.loads(raw or b"{}")
    except ValueError:
        return set()
    if not isinstance(payload, dict):
        return set()
    tables = {payload["TableName"]} if isinstance(payload.get("TableName"), str) else set()
    tables |= set(payload.get("RequestItems") or {})
    for action in payload.get("TransactItems") or []:
        tables |= {body.get("TableName") for body in action.values() if isinstance(body, dict)}
    return {t for t in tables if isinstance(t, str) and t}


def _region_of(authorization: str) -> str:
    match = _CREDENTIAL_SCOPE.search(authorization)
    return match.group(1) if match else DEFAULT_REGION


# -- snapshot ----------------------------------------------------------------------------------------------
def take_snapshot(app: SerializedDynamoApp, close: bool = False) -> tuple[dict[str, Any], int]:
    """Every table of every region written so far, read while holding the request lock (consistent).

    The write-ahead log starts a new segment at the same instant: the document's ``wal_next`` is the first
    record it does not hold. ``close``: the final snapshot; requests after it are refused.
    """
    with app.lock:
        if close:
            app.closed = True
        generation = app.generation
        wal_next = app.wal.rotate() if app.wal is not None else None
        regions: dict[str, Any] = {}
        for region in sorted(app.regions):
            tables = []
            for name in _list_tables(app, region):
                description = app.request(region, "DescribeTable", {"TableName": name})["Table"]
                ttl = app.request(region, "DescribeTimeToLive", {"TableName": name}).get("TimeToLiveDescription", {})
                tables.append(
                    {
                        "create": _create_request(description),
                        "ttl_attribute": ttl.get("AttributeName")
                        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
                        else None,
                        "items": [] if name in app.ephemeral_tables else list(_scan_all(app, region, name)),
                    }
                )
            regions[region] = {"tables": tables}
    document = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "taken_at": utc_iso(timespec="seconds"),
        "snapshot_id": uuid.uuid4().hex,
        "wal_next": wal_next,
        "regions": regions,
    }
    return document, generation


def _list_tables(app: SerializedDynamoApp, region: str) -> list[str]:
    names: list[str] = []
    payload: dict[str, Any] = {}
    while True:
        page = app.request(region, "ListTables", payload)
        names.extend(page.get("TableNames", []))
        if not page.get("LastEvaluatedTableName"):
            return names
        payload = {"ExclusiveStartTableName": page["LastEvaluatedTableName"]}


def _scan_all(app: SerializedDynamoApp, region: str, table: str, **extra: Any) -> Iterator[dict[str, Any]]:
    payload: dict[str, Any] = {"TableName": table, **extra}
    while True:
        page = app.request(region, "Scan", payload)
        yield from page.get("Items", [])
        if not page.get("LastEvaluatedKey"):
            return
        payload = {**payload, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def _create_request(description: dict[str, Any]) -> dict[str, Any]:
    """The CreateTable request that rebuilds a table from its DescribeTable output."""
    billing = (description.get("BillingModeSummary") or {}).get("BillingMode") or "PAY_PER_REQUEST"
    request: dict[str, Any] = {
        "TableName": description["TableName"],
        "KeySchema": description["KeySchema"],
        "AttributeDefinitions": description["AttributeDefinitions"],
        "BillingMode": billing,
    }

    def throughput(source: dict[str, Any]) -> dict[str, int]:
        given = source.get("ProvisionedThroughput") or {}
        return {
            "ReadCapacityUnits": max(1, int(given.get("ReadCapacityUnits") or 1)),
            "WriteCapacityUnits": max(1, int(given.get("WriteCapacityUnits") or 1)),
        }

    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = throughput(description)
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        indexes = []
        for index in description.get(kind) or []:
            spec = {key: index[key] for key in ("IndexName", "KeySchema", "Projection") if key in index}
            if kind == "GlobalSecondaryIndexes" and billing == "PROVISIONED":
                spec["ProvisionedThroughput"] = throughput(index)
            indexes.append(spec)
        if indexes:
            request[kind] = indexes
    return request


def restore_snapshot(app: SerializedDynamoApp, document: dict[str, Any]) -> int:
    """Recreate the tables and items of a snapshot; returns the number of items restored."""
    if document.get("format") != SNAPSHOT_FORMAT or document.get("version") != SNAPSHOT_VERSION:
        raise SnapshotError(f"not a version-{SNAPSHOT_VERSION} {SNAPSHOT_FORMAT} document")
    restored = 0
    with app.lock:
        for region, content in document.get("regions", {}).items():
            app.regions.add(region)
            for table in content.get("tables", []):
                name = table["create"]["TableName"]
                app.request(region, "CreateTable", table["create"])
                if table.get("ttl_attribute"):
                    app.request(
                        region,
                        "UpdateTimeToLive",
                        {
                            "TableName": name,
                            "TimeToLiveSpecification": {"Enabled": True, "AttributeName": table["ttl_attribute"]},
                        },
                    )
                items = table.get("items", [])
                for start in range(0, len(items), _BATCH_WRITE_LIMIT):
                    batch = [{"PutRequest": {"Item": item}} for item in items[start : start + _BATCH_WRITE_LIMIT]]
                    pending: dict[str, Any] = {name: batch}
                    while pending:
                        answer = app.request(region, "BatchWriteItem", {"RequestItems": pending})
                        pending = answer.get("UnprocessedItems") or {}
                restored += len(items)
        app.generation = 0
    return restored


class SnapshotFile:
    """The snapshot on disk, replaced atomically (temp file + fsync + rename): a crash leaves the old one."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / SNAPSHOT_FILE

    def load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SnapshotError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise SnapshotError(f"{self.path}: not valid JSON: {exc}") from None

    def save(self, document: dict[str, Any]) -> None:
        write_atomically(self.path, lambda handle: json.dump(document, handle, separators=(",", ":")))


class CleanMarker:
    """``dynamodb.clean``: written after the final snapshot of a clean stop, naming it; removed before serving.

    Its presence, matching the snapshot on disk, proves the state holds everything that was served; without
    it, the stack cannot know what clients saw and starts a new event epoch. It names the snapshot by its id
    and by its file's identity (inode, change time, size): a copy restored from a backup — even a whole older
    state directory, marker included — is a new file with a new change time, so it does not match.
    """

    def __init__(self, state_dir: Path):
        self.path = state_dir / CLEAN_MARKER_FILE

    @staticmethod
    def file_identity(path: Path) -> dict[str, int] | None:
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        return {"inode": info.st_ino, "ctime_ns": info.st_ctime_ns, "size": info.st_size}

    def matches(self, marker: dict[str, Any], document: dict[str, Any] | None, snapshot_path: Path) -> bool:
        return (
            document is not None
            and marker.get("snapshot_id") == document.get("snapshot_id")
            and marker.get("snapshot_file") == self.file_identity(snapshot_path)
        )

    def read(self) -> dict[str, Any] | None:
        try:
            marker = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: present, but proves nothing
        return marker if isinstance(marker, dict) else {}

    def write(self, document: dict[str, Any], snapshot_path: Path) -> None:
        marker = {"snapshot_id": document["snapshot_id"], "wal_next": document.get("wal_next"),
                  "snapshot_file": self.file_identity(snapshot_path), "stopped_at": utc_iso(timespec="seconds")}
        write_atomically(self.path, lambda handle: json.dump(marker, handle))

    def remove(self) -> None:
        remove_durably(self.path)


class Snapshotter:
    """Compacts the write-ahead log into a snapshot shortly (``delay_s``) after the tables change, and at stop."""

    def __init__(self, app: SerializedDynamoApp, snapshot_file: SnapshotFile, delay_s: float = 0.5):
        self._app = app
        self._file = snapshot_file
        self._delay_s = delay_s
        self._saved_generation = app.generation
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dynamodb-snapshot", daemon=True)
        self._save_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._app.changed.wait()
            if self._stopping.is_set():
                return
            self._stopping.wait(self._delay_s)  # coalesce a burst of writes into one snapshot
            self._app.changed.clear()
            try:
                self.save()
            except Exception:
                log.exception("snapshot failed", extra={"path": str(self._file.path)})
                self._app.changed.set()
                self._stopping.wait(1.0)

    def save(self, force: bool = False, close: bool = False) -> dict[str, Any] | None:
        """Write a snapshot if the tables changed since the last one (or ``force``); returns it, or None.

        Once it is on disk, the log segments it holds are deleted.
        """
        with self._save_lock:
            if not force and self._app.generation == self._saved_generation:
                return None
            started = time.monotonic()
            document, generation = take_snapshot(self._app, close=close)
            self._file.save(document)
            self._saved_generation = generation
            if self._app.wal is not None and document["wal_next"] is not None:
                self._app.wal.discard_before(document["wal_next"])
            log.debug(
                "snapshot written",
                extra={"path": str(self._file.path), "ms": round((time.monotonic() - started) * 1000, 1)},
            )
            return document

    def stop(self) -> dict[str, Any]:
        """Stop the thread and write the final snapshot; requests after it are refused. Returns it."""
        self._stopping.set()
        self._app.changed.set()
        self._thread.join(timeout=10)
        document = self.save(force=True, close=True)
        assert document is not None
        return document


class TtlSweeper:
    """Deletes items whose TTL attribute (epoch seconds) has passed, like DynamoDB's background TTL."""

    def __init__(self, app: SerializedDynamoApp, interval_s: float):
        self._app = app
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dynamodb-ttl", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                deleted = self.sweep(time.time())
                if deleted:
                    log.debug("expired items deleted", extra={"count": deleted})
            except Exception:
                log.exception("TTL sweep failed")

    def sweep(self, now: float) -> int:
        deleted = 0
        with self._app.lock:
            for region in sorted(self._app.regions):
                for name in _list_tables(self._app, region):
                    ttl = self._app.request(region, "DescribeTimeToLive", {"TableName": name})
                    description = ttl.get("TimeToLiveDescription", {})
                    attribute = description.get("AttributeName")
                    if description.get("TimeToLiveStatus") != "ENABLED" or not attribute:
                        continue
                    keys = [
                        entry["AttributeName"]
                        for entry in self._app.request(region, "DescribeTable", {"TableName": name})["Table"][
                            "KeySchema"
                        ]
                    ]
                    expired = _scan_all(
                        self._app,
                        region,
                        name,
                        FilterExpression="#ttl < :now",
                        ExpressionAttributeNames={"#ttl": attribute},
                        ExpressionAttributeValues={":now": {"N": str(int(now))}},
                    )
                    for item in list(expired):
                        self._app.request(
                            region, "DeleteItem", {"TableName": name, "Key": {key: item[key] for key in keys}}
                        )
                        deleted += 1
        return deleted


# -- the server --------------------------------------------------------------------------------------------
def _moto_app() -> Callable[..., Any]:
    """moto's WSGI app; DynamoDB calls skip its per-request host dispatch (a third of a request's cost)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from devstack.moto_patches import one_backup_per_table

    one_backup_per_table()  # a transaction copied a table once per action (100 copies for a fenced GC)
    dispatcher = DomainDispatcherApplication(create_backend_app)
    dynamodb = create_backend_app("dynamodb")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith(TARGET_PREFIX):
            return dynamodb(environ, start_response)
        return dispatcher(environ, start_response)

    return app


def replay_log(app: SerializedDynamoApp, reader: LogReader) -> int:
    """Apply the log's records in order (before the server serves); returns how many. Stops at a record that
    fails: the tables then differ from what was served, and ``reader.problem`` says so."""
    replayed = 0
    for record in reader:
        status, raw = app.request_raw(record.region, record.operation, record.body)
        if not status.startswith("2"):
            detail = json.loads(raw or b"{}").get("__type", status) if raw.startswith(b"{") else status
            reader.problem = f"record {record.number} ({record.operation}) cannot be replayed: {detail}"
            break
        replayed += 1
    return replayed


class StateLock:
    """``.dynamodb.lock``: one server per state directory. A new one waits (bounded) for the previous one,
    which may still be writing its final snapshot after its stack has gone."""

    def __init__(self, state_dir: Path):
        self._path = state_dir / LOCK_FILE
        self._handle: Any = None

    def acquire(self, wait_s: float = STATE_LOCK_WAIT_S) -> None:
        handle = open(self._path, "a+")  # noqa: SIM115 — held for the server's lifetime
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise SnapshotError(f"another embedded DynamoDB still uses {self._path.parent}") from None
                time.sleep(0.1)
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the flock
            self._handle = None


class EmbeddedDynamoServer:
    """moto's DynamoDB behind the serializing middleware, on 127.0.0.1, with optional persistence.

    With a ``state_dir``: the snapshot is restored and the write-ahead log replayed before serving; every write
    is logged before it is answered (``wal=False`` only for negative controls); ``restored`` reports whether
    the state is proven to be what was served before (a matching clean-shutdown marker, an intact log).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | None = None,
        serialize: bool = True,
        snapshot_delay_s: float = 0.5,
        ttl_sweep_s: float | None = 60.0,
        wal: bool = True,
        ephemeral_tables: Iterable[str] = (),
    ):
        self.app = SerializedDynamoApp(
            _moto_app(), serialize=serialize, allowed_hosts={host}, ephemeral_tables=ephemeral_tables
        )
        self._host = host
        self._port = port
        self._state_dir = state_dir
        self._use_wal = wal
        self._snapshot_file = SnapshotFile(state_dir) if state_dir is not None else None
        self._marker = CleanMarker(state_dir) if state_dir is not None else None
        self._state_lock = StateLock(state_dir) if state_dir is not None else None
        self._snapshotter = (
            Snapshotter(self.app, self._snapshot_file, snapshot_delay_s) if self._snapshot_file else None
        )
        self._sweeper = TtlSweeper(self.app, ttl_sweep_s) if ttl_sweep_s else None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.restored: dict[str, Any] = {"clean": True, "state": "memory", "reason": None, "replayed": 0}

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> None:
        from devstack.wsgi_server import KeepAliveWSGIServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per DynamoDB call
        self.app.reset_backends()
        if self._state_dir is not None:
            self._restore()
        self._server = KeepAliveWSGIServer((self._host, self._port), self.app)  # keep-alive: no TCP setup per call
        self._thread = threading.Thread(target=self._server.serve_forever, name="dynamodb-http", daemon=True)
        self._thread.start()
        if self._snapshotter is not None:
            self._snapshotter.start()
        if self._sweeper is not None:
            self._sweeper.start()

    def _restore(self) -> None:
        assert self._state_dir and self._snapshot_file and self._marker and self._state_lock and self._snapshotter
        private_directory(self._state_dir)
        self._state_lock.acquire()
        marker = self._marker.read()
        document = self._snapshot_file.load()
        items = restore_snapshot(self.app, document) if document is not None else 0
        first = int((document or {}).get("wal_next") or 1)
        reader = LogReader(self._state_dir, first)
        replayed = replay_log(self.app, reader) if self._use_wal else 0
        if reader.problem:
            moved = set_aside(reader.found)
            log.error("the write-ahead log is damaged; the state ends before it",
                      extra={"problem": reader.problem, "set_aside": [path.name for path in moved]})
        if self._use_wal:
            self.app.wal = WriteAheadLog(self._state_dir, reader.next_number)
        self.restored = self._assess(marker, document, reader, replayed)
        self._marker.remove()  # from here on the state may run ahead of any snapshot
        if replayed or reader.problem or reader.torn_tail or len(reader.found) > 1:
            self._snapshotter.save(force=True)  # compact now: the replayed records' segments are then deleted
        log.info(
            "tables restored",
            extra={"path": str(self._snapshot_file.path), "items": items, "log_records": replayed, **{
                key: self.restored[key] for key in ("state", "reason")}},
        )

    def _assess(
        self, marker: dict[str, Any] | None, document: dict[str, Any] | None, reader: LogReader, replayed: int
    ) -> dict[str, Any]:
        """Is the restored state exactly what was served before? (If not, the stack starts a new epoch.)"""
        if reader.problem:
            reason = reader.problem
        elif marker is None and document is None and not replayed:
            return {"clean": True, "state": "fresh", "reason": None, "replayed": 0}
        elif marker is None:
            reason = "no clean-shutdown marker: the last stop was not clean"
        elif not self._marker.matches(marker, document, self._snapshot_file.path):  # type: ignore[union-attr]
            reason = "the snapshot on disk is not the one the last clean stop wrote (restored from elsewhere?)"
        else:
            return {"clean": True, "state": "clean", "reason": None, "replayed": replayed}
        return {"clean": False, "state": "unclean", "reason": reason, "replayed": replayed}

    def stop(self) -> None:
        """Stop serving, write the final snapshot and the clean-shutdown marker (not after a log failure)."""
        if self._sweeper is not None:
            self._sweeper.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._snapshotter is not None and self._marker is not None:
            document = self._snapshotter.stop()
            if self.app.failure is None:
                self._marker.write(document, self._snapshot_file.path)  # type: ignore[union-attr]
        if self.app.wal is not None:
            self.app.wal.close()
        if self._state_lock is not None:
            self._state_lock.release()


# -- the child process, seen from the parent --------------------------------------------------------------
class DynamoProcess:
    """Starts ``python -m devstack.dynamodb`` and knows its endpoint.

    The child cannot outlive us: it gets SIGTERM when we die (``PR_SET_PDEATHSIG`` on Linux) and it also
    exits when its stdin (a pipe we hold) reaches EOF, which happens however we die. Either way it stops
    cleanly: final snapshot, clean-shutdown marker.
    """

    def __init__(
        self,
        state_dir: Path | None,
        port: int = 0,
        serialize: bool = True,
        snapshot_delay_s: float = 0.5,
        ttl_sweep_s: float | None = 60.0,
        env: dict[str, str] | None = None,
        startup_timeout_s: float = 90.0,
        switch_interval_s: float | None = None,
        wal: bool = True,
        ephemeral_tables: Iterable[str] = (),
    ):
        self._args = [sys.executable, "-m", "devstack.dynamodb", "--port", str(port), "--watch-stdin",
                      "--parent-pid", str(os.getpid())]
        if state_dir is not None:
            self._args += ["--state-dir", str(state_dir)]
        if not serialize:
            self._args.append("--no-serialize")
        if not wal:
            self._args.append("--no-wal")
        for table in ephemeral_tables:
            self._args += ["--ephemeral-table", table]
        self._args += ["--snapshot-delay", str(snapshot_delay_s), "--ttl-sweep", str(ttl_sweep_s or 0)]
        if switch_interval_s:
            self._args += ["--switch-interval", str(switch_interval_s)]
        self._env = env
        self._startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.restored: dict[str, Any] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        project_dir = Path(__file__).resolve().parents[1]
        self.process = subprocess.Popen(
            self._args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self._env,
            cwd=project_dir,
            start_new_session=True,  # Ctrl-C in a terminal must not reach it: we stop it last, after the app
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + self._startup_timeout_s
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            ready, _, _ = select.select([self.process.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        text = line.decode(errors="replace").strip()
        if not text.startswith(READY_PREFIX.strip()):
            code = self.process.poll()
            self.stop()
            detail = f"exited with status {code}" if code is not None else "did not report ready in time"
            raise RuntimeError(f"the embedded DynamoDB (moto) {detail}; see the log lines above")
        ready = json.loads(text[len(READY_PREFIX) :])
        self.port = int(ready["port"])
        self.restored = ready.get("restored") or {}

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (the child writes its final snapshot), then SIGKILL if it does not exit in time."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.error("embedded DynamoDB did not stop in time; killing it (its log keeps every write)")
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return process.returncode

    def stop_from_signal_context(self, timeout_s: float) -> bool:
        """SIGTERM and wait for the exit without taking any lock (another thread may be inside ``stop``):
        ``waitid(WNOWAIT)`` sees the exit without reaping, so ``Popen`` still can. True when it exited."""
        process = self.process
        if process is None:
            return True
        with contextlib.suppress(OSError):
            os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            except ChildProcessError:
                return True  # already reaped
            time.sleep(0.05)
        return False


# -- the child process itself ------------------------------------------------------------------------------
def _die_with_parent(parent_pid: int | None) -> bool:
    """Ask for SIGTERM when the parent dies; False when it is already gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    return parent_pid is None or os.getppid() == parent_pid  # checked after prctl: no window left open


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.dynamodb", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-dir", type=Path, default=None, help="persist tables here (default: in memory)")
    parser.add_argument("--no-serialize", action="store_true", help="test-only negative control: no request lock")
    parser.add_argument("--no-wal", action="store_true", help="test-only negative control: no write-ahead log")
    parser.add_argument("--ephemeral-table", action="append", default=[],
                        help="a table whose items are not kept across restarts (neither logged nor snapshotted)")
    parser.add_argument("--snapshot-delay", type=float, default=0.5, help="seconds between a change and its snapshot")
    parser.add_argument("--ttl-sweep", type=float, default=60.0, help="seconds between TTL sweeps (0: never)")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches EOF (parent died)")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this parent process dies")
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="test-only: sys.setswitchinterval, to widen races"
    )
    args = parser.parse_args(argv)
    try:  # the stack passes down the format it chose (its stderr is ours)
        install_log_format(log_format_choice(os.environ))
    except ValueError as exc:
        print(f"model-catalog: {exc}", file=sys.stderr)
        return 2
    os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"  # read when moto is first imported, below
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)

    signals = StopSignals().install()
    parent_gone = threading.Event()  # set by threads only; the main thread reads it after a wake-up

    def on_parent_gone() -> None:
        parent_gone.set()
        signals.wake()

    if args.parent_pid is not None and not _die_with_parent(args.parent_pid):
        parent_gone.set()
    if args.watch_stdin:

        def watch_stdin() -> None:
            # os.read on the raw descriptor: a daemon thread blocked in sys.stdin's buffered reader would
            # hold its lock at interpreter shutdown and abort the process.
            with contextlib.suppress(OSError):
                while os.read(0, 4096):
                    pass
            on_parent_gone()

        threading.Thread(target=watch_stdin, name="parent-watch", daemon=True).start()

    server = EmbeddedDynamoServer(
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        serialize=not args.no_serialize,
        snapshot_delay_s=args.snapshot_delay,
        ttl_sweep_s=args.ttl_sweep or None,
        wal=not args.no_wal,
        ephemeral_tables=args.ephemeral_table,
    )
    server.app.on_failure = signals.wake
    try:
        server.start()
    except (SnapshotError, DynamoRequestError) as exc:
        print(
            f"model-catalog: cannot restore the local DynamoDB state: {exc}\n"
            "  Start empty with `make run RESET=1` (this deletes the local state).",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:
        print(f"model-catalog: the embedded DynamoDB cannot start on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    ready = {"port": server.port, "endpoint": server.endpoint, "restored": server.restored}
    print(READY_PREFIX + json.dumps(ready), flush=True)
    log.info(
        "embedded DynamoDB serving",
        extra={"endpoint": server.endpoint, "serialized": not args.no_serialize, "state_dir": str(args.state_dir),
               "write_ahead_log": not args.no_wal and args.state_dir is not None},
    )
    while not (signals.received or parent_gone.is_set() or server.app.failure):
        signals.wait(1.0)
    why = (signal_name(signals.received[0][0]) if signals.received
           else "parent gone" if parent_gone.is_set() else "write-ahead log failure")
    log.info("embedded DynamoDB stopping", extra={"reason": why})
    try:
        server.stop()
    except Exception:
        log.exception("the embedded DynamoDB did not stop cleanly (its write-ahead log keeps every write)")
        return 1
    log.info("embedded DynamoDB stopped")
    return 1 if server.app.failure else 0


if __name__ == "__main__":
    sys.exit(main())
