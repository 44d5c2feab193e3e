"""The lease lock against the local stack's embedded (serialized) moto server, many threads at once.

Each test has a negative control: the same workload with the acquire condition removed must break
mutual exclusion — otherwise the positive test could not fail and would prove nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from chalicelib.settings import TableNames
from chalicelib.storage.lock import LeaseLock
from devstack.tables import create_tables
from tests.stack import EmbeddedDynamo, dynamodb_client

THREADS = 8
ROUNDS = 6


@pytest.fixture(scope="module")
def dynamo():
    with EmbeddedDynamo() as server:
        client = dynamodb_client(server.endpoint)
        create_tables(client, TableNames())
        yield server


def hammer(endpoint: str, conditional: bool, lock_name: str) -> dict[str, Any]:
    """THREADS workers each try to hold the lock ROUNDS times; returns the most holders seen at once."""
    stats = {"holding": 0, "max_holding": 0, "acquired": 0}
    guard = threading.Lock()
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        client = dynamodb_client(endpoint)
        lock = LeaseLock(client, TableNames().locks, name=lock_name, conditional=conditional)
        start.wait()
        try:
            for _ in range(ROUNDS):
                lease = lock.acquire(f"worker-{index}", lease_ms=30_000, wait_ms=20_000)
                with guard:
                    stats["holding"] += 1
                    stats["acquired"] += 1
                    stats["max_holding"] = max(stats["max_holding"], stats["holding"])
                time.sleep(0.01)  # the critical section
                with guard:
                    stats["holding"] -= 1
                lock.release(lease)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return stats


def test_at_most_one_holder_at_any_time(dynamo) -> None:
    stats = hammer(dynamo.endpoint, conditional=True, lock_name="test#mutex")
    assert stats["acquired"] == THREADS * ROUNDS
    assert stats["max_holding"] == 1


def test_negative_control_without_the_condition_many_hold_at_once(dynamo) -> None:
    stats = hammer(dynamo.endpoint, conditional=False, lock_name="test#no-condition")
    assert stats["max_holding"] > 1


def test_every_acquire_gets_a_new_fencing_token(dynamo) -> None:
    lock = LeaseLock(dynamodb_client(dynamo.endpoint), TableNames().locks, name="test#tokens")
    tokens = []
    for index in range(5):
        lease = lock.try_acquire(f"owner-{index}", lease_ms=10_000)
        tokens.append(lease.token)
        assert lock.try_acquire("intruder", lease_ms=10_000) is None
        assert lock.release(lease)
    assert tokens == sorted(set(tokens)) and len(tokens) == 5


def test_expired_lease_is_taken_over_and_the_old_holder_cannot_release(dynamo) -> None:
    now = [1_000.0]
    lock = LeaseLock(dynamodb_client(dynamo.endpoint), TableNames().locks, name="test#expiry", clock=lambda: now[0])
    old = lock.try_acquire("paused", lease_ms=1_000)
    assert lock.try_acquire("eager", lease_ms=1_000) is None
    now[0] += 2
    new = lock.try_acquire("eager", lease_ms=1_000)
    assert new is not None and new.token == old.token + 1
    assert lock.release(old) is False  # conditional on owner and token
    assert lock.read().owner == "eager"
    assert lock.release(new) is True
