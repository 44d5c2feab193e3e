"""Stop signals for the local stack's processes, handled the only safe way: the handler records, a pipe wakes.

A Python signal handler runs in the main thread between two bytecodes — possibly while that thread holds a
lock (inside ``threading.Event.wait``, ``Popen.wait``, a logging handler…). A handler that takes a lock can
deadlock on the very lock it interrupted, so these handlers only append to a list. ``signal.set_wakeup_fd``
makes the interpreter write a byte into a pipe when a signal arrives; the main thread waits on that pipe with
``select``. Other threads wake it the same way (``wake``), never through a shared lock.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterable
from typing import Any


class StopSignals:
    """Records SIGTERM / SIGINT (or others) as ``(signal number, monotonic time)`` in ``received``."""

    def __init__(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)):
        self._signals = tuple(signals)
        self._read, self._write = os.pipe()
        for descriptor in (self._read, self._write):
            os.set_blocking(descriptor, False)
        self.received: list[tuple[int, float]] = []

    def install(self) -> StopSignals:
        """Call from the main thread, before anything may block it."""
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for number in self._signals:
            signal.signal(number, self._record)
        return self

    def _record(self, number: int, _frame: Any) -> None:
        self.received.append((number, time.monotonic()))  # nothing else: see the module docstring

    def wake(self) -> None:
        """Wake ``wait`` from another thread (e.g. "the parent is gone")."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write, b"\0")

    def wait(self, timeout_s: float) -> None:
        """Return when a signal arrived, ``wake`` was called, or ``timeout_s`` passed."""
        ready, _, _ = select.select([self._read], [], [], timeout_s)
        if ready:
            with contextlib.suppress(BlockingIOError, OSError):
                while os.read(self._read, 512):
                    pass

    def count(self, number: int) -> int:
        return sum(1 for received, _ in self.received if received == number)


def signal_name(number: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(number).name
    return str(number)
