"""The embedded DynamoDB of the local stack: moto's server, serialized, snapshotted to disk.

Run as its own process (own GIL, own crash domain)::

    python -m devstack.dynamodb --port 0 --state-dir .local/state

It prints ``MODEL_CATALOG_DYNAMODB_READY {"port": ..., "endpoint": ...}`` on stdout once it serves.

Why a lock: moto serves each request on its own thread and evaluates a ``ConditionExpression`` and then
writes, with nothing in between holding other writers off. Real DynamoDB makes condition-then-write
atomic per item; the lease lock and the event journal rely on that. One lock around every request gives
the same guarantee (and more: requests are linearizable, which DynamoDB does not promise across items).

Why snapshots through the wire protocol: the snapshot is taken with DynamoDB's own JSON (``DescribeTable``,
``DescribeTimeToLive``, ``Scan``) sent in-process to moto's WSGI app while holding the request lock, so
it is consistent across tables and does not depend on moto's internal classes; restoring replays
``CreateTable`` / ``UpdateTimeToLive`` / ``BatchWriteItem`` before the server accepts any request.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from chalicelib.clock import utc_iso
from chalicelib.logs import get_logger
from devstack.logformat import install_log_format, log_format_choice

log = get_logger("local.dynamodb")

SNAPSHOT_FILE = "dynamodb.json"
SNAPSHOT_FORMAT = "model-catalog/dynamodb-snapshot"
SNAPSHOT_VERSION = 1
READY_PREFIX = "MODEL_CATALOG_DYNAMODB_READY "
DEFAULT_REGION = "us-east-1"
TARGET_PREFIX = "DynamoDB_20120810."
# Operations that never change data; everything else marks the tables dirty (a spurious snapshot is cheap,
# a missed one is lost data).
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
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/dynamodb/aws4_request")
_BATCH_WRITE_LIMIT = 25


class DynamoRequestError(RuntimeError):
    """An in-process DynamoDB request (snapshot, restore, TTL sweep) failed."""


class SnapshotError(RuntimeError):
    """The snapshot on disk cannot be restored."""


class SerializedDynamoApp:
    """WSGI middleware around moto's app: one request at a time, and it notices writes.

    ``serialize=False`` exists only for negative controls in tests (proving the race is real without it).
    """

    def __init__(self, app: Callable[..., Any], serialize: bool = True):
        self._app = app
        self.serialize = serialize
        # Reentrant so that the snapshot/TTL code, which holds it, can call ``request`` in-process.
        self.lock = threading.RLock()
        self.generation = 0  # bumped (under the lock) by every successful write
        self.regions: set[str] = set()
        self.changed = threading.Event()
        self._write_mutex = threading.Lock()  # guards generation/regions when serialize=False
        self.writes_by_table: dict[str, int] = {}  # successful write calls per table (GET /_stats/writes)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/_stats/writes" and environ.get("REQUEST_METHOD") == "GET":
            with self._write_mutex:
                body = json.dumps(self.writes_by_table).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
        region = _region_of(environ.get("HTTP_AUTHORIZATION", ""))
        tables = self._tables_written(environ, operation)
        if self.serialize:
            with self.lock:
                status, headers, body = self._run(environ)
                self._note(operation, region, status, tables)
        else:
            status, headers, body = self._run(environ)
            self._note(operation, region, status, tables)
        start_response(status, headers)
        return [body]

    @staticmethod
    def _tables_written(environ: dict[str, Any], operation: str) -> set[str]:
        """The tables a write request names (the body is read here and handed on to moto unchanged)."""
        if operation in READ_ONLY_OPERATIONS or not operation:
            return set()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            return set()
        tables = {payload["TableName"]} if isinstance(payload.get("TableName"), str) else set()
        tables |= set(payload.get("RequestItems") or {})
        for action in payload.get("TransactItems") or []:
            tables |= {body.get("TableName") for body in action.values() if isinstance(body, dict)}
        return {t for t in tables if t}

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

    def _note(self, operation: str, region: str, status: str, tables: set[str] = frozenset()) -> None:
        if operation in READ_ONLY_OPERATIONS or not status.startswith("2"):
            return
        with self._write_mutex:
            self.generation += 1
            self.regions.add(region)
            for table in tables:
                self.writes_by_table[table] = self.writes_by_table.get(table, 0) + 1
        self.changed.set()

    def request(self, region: str, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One DynamoDB call in-process (no socket), bypassing nothing but the network: callers hold ``lock``."""
        from werkzeug.test import EnvironBuilder

        body = json.dumps(payload).encode()
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
            self._note(operation, region, status)
        data = json.loads(raw or b"{}")
        if not status.startswith("2"):
            raise DynamoRequestError(f"{operation} failed: {status}: {data.get('__type')}: {data.get('message')}")
        return data


