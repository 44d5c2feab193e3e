"""Reusable fault injectors for the refresh engine's DynamoDB traffic, and a reader that checks snapshots.

``DynamoFaults`` hooks a boto3 DynamoDB client *below* botocore's retry handler (``before-send``, registered
first so it runs before moto's in-process stubber): an injected error is an HTTP response botocore parses and
classifies like a real one, so the client's retry mode decides whether it is retried. Call sites are told apart
by operation and request body (``SITES``)::

    faults = DynamoFaults(client)
    faults.arm("commit", "throughput", times=1)      # the next TransactWriteItems answers 400 throttled once
    faults.arm("release", "internal", times=None)     # every lock release answers 500
    faults.calls["commit"], faults.injected["commit"]

``CatalogChecker`` reads the catalog with its own client and records every snapshot that is not one of the
allowed complete states (``old``/``new``), or whose event journal disagrees with the manifest.

``python -m tests.faults`` is the child process of the kill tests: one refresh run against a DynamoDB
endpoint, SIGKILLed at the point named by ``FAULTS_KILL_AT`` (see ``child_main``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError

# -- call sites ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """One DynamoDB call site of a refresh run: its operation, and how to recognize its request body."""

    name: str
    operation: str
    matches: Callable[[dict[str, Any]], bool]
    # "before-commit" | "commit" | "release" | "after-commit": what a persistent failure may cost; "first-run"
    stage: str


def _table(body: dict[str, Any]) -> str:
    return body.get("TableName") or next(iter(body.get("RequestItems") or {}), "")


def _update(body: dict[str, Any]) -> str:
    return body.get("UpdateExpression", "")


def _batch(kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: any(kind in request for requests in body["RequestItems"].values() for request in requests)


def _transaction(kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: any(kind in action for action in body["TransactItems"])


SITES: dict[str, Site] = {
    site.name: site
    for site in (
        Site("lock.acquire", "UpdateItem", lambda b: "ADD #token" in _update(b), "before-commit"),
        Site("manifest.read", "GetItem", lambda b: b["Key"].get("pk") == {"S": "MANIFEST"}, "before-commit"),
        # Only the very first run of a catalog creates its (empty) manifest.
        Site("manifest.create", "PutItem", lambda b: b["Item"].get("pk") == {"S": "MANIFEST"}, "first-run"),
        # Stored chunks read by key: the ones a changed provider's diff needs, and the run's sample check.
        Site("chunks.read", "BatchGetItem", lambda b: _table(b).endswith("-catalog"), "before-commit"),
        Site("chunks.write", "BatchWriteItem", _batch("PutRequest"), "before-commit"),
        # Where the journal of the epoch ends (a disagreement with the manifest starts a new epoch).
        Site("journal.latest", "Query", lambda b: _table(b).endswith("-events") and b.get("Limit") == 1,
             "before-commit"),
        Site("commit", "TransactWriteItems", _transaction("Put"), "commit"),
        # Listing a provider's chunk keys: after a run that did not finish (its leftovers), a list of version 1/2.
        Site("gc.query", "Query", lambda b: _table(b).endswith("-catalog") and "ProjectionExpression" in b, "after-commit"),
        # Garbage collection deletes in transactions fenced by the lock (a ConditionCheck and the Deletes).
        Site("gc.delete", "TransactWriteItems", _transaction("Delete"), "after-commit"),
        Site("lock.release", "UpdateItem", lambda b: "REMOVE #owner" in _update(b), "release"),
        Site("journal.claim", "UpdateItem", lambda b: "#claimed = :until" in _update(b), "after-commit"),
        Site("connections.scan", "Scan", lambda b: _table(b).endswith("-connections"), "after-commit"),
        Site("journal.mark", "UpdateItem", lambda b: "#published = :true" in _update(b), "after-commit"),
        Site("journal.trim.query", "Query", lambda b: _table(b).endswith("-events") and "#expires" in str(b), "after-commit"),
        Site("journal.trim.update", "UpdateItem", lambda b: "#expires = :expires" in _update(b), "after-commit"),
    )
}


def site_of(operation: str, body: dict[str, Any]) -> str | None:
    for site in SITES.values():
        if site.operation == operation and site.matches(body):
            return site.name
    return None


_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable"})


# -- synthetic DynamoDB errors ---------------------------------------------------------------------------

_PREFIX = "com.amazonaws.dynamodb.v20120810#"


class _Raw:
    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self._data


def dynamo_response(url: str, status: int, body: dict[str, Any]) -> AWSResponse:
    """An HTTP response as DynamoDB sends it (JSON 1.0 protocol), for botocore to parse and classify."""
    data = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "x-amzn-RequestId": "FAULT0000000000000000000000000000000000000000000000",
        "Content-Length": str(len(data)),
    }
    return AWSResponse(url, status, headers, _Raw(data))


def _error(url: str, status: int, code: str, message: str, **extra: Any) -> AWSResponse:
    return dynamo_response(url, status, {"__type": _PREFIX + code, "message": message, **extra})


# What each fault kind answers. ``conflict`` is what DynamoDB answers when the item is in another transaction
# (a transaction is cancelled with a TransactionConflict reason; a single-item write gets the exception).
KINDS = ("throughput", "throttling", "internal", "unavailable", "reset", "conflict", "unprocessed")


def fault_response(kind: str, operation: str, body: dict[str, Any], url: str) -> AWSResponse:
    if kind == "throughput":
        return _error(url, 400, "ProvisionedThroughputExceededException",
                      "The level of configured provisioned throughput for the table was exceeded.")
    if kind == "throttling":
        return _error(url, 400, "ThrottlingException", "Throughput exceeds the current capacity of your table.")
    if kind == "internal":
        return _error(url, 500, "InternalServerError", "Internal server error")
    if kind == "unavailable":
        return _error(url, 503, "ServiceUnavailable", "Service unavailable")
    if kind == "conflict":
        if operation == "TransactWriteItems":
            reasons = [{"Code": "None"} for _ in body["TransactItems"]]
            reasons[0] = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
            return _error(url, 400, "TransactionCanceledException",
                          "Transaction cancelled, please refer cancellation reasons for specific reasons "
                          f"[{', '.join(r['Code'] for r in reasons)}]", CancellationReasons=reasons)
        return _error(url, 400, "TransactionConflictException",
                      "Transaction is ongoing for the item")
    if kind == "unprocessed":  # DynamoDB throttled every item of the batch: 200 with all of them handed back
        if operation == "BatchWriteItem":
            return dynamo_response(url, 200, {"UnprocessedItems": body["RequestItems"]})
        if operation == "BatchGetItem":
            return dynamo_response(url, 200, {"Responses": {}, "UnprocessedKeys": body["RequestItems"]})
        raise ValueError("'unprocessed' only applies to BatchWriteItem and BatchGetItem")
    raise ValueError(f"unknown fault kind {kind!r}")


# -- the injector ----------------------------------------------------------------------------------------


@dataclass
class _Plan:
    kind: str
    remaining: int | None  # None: every time
    applied: bool  # let the request reach the server first, then answer the error (the response was lost)


class DynamoFaults:
    """Fault injection on one boto3 DynamoDB client; see the module docstring.

    ``applied=True`` forwards the request to the server and *then* answers the error: the write happened but
    the caller cannot know (a lost response). DynamoDB makes ``TransactWriteItems`` idempotent by its
    ``ClientRequestToken`` (botocore fills one in and reuses it on retries); moto does not implement that, so
    the injector does, for requests it forwarded: a retry with a token it saw succeed answers 200 again.

    ``after_write`` (optional) runs before the next request this client sends after a write (including a failed
    or retried one), and is what a reader check hooks: the database only changes through writes, so it sees every
    state the run passes through between two of its requests (the caller checks the final state itself).
    """

    def __init__(self, client: Any, after_write: Callable[[], None] | None = None):
        self.calls: dict[str, int] = {}
        self.injected: dict[str, int] = {}
        self.log: list[tuple[str, str | None]] = []  # (operation, site) of every request sent
        self.tokens: dict[str, list[str]] = {}  # TransactWriteItems ClientRequestToken per attempt
        self.after_write = after_write
        self._wrote = False
        self._plans: dict[str, _Plan] = {}
        self._applied_tokens: set[str] = set()
        self._lock = threading.Lock()
        self._serial = threading.RLock()
        self._http: Any = None
        # botocore calls *every* before-send handler and uses the first response, so moto's in-process stubber
        # would still apply a request we answer with an error. It is taken off this client and called from here.
        self._moto = _active_moto_stubber()
        if self._moto is not None:
            client.meta.events.unregister("before-send", self._moto)
        client.meta.events.register_first("before-send.dynamodb", self._before_send)

    def arm(self, site: str, kind: str, times: int | None = 1, applied: bool = False) -> None:
        if site not in SITES:
            raise ValueError(f"unknown site {site!r}")
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        with self._lock:
            self._plans[site] = _Plan(kind, times, applied)

    def disarm(self, site: str | None = None) -> None:
        with self._lock:
            if site is None:
                self._plans.clear()
            else:
                self._plans.pop(site, None)

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        # One request at a time through this client (the engine sends from several threads): each request is
        # atomic towards the reader check, as in DynamoDB, and in-process moto is not safe for concurrent use.
        with self._serial:
            return self._handle(request)

    def _handle(self, request: Any) -> AWSResponse | None:
        operation = request.headers.get("X-Amz-Target", b"")
        operation = (operation.decode() if isinstance(operation, bytes) else operation).rpartition(".")[2]
        body = json.loads(request.body or b"{}")
        site = site_of(operation, body)
        if self.after_write is not None and self._wrote:
            self.after_write()
        self._wrote = operation not in _READS
        token = body.get("ClientRequestToken") if operation == "TransactWriteItems" else None
        with self._lock:
            self.log.append((operation, site))
            if site is not None:
                self.calls[site] = self.calls.get(site, 0) + 1
            if token:
                self.tokens.setdefault(site or operation, []).append(token)
                if token in self._applied_tokens:  # DynamoDB's idempotent retry of an applied transaction
                    return dynamo_response(request.url, 200, {})
            plan = self._plans.get(site) if site else None
            if plan is None or plan.remaining == 0:
                plan = None
            elif plan.remaining is not None:
                plan.remaining -= 1
            if plan is not None:
                self.injected[site] = self.injected.get(site, 0) + 1
        if plan is None:
            return self._moto(event_name="before-send.dynamodb", request=request) if self._moto else None
        if plan.applied:
            status = self._forward(request)
            if token and 200 <= status < 300:
                with self._lock:
                    self._applied_tokens.add(token)
        if plan.kind == "reset":
            raise ConnectionClosedError(endpoint_url=request.url)
        return fault_response(plan.kind, operation, body, request.url)

    def _forward(self, request: Any) -> int:
        """Send ``request`` to the real server (moto in-process, or over HTTP) and return its status."""
        if self._moto is not None:
            return self._moto(event_name="before-send.dynamodb", request=request).status_code
        if self._http is None:
            from botocore.httpsession import URLLib3Session

            self._http = URLLib3Session()
        return self._http.send(request).status_code


def _active_moto_stubber() -> Any:
    """moto's in-process stubber when a ``mock_aws`` is active, else None (a real endpoint)."""
    try:
        from moto.core.models import botocore_stubber
    except ImportError:  # pragma: no cover - moto is a dev dependency
        return None
    return botocore_stubber if botocore_stubber.enabled else None


