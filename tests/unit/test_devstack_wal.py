"""The embedded DynamoDB's write-ahead log (devstack/wal.py): records on disk before ``append`` returns, read back
in order, a torn last record dropped, damage and gaps reported; and the stack's forced-exit rule."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from devstack import wal as wal_module
from devstack.stack import forced_exit_due
from devstack.statefiles import private_directory
from devstack.wal import LogReader, WalError, WriteAheadLog, segment_path, segments, set_aside


def write_records(state: Path, bodies: list[bytes], first: int = 1) -> WriteAheadLog:
    log = WriteAheadLog(state, first)
    for body in bodies:
        log.append("PutItem", "us-east-1", body)
    return log


def read_all(state: Path, first: int = 1) -> tuple[list[tuple[int, bytes]], LogReader]:
    reader = LogReader(state, first)
    return [(record.number, record.body) for record in reader], reader


def test_records_come_back_in_order_across_segments_and_restarts(tmp_path: Path) -> None:
    log = write_records(tmp_path, [b'{"a":1}', b'{"b":"\\n two lines"}'])
    assert log.rotate() == 3
    log.append("DeleteItem", "eu-west-1", b"{}")
    log.close()
    log = WriteAheadLog(tmp_path, 4)  # a restart continues the numbering
    log.append("UpdateItem", "us-east-1", b'{"c":3}')
    log.close()
    records, reader = read_all(tmp_path)
    assert records == [(1, b'{"a":1}'), (2, b'{"b":"\\n two lines"}'), (3, b"{}"), (4, b'{"c":3}')]
    assert reader.problem is None and reader.torn_tail is None and reader.next_number == 5
    assert [first for first, _ in segments(tmp_path)] == [1, 3, 4]
    # After a snapshot holding records 1–3 (wal_next = 4) only record 4 is replayed.
    assert read_all(tmp_path, first=4)[0] == [(4, b'{"c":3}')]


def test_every_append_is_on_disk_before_it_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(wal_module.os, "fdatasync", lambda fd: (synced.append(fd), real(fd)))
    log = WriteAheadLog(tmp_path, 1)
    for count in range(1, 4):
        log.append("PutItem", "us-east-1", b"{}")
        assert len(synced) == count  # one fdatasync per record, before append returned
    log.close()


def test_a_failed_write_is_reported_and_not_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = WriteAheadLog(tmp_path, 1)

    def disk_full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wal_module.os, "fdatasync", disk_full)
    with pytest.raises(WalError, match="No space left"):
        log.append("PutItem", "us-east-1", b"{}")
    assert log.next_number == 1


@pytest.mark.parametrize("cut", [1, 10, -2, -1])
def test_a_torn_last_record_is_dropped(tmp_path: Path, cut: int) -> None:
    write_records(tmp_path, [b'{"kept":1}', b'{"torn":2}']).close()
    path = segment_path(tmp_path, 1)
    data = path.read_bytes()
    second = data.index(b"MCWAL1", 1)
    path.write_bytes(data[: second + cut] if cut > 0 else data[:cut])
    records, reader = read_all(tmp_path)
    assert records == [(1, b'{"kept":1}')]
    assert reader.problem is None and reader.torn_tail
    # The next record takes the torn one's number; a segment already bearing that name is truncated.
    WriteAheadLog(tmp_path, reader.next_number).close()


def test_damage_before_the_end_is_a_problem_not_a_torn_tail(tmp_path: Path) -> None:
    write_records(tmp_path, [b'{"n":1}', b'{"n":2}', b'{"n":3}']).close()
    path = segment_path(tmp_path, 1)
    data = bytearray(path.read_bytes())
    data[data.index(b'{"n":2}') + 3] ^= 0xFF  # a flipped bit in record 2's body
    path.write_bytes(bytes(data))
    records, reader = read_all(tmp_path)
    assert records == [(1, b'{"n":1}')]
    assert reader.problem and "damaged" in reader.problem


def test_a_missing_segment_is_a_problem(tmp_path: Path) -> None:
    log = write_records(tmp_path, [b"{}", b"{}"])
    log.rotate()
    log.append("PutItem", "us-east-1", b"{}")
    log.close()
    records, reader = read_all(tmp_path)
    assert [number for number, _ in records] == [1, 2, 3]
    segment_path(tmp_path, 1).unlink()
    records, reader = read_all(tmp_path)
    assert records == [] and reader.problem == "records 1–2 of the write-ahead log are missing"
    # A snapshot that says records 1–2 are in it needs only segment 3.
    records, reader = read_all(tmp_path, first=3)
    assert [number for number, _ in records] == [3] and reader.problem is None


def test_discarded_and_set_aside_segments_are_never_replayed(tmp_path: Path) -> None:
    log = write_records(tmp_path, [b"{}", b"{}"])
    wal_next = log.rotate()
    log.append("PutItem", "us-east-1", b"{}")
    assert log.discard_before(wal_next) == 1
    assert [first for first, _ in segments(tmp_path)] == [3]
    log.close()
    moved = set_aside([segment_path(tmp_path, 3)])
    assert moved[0].name.endswith(".damaged") and moved[0].exists()
    assert segments(tmp_path) == []


def test_state_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    loose = state / "dynamodb.json"
    loose.write_text("{}")
    foreign = state / "notes.txt"  # MODEL_CATALOG_STATE_DIR may point at a directory with other files
    foreign.write_text("not the stack's")
    for path in (loose, foreign):
        os.chmod(path, 0o644)
    private_directory(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    assert stat.S_IMODE(foreign.stat().st_mode) == 0o644
    WriteAheadLog(state, 1).close()
    assert stat.S_IMODE(segment_path(state, 1).stat().st_mode) == 0o600


T0 = 100.0


@pytest.mark.parametrize(
    ("received", "forced"),
    [
        ([(signal.SIGTERM, T0)], False),
        ([(signal.SIGTERM, T0), (signal.SIGTERM, T0 + 0.01)], False),  # make forwards the group's SIGTERM
        ([(signal.SIGTERM, T0)] + [(signal.SIGTERM, T0 + n) for n in range(1, 6)], False),  # SIGTERM never forces
        ([(signal.SIGINT, T0), (signal.SIGINT, T0 + 0.3)], False),  # a quick double Ctrl-C
        ([(signal.SIGINT, T0), (signal.SIGINT, T0 + 0.3), (signal.SIGINT, T0 + 0.5)], True),  # a third one
        ([(signal.SIGINT, T0), (signal.SIGINT, T0 + 2.5)], True),  # a deliberate second one, later
        ([(signal.SIGTERM, T0), (signal.SIGTERM, T0), (signal.SIGINT, T0 + 3)], True),
    ],
)
def test_only_a_deliberate_repeated_ctrl_c_forces_the_exit(received: list, forced: bool) -> None:
    assert forced_exit_due(received) is forced
