"""The embedded DynamoDB's write-ahead log: every successful write request, on disk before it is answered.

The log is a series of segment files in the state directory, ``dynamodb-wal-<first record number>.log``. Each
record is one DynamoDB write request exactly as a client sent it::

    MCWAL1 <number> <operation> <region> <body length> <crc32 of the body, hex>\\n<body>\\n

Records are numbered 1, 2, … without a gap, across segments and restarts. A snapshot is taken with the request
lock held, at a segment boundary (``rotate``): it says which record number comes next (``wal_next``), so the
state is "the snapshot, then the records from ``wal_next`` on", and the segments before it can be deleted
(``discard_before``) once the snapshot is on disk.

Replaying the same requests in the same order against the same snapshot gives the same tables, because the
server answers one request at a time and a write request carries every value it writes (condition
expressions compare with values the client sent; nothing depends on the server's clock).

A crash can tear only the record being written, whose request was never answered (its fsync had not
returned): ``LogReader`` drops such a tail. A damaged or missing record anywhere else means acknowledged writes
may be lost; the reader stops there and says so (``problem``), and the stack starts a new event epoch.
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devstack.statefiles import fsync_directory, open_private, write_all

SEGMENT_PREFIX = "dynamodb-wal-"
SEGMENT_SUFFIX = ".log"
DAMAGED_SUFFIX = ".damaged"
_SEGMENT_NAME = re.compile(re.escape(SEGMENT_PREFIX) + r"(\d{12})" + re.escape(SEGMENT_SUFFIX))
_MAGIC = b"MCWAL1"
_MAX_HEADER = 256


class WalError(RuntimeError):
    """The write-ahead log cannot be written (the write it was for must not be acknowledged)."""


@dataclass(frozen=True)
class WalRecord:
    number: int
    operation: str
    region: str
    body: bytes


def segment_path(state_dir: Path, first: int) -> Path:
    return state_dir / f"{SEGMENT_PREFIX}{first:012d}{SEGMENT_SUFFIX}"


def segments(state_dir: Path) -> list[tuple[int, Path]]:
    """The segments in ``state_dir``, by first record number."""
    found = []
    for path in state_dir.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"):
        match = _SEGMENT_NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def encode(record: WalRecord) -> bytes:
    header = (
        f"{record.number} {record.operation} {record.region} {len(record.body)} {zlib.crc32(record.body):08x}\n"
    )
    return _MAGIC + b" " + header.encode("ascii") + record.body + b"\n"


class _Torn(Exception):
    """The bytes at the end of a segment are not a whole record."""


def _decode_at(data: bytes, offset: int) -> tuple[WalRecord, int]:
    """The record starting at ``offset`` and the offset after it; ``_Torn`` if it is not a whole, valid record."""
    end_of_header = data.find(b"\n", offset, offset + _MAX_HEADER)
    if end_of_header < 0:
        raise _Torn("no complete header")
    fields = data[offset:end_of_header].split(b" ")
    if len(fields) != 6 or fields[0] != _MAGIC:
        raise _Torn("not a record header")
    try:
        number, length, checksum = int(fields[1]), int(fields[4]), int(fields[5], 16)
        operation, region = fields[2].decode("ascii"), fields[3].decode("ascii")
    except ValueError:
        raise _Torn("a malformed record header") from None
    start = end_of_header + 1
    end = start + length
    if end + 1 > len(data) or data[end : end + 1] != b"\n":
        raise _Torn("the body is incomplete")
    body = data[start:end]
    if zlib.crc32(body) != checksum:
        raise _Torn("the body does not match its checksum")
    return WalRecord(number, operation, region, body), end + 1


class LogReader:
    """The records to replay after a snapshot whose ``wal_next`` is ``first``: iterate, then read ``problem``.

    Records before ``first`` are in the snapshot and skipped. Iteration stops at the first record that is
    missing or damaged anywhere but at the very end of the log; ``problem`` then says what (the caller
    snapshots what was replayed and moves every segment aside: the rest must never be replayed on top of a
    state it does not follow). ``next_number`` is the number the next record gets; ``found`` lists the
    segments that exist.
    """

    def __init__(self, state_dir: Path, first: int):
        self._state_dir = state_dir
        self._first = first
        self.problem: str | None = None
        self.found: list[Path] = []
        self.torn_tail: str | None = None
        self.next_number = first

    def __iter__(self) -> Iterator[WalRecord]:
        found = segments(self._state_dir)
        self.found = [path for _, path in found]
        # Segments that end before ``first`` are wholly in the snapshot (the next one starts at or before it).
        relevant = [(start, path) for index, (start, path) in enumerate(found)
                    if index + 1 == len(found) or found[index + 1][0] > self._first]
        for index, (start, path) in enumerate(relevant):
            last_segment = index == len(relevant) - 1
            if start > self.next_number:
                self.problem = f"records {self.next_number}–{start - 1} of the write-ahead log are missing"
                return
            data = path.read_bytes()
            offset = 0
            while offset < len(data):
                try:
                    record, after = _decode_at(data, offset)
                except _Torn as torn:
                    if last_segment and self._only_garbage_follows(data, offset):
                        self.torn_tail = f"{path.name} at byte {offset}: {torn}"
                        break
                    self.problem = f"{path.name} is damaged at byte {offset} ({torn})"
                    return
                if record.number > self.next_number:
                    self.problem = f"record {self.next_number} of the write-ahead log is missing"
                    return
                if record.number == self.next_number:
                    self.next_number += 1
                    yield record
                offset = after

    @staticmethod
    def _only_garbage_follows(data: bytes, offset: int) -> bool:
        """True when no whole record starts after ``offset`` (so the damage is the torn last write)."""
        position = data.find(_MAGIC, offset + 1)
        while position >= 0:
            try:
                _decode_at(data, position)
                return False
            except _Torn:
                position = data.find(_MAGIC, position + 1)
        return True


class WriteAheadLog:
    """Appends records to the current segment, each made durable (``fdatasync``) before ``append`` returns."""

    def __init__(self, state_dir: Path, next_number: int):
        self._state_dir = state_dir
        self._mutex = threading.Lock()  # appends are serialized by the request lock, except in negative controls
        self.next_number = next_number
        self.segment_first = next_number
        self.bytes_since_rotation = 0
        # A segment already named ``next_number`` can only hold a torn record (never acknowledged): truncated.
        self._descriptor = self._create(next_number)

    def _create(self, first: int) -> int:
        descriptor = open_private(segment_path(self._state_dir, first), os.O_WRONLY | os.O_APPEND | os.O_TRUNC)
        fsync_directory(self._state_dir)
        return descriptor

    def append(self, operation: str, region: str, body: bytes) -> int:
        """Write one record and wait until it is on disk; returns its number. ``WalError`` if it is not."""
        with self._mutex:
            number = self.next_number
            data = encode(WalRecord(number, operation, region, body))
            try:
                write_all(self._descriptor, data)
                os.fdatasync(self._descriptor)
            except OSError as exc:
                raise WalError(f"cannot write the write-ahead log: {exc.strerror or exc}") from exc
            self.next_number += 1
            self.bytes_since_rotation += len(data)
            return number

    def rotate(self) -> int:
        """Start a new segment (callers hold the request lock: a snapshot is taken here); returns ``wal_next``."""
        with self._mutex:
            if self.bytes_since_rotation:
                os.close(self._descriptor)
                self._descriptor = self._create(self.next_number)
                self.segment_first = self.next_number
                self.bytes_since_rotation = 0
            return self.next_number

    def discard_before(self, number: int) -> int:
        """Delete the segments whose records all come before ``number`` (a snapshot on disk holds them)."""
        removed = 0
        with self._mutex:
            for first, path in segments(self._state_dir):
                if first < number and first != self.segment_first:
                    path.unlink(missing_ok=True)
                    removed += 1
        if removed:
            fsync_directory(self._state_dir)
        return removed

    def close(self) -> None:
        with self._mutex:
            if self._descriptor >= 0:
                os.close(self._descriptor)
                self._descriptor = -1


def set_aside(paths: list[Path]) -> list[Path]:
    """Rename damaged segments so they are never replayed again (kept for inspection)."""
    moved = []
    for path in paths:
        target = path.with_name(path.name + DAMAGED_SUFFIX)
        os.replace(path, target)
        moved.append(target)
    if paths:
        fsync_directory(paths[0].parent)
    return moved