# -- the reader --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogState:
    """A complete catalog a reader may see: the manifest revision and every provider's models."""

    revision: int
    models: dict[str, list[dict[str, Any]]]


class CatalogChecker:
    """Reads the catalog like the API does and records every snapshot that is not an allowed state.

    Allowed: exactly one of ``states`` (same revision, same providers, same model lists), and never an older
    state after a newer one was seen. The outbox is checked too: the newest journaled event is the manifest's
    ``seq`` (read journal → manifest → journal, so a commit between the reads is tolerated).
    """

    def __init__(self, store: Any, journal: Any, states: list[CatalogState], concurrent: bool = True):
        self._concurrent = concurrent  # False: nothing writes while a check runs, so one journal read is exact
        self._store = store
        self._journal = journal
        self._states = states
        self.snapshots = 0
        self.seen: list[int] = []  # revision of every snapshot, in order
        self.violations: list[str] = []
        self._newest = -1
        self._guard = threading.Lock()

    def check(self) -> None:
        try:
            journal_before = 0
            if self._concurrent:
                journal_before = self._journal.latest_seq(self._store.read_manifest().epoch) or 0
            manifest, models = self._store.read_catalog()
            journal_after = self._journal.latest_seq(manifest.epoch) or 0
            if not self._concurrent:
                journal_before = journal_after
        except Exception as error:  # a reader that gets an error saw a broken catalog too
            self._record(f"read failed: {type(error).__name__}: {error}")
            return
        with self._guard:
            self.snapshots += 1
            self.seen.append(manifest.revision)
        if not journal_before <= manifest.seq <= journal_after:
            self._record(f"manifest seq {manifest.seq} outside the journal's [{journal_before}, {journal_after}]")
        match = next((i for i, state in enumerate(self._states) if state.revision == manifest.revision), None)
        if match is None:
            self._record(f"revision {manifest.revision} is none of {[s.revision for s in self._states]}")
            return
        expected = self._states[match].models
        if models != expected:
            self._record(f"revision {manifest.revision}: {_describe_mismatch(expected, models)}")
        with self._guard:
            if match < self._newest:
                self.violations.append(f"went back from state {self._newest} to state {match}")
            self._newest = max(self._newest, match)

    def _record(self, violation: str) -> None:
        with self._guard:
            self.violations.append(violation)