def _region_of(authorization: str) -> str:
    match = _CREDENTIAL_SCOPE.search(authorization)
    return match.group(1) if match else DEFAULT_REGION


# -- snapshot ----------------------------------------------------------------------------------------------
def take_snapshot(app: SerializedDynamoApp) -> tuple[dict[str, Any], int]:
    """Every table of every region written so far, read while holding the request lock (consistent)."""
    with app.lock:
        generation = app.generation
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
                        "items": list(_scan_all(app, region, name)),
                    }
                )
            regions[region] = {"tables": tables}
    document = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "taken_at": utc_iso(timespec="seconds"),
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(document, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        with contextlib.suppress(OSError):  # make the rename itself durable (not possible on every platform)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)


class Snapshotter:
    """Writes a snapshot shortly (``delay_s``, ≤ 1 s) after the tables change, and once more at stop."""

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
                self.save_if_changed()
            except Exception:
                log.exception("snapshot failed", extra={"path": str(self._file.path)})
                self._app.changed.set()
                self._stopping.wait(1.0)

    def save_if_changed(self) -> bool:
        with self._save_lock:
            if self._app.generation == self._saved_generation:
                return False
            started = time.monotonic()
            document, generation = take_snapshot(self._app)
            self._file.save(document)
            self._saved_generation = generation
            log.debug(
                "snapshot written",
                extra={"path": str(self._file.path), "ms": round((time.monotonic() - started) * 1000, 1)},
            )
            return True

    def stop(self) -> None:
        """Stop the thread and write the final snapshot (callers stop serving requests first)."""
        self._stopping.set()
        self._app.changed.set()
        self._thread.join(timeout=10)
        self.save_if_changed()


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


class EmbeddedDynamoServer:
    """moto's DynamoDB behind the serializing middleware, on 127.0.0.1, with optional persistence."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | None = None,
        serialize: bool = True,
        snapshot_delay_s: float = 0.5,
        ttl_sweep_s: float | None = 60.0,
    ):
        self.app = SerializedDynamoApp(_moto_app(), serialize=serialize)
        self._host = host
        self._port = port
        self._snapshot_file = SnapshotFile(state_dir) if state_dir is not None else None
        self._snapshotter = (
            Snapshotter(self.app, self._snapshot_file, snapshot_delay_s) if self._snapshot_file else None
        )
        self._sweeper = TtlSweeper(self.app, ttl_sweep_s) if ttl_sweep_s else None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> None:
        from devstack.wsgi_server import KeepAliveWSGIServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per DynamoDB call
        self._reset_backends()
        if self._snapshot_file is not None:
            document = self._snapshot_file.load()
            if document is not None:
                count = restore_snapshot(self.app, document)
                log.info("tables restored", extra={"path": str(self._snapshot_file.path), "items": count})
        self._server = KeepAliveWSGIServer((self._host, self._port), self.app)  # keep-alive: no TCP setup per call
        self._thread = threading.Thread(target=self._server.serve_forever, name="dynamodb-http", daemon=True)
        self._thread.start()
        if self._snapshotter is not None:
            self._snapshotter.start()
        if self._sweeper is not None:
            self._sweeper.start()

    def _reset_backends(self) -> None:
        """moto keeps its data in module globals: a server started in-process must not inherit another's."""
        from werkzeug.test import EnvironBuilder, run_wsgi_app

        builder = EnvironBuilder(path="/moto-api/reset", method="POST", base_url="http://127.0.0.1/")
        try:
            app_iter, status, _headers = run_wsgi_app(self.app, builder.get_environ(), buffered=True)
            b"".join(app_iter)
        finally:
            builder.close()
        if not status.startswith("2"):
            raise DynamoRequestError(f"resetting moto failed: {status}")

    def snapshot_now(self) -> bool:
        return self._snapshotter.save_if_changed() if self._snapshotter else False

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._snapshotter is not None:
            self._snapshotter.stop()


# -- the child process, seen from the parent --------------------------------------------------------------
class DynamoProcess:
    """Starts ``python -m devstack.dynamodb`` and knows its endpoint.

    The child cannot outlive us: it gets SIGTERM when we die (``PR_SET_PDEATHSIG`` on Linux) and it also
    exits when its stdin (a pipe we hold) reaches EOF, which happens however we die.
    """

    def __init__(
        self,
        state_dir: Path | None,
        port: int = 0,
        serialize: bool = True,
        snapshot_delay_s: float = 0.5,
        ttl_sweep_s: float | None = 60.0,
        env: dict[str, str] | None = None,
        startup_timeout_s: float = 30.0,
        switch_interval_s: float | None = None,
    ):
        self._args = [sys.executable, "-m", "devstack.dynamodb", "--port", str(port), "--watch-stdin"]
        if state_dir is not None:
            self._args += ["--state-dir", str(state_dir)]
        if not serialize:
            self._args.append("--no-serialize")
        self._args += ["--snapshot-delay", str(snapshot_delay_s), "--ttl-sweep", str(ttl_sweep_s or 0)]
        if switch_interval_s:
            self._args += ["--switch-interval", str(switch_interval_s)]
        self._env = env
        self._startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

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
        self.port = int(json.loads(text[len(READY_PREFIX) :])["port"])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> int | None:
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
                log.error("embedded DynamoDB did not stop in time; killing it")
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return process.returncode


# -- the child process itself ------------------------------------------------------------------------------
def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.dynamodb", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-dir", type=Path, default=None, help="persist tables here (default: in memory)")
    parser.add_argument("--no-serialize", action="store_true", help="test-only negative control: no request lock")
    parser.add_argument("--snapshot-delay", type=float, default=0.5, help="seconds between a change and its snapshot")
    parser.add_argument("--ttl-sweep", type=float, default=60.0, help="seconds between TTL sweeps (0: never)")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches EOF (parent died)")
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="test-only: sys.setswitchinterval, to widen races"
    )
    args = parser.parse_args(argv)
    try:  # the stack passes down the format it chose (its stderr is ours)
        install_log_format(log_format_choice(os.environ))
    except ValueError as exc:
        print(f"model-catalog: {exc}", file=sys.stderr)
        return 2
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)

    parent_pid = os.getppid()
    stopping = threading.Event()

    def request_stop(*_: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if args.watch_stdin:
        _die_with_parent(parent_pid)

        def watch_stdin() -> None:
            # os.read on the raw descriptor: a daemon thread blocked in sys.stdin's buffered reader would
            # hold its lock at interpreter shutdown and abort the process.
            with contextlib.suppress(OSError):
                while os.read(0, 4096):
                    pass
            stopping.set()

        threading.Thread(target=watch_stdin, name="parent-watch", daemon=True).start()

    server = EmbeddedDynamoServer(
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        serialize=not args.no_serialize,
        snapshot_delay_s=args.snapshot_delay,
        ttl_sweep_s=args.ttl_sweep or None,
    )
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
        print(f"model-catalog: the embedded DynamoDB cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(READY_PREFIX + json.dumps({"port": server.port, "endpoint": server.endpoint}), flush=True)
    log.info(
        "embedded DynamoDB serving",
        extra={"endpoint": server.endpoint, "serialized": not args.no_serialize, "state_dir": str(args.state_dir)},
    )
    while not stopping.wait(0.5):
        pass
    server.stop()
    log.info("embedded DynamoDB stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
