"""Files of the local stack's state directory: private, and replaced or appended durably.

The state directory holds the embedded DynamoDB's snapshot and write-ahead log (every table, OAuth tokens
included), the local OAuth key and the stack's markers, so it is 0700 and its files are 0600 — also when an
older version of the stack created them with looser modes (``private_directory`` tightens them). Only the
stack's own files are touched: ``MODEL_CATALOG_STATE_DIR`` may point at a directory that holds other files.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
# The files the local stack keeps in its state directory.
STATE_FILES = (
    "dynamodb.json", ".dynamodb.json.*.tmp", "dynamodb.clean", ".dynamodb.clean.*.tmp", "dynamodb-wal-*",
    "oauth.key", ".oauth.key*", ".model-catalog-state", ".lock", ".dynamodb.lock",
)


def private_directory(path: Path) -> Path:
    """Create ``path`` (0700) if needed, make it 0700, and make the stack's files in it 0600."""
    path.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
    os.chmod(path, DIRECTORY_MODE)
    for entry in path.iterdir():
        if not any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in STATE_FILES):
            continue
        with contextlib.suppress(FileNotFoundError):
            info = entry.lstat()
            if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) & ~FILE_MODE:
                os.chmod(entry, stat.S_IMODE(info.st_mode) & FILE_MODE)
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` that creates the file 0600 whatever the umask (and tightens an existing one)."""
    descriptor = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(descriptor, FILE_MODE)
    return descriptor


def fsync_directory(path: Path) -> None:
    """Make a rename, creation or deletion in ``path`` durable (not possible on every platform)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_atomically(path: Path, write: Callable[[TextIO], None]) -> None:
    """Replace ``path`` with what ``write`` writes: temp file (0600) + fsync + rename + directory fsync.

    A crash at any point leaves the old file or the new one, never a mix.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = open_private(temporary, os.O_WRONLY | os.O_TRUNC)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    os.replace(temporary, path)
    fsync_directory(path.parent)


def remove_durably(path: Path) -> bool:
    """Delete ``path`` and make the deletion durable; False when it did not exist."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_directory(path.parent)
    return True


def write_all(descriptor: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a regular file may take a large buffer in parts)."""
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]