def _describe_mismatch(expected: dict[str, list[dict[str, Any]]], actual: dict[str, list[dict[str, Any]]]) -> str:
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differ = sorted(p for p in set(expected) & set(actual) if expected[p] != actual[p])
    return f"missing providers {missing}, unexpected {extra}, different model lists {differ}"


class ReaderThread(threading.Thread):
    """Runs ``checker.check()`` in a loop until stopped (a client reading while a writer works or dies)."""

    def __init__(self, checker: CatalogChecker, pause_s: float = 0.0):
        super().__init__(name="catalog-reader", daemon=True)
        self.checker = checker
        self._pause = pause_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.checker.check()
            if self._pause:
                self._stop_event.wait(self._pause)

    def stop(self, at_least: int = 0, within_s: float = 10.0) -> None:
        """Stop, once the checker has taken ``at_least`` snapshots (waiting at most ``within_s``: on a loaded machine
        the reader may have had fewer turns than the run's length suggests)."""
        deadline = time.monotonic() + within_s
        while self.checker.snapshots < at_least and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.01)
        self._stop_event.set()
        self.join(30)


# -- the kill child ----------------------------------------------------------------------------------------


def install_kill_hook(client: Any, kill_at: str) -> None:
    """SIGKILL this process at ``kill_at``: ``before:<Operation>[:n[:text]]`` (right before the n-th call of it
    whose parameters mention ``text`` is sent) or ``after:<Operation>[:n]`` (right after its n-th successful
    response); n defaults to 1. The engine writes several providers' chunks in parallel: ``text`` (e.g.
    ``MODELS#alpha``) picks one provider's calls."""
    when, operation, *rest = kill_at.split(":", 3)
    nth = int(rest[0]) if rest else 1
    text = rest[1] if len(rest) > 1 else ""
    seen = [0]
    guard = threading.Lock()

    def kill(params: Any = None, **_: Any) -> None:
        if text and text not in json.dumps(params, default=str):
            return
        with guard:
            seen[0] += 1
            if seen[0] != nth:
                return
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    event = {"before": "before-call", "after": "after-call"}[when]
    if text and when != "before":
        raise ValueError("a parameter filter needs before:")
    client.meta.events.register(f"{event}.dynamodb.{operation}", kill)


