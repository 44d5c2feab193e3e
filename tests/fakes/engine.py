"""Fakes around the refresh engine: a fetcher serving what a test sets, a publisher that records, a counter of
catalog-table writes."""

from __future__ import annotations

import threading
import time
from typing import Any

from chalicelib.core.domain import Model, model_record

WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


class FakeFetcher:
    """Serves whatever the test put in ``catalog[provider_id]`` (a list of Models or a ProviderError), normalized
    like the real fetcher: records, sorted by id."""

    def __init__(self) -> None:
        self.catalog: dict[str, Any] = {}
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls: list[str] = []
        self.threads: list[threading.Thread] = []  # the thread of each fetch, in call order
        self._lock = threading.Lock()

    def set(self, provider_id: str, *ids: str, context: int | None = None) -> None:
        self.catalog[provider_id] = [Model(provider_id=provider_id, id=i, context_length=context) for i in ids]

    def __call__(self) -> FakeFetcher:
        return self

    def fetch(self, provider, deadline: float):
        with self._lock:
            self.calls.append(provider.id)
            self.threads.append(threading.current_thread())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            value = self.catalog.get(provider.id, [])
            if isinstance(value, Exception):
                raise value
            return [model_record(m) for m in sorted(value, key=lambda m: m.id)]
        finally:
            with self._lock:
                self.in_flight -= 1

    def close(self) -> None:
        pass


class RecordingPublisher:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    def publish(self, message: dict, max_connections: int | None = None) -> None:
        self.messages.append(message)


class CatalogWrites:
    """Counts write calls that touch the catalog table (botocore event hook)."""

    def __init__(self, client: Any, table: str):
        self.count = 0
        self._table = table
        # before-parameter-build: ``params`` are the call's own (before-call would hand over the HTTP request dict,
        # which has no TableName: nothing would ever be counted)
        client.meta.events.register("before-parameter-build.dynamodb.*", self._count)

    def _count(self, model, params, **_: Any) -> None:
        if model.name not in WRITE_OPS:
            return
        tables = {params.get("TableName")} | set(params.get("RequestItems", {}))
        for action in params.get("TransactItems", []):
            tables |= {body.get("TableName") for body in action.values()}
        if self._table in tables:
            self.count += 1