class JsonFileFetcher:
    """The child's provider fake: ``{provider_id: [model ids]}`` from a JSON file, each model with a long name
    so that a few hundred models span many chunks."""

    def __init__(self, path: str):
        with open(path) as handle:
            self._catalog = json.load(handle)

    def __call__(self) -> JsonFileFetcher:
        return self

    def fetch(self, provider: Any, deadline: float) -> list[Any]:
        from chalicelib.core.domain import Model, model_record

        return [
            model_record(Model(provider_id=provider.id, id=model_id, display_name=f"{model_id} " + "x" * 60,
                               context_length=8192))
            for model_id in sorted(self._catalog.get(provider.id, []))
        ]

    def close(self) -> None:
        pass


def build_engine(settings: Any, client: Any, fetcher: Any, *, store: Any = None, clock: Any = None,
                 publisher: Any = None, commit_sleep: Any = None) -> Any:
    """A ``RefreshEngine`` wired as ``bootstrap`` wires it, with the parts a fault test swaps."""
    import time

    from chalicelib.refresh import RefreshEngine
    from chalicelib.storage.catalog import CatalogStore
    from chalicelib.storage.commit import CatalogCommit
    from chalicelib.storage.journal import EventJournal
    from chalicelib.storage.lock import LeaseLock

    clock = clock or time.time
    store = store or CatalogStore(client, settings.tables.catalog)
    lock = LeaseLock(client, settings.tables.locks, clock=clock)
    commit = CatalogCommit(client, lock, store, EventJournal(client, settings.tables.events, clock=clock),
                           sleep=commit_sleep or time.sleep)
    return RefreshEngine(config=settings.config, deployment_id=settings.deployment_id, catalog=store, lock=lock,
                         commit=commit, fetcher_factory=fetcher, publisher=publisher, clock=clock)


def child_main() -> int:
    """One refresh run in this process. Environment: the usual MODEL_CATALOG_* (config, tables, endpoint),
    FAULTS_MODELS_FILE (JsonFileFetcher), FAULTS_CHUNK_BYTES, FAULTS_LEASE_MARGIN_MS, FAULTS_KILL_AT."""
    from chalicelib import refresh
    from chalicelib.bootstrap import AwsClients
    from chalicelib.settings import get_settings
    from chalicelib.storage.catalog import CatalogStore

    settings = get_settings()
    refresh.LEASE_MARGIN_MS = int(os.environ.get("FAULTS_LEASE_MARGIN_MS", refresh.LEASE_MARGIN_MS))
    assert settings.dynamodb_endpoint, "MODEL_CATALOG_DYNAMODB_ENDPOINT must point at the embedded DynamoDB"
    client = AwsClients(settings).client("dynamodb")  # the service's own client: endpoint and retry config
    if os.environ.get("FAULTS_KILL_AT"):
        install_kill_hook(client, os.environ["FAULTS_KILL_AT"])
    store = CatalogStore(client, settings.tables.catalog, chunk_bytes=int(os.environ.get("FAULTS_CHUNK_BYTES", "300000")))
    engine = build_engine(settings, client, JsonFileFetcher(os.environ["FAULTS_MODELS_FILE"]), store=store)
    print("FAULTS_CHILD_STARTED", flush=True)
    result = engine.run("all", wait_ms=0)
    assert result is not None
    print("FAULTS_CHILD_RESULT " + json.dumps(result.model_dump(mode="json")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
