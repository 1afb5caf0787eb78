"""The file sink beside other processes that write the same files and go wrong mid-write: one killed (SIGKILL,
the OOM killer) leaves a fragment of a line at the end of a file; one frozen (SIGSTOP, ``docker pause``) holds
the file's ``flock``. Neither may cost a record of a healthy process, nor keep one from exiting.

The other process is played by the test itself: it writes the fragment, or holds the lock, on a descriptor of
its own (``flock`` locks of two open files conflict even within one process).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from activity_audit.conf import build
from activity_audit.errors import PartialDelivery
from activity_audit.plugins import file_sink as file_sink_module
from activity_audit.plugins.file_sink import FileSink
from activity_audit.records import CHANNEL_AUDIT, Entry
from activity_audit.verify import verify_files
from tests.support.procs import finish, start_scenario

PROJECT = SimpleNamespace(BASE_DIR="/srv/shop", SETTINGS_MODULE="shop.settings")
HEALTHY = "2b1f3c9e-0000-4000-8000-00000000000a"
KILLED = "2b1f3c9e-0000-4000-8000-00000000000b"
# What a writer killed in the middle of its write leaves at the end of the file.
FRAGMENT = b'{"stream_id": "' + KILLED.encode() + b'", "seq": 7, "message": "half of a rec'


def line(stream: str, seq: int) -> bytes:
    return json.dumps({"stream_id": stream, "seq": seq, "message": f"record {seq}"}).encode()


def batch(*seqs: int) -> list[Entry]:
    return [Entry(CHANNEL_AUDIT, {}, line(HEALTHY, seq)) for seq in seqs]


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[FileSink]:
    opened = FileSink()
    opened.configure(build({"LOG_DIR": str(tmp_path)}, PROJECT))
    yield opened
    opened.close()


def append_raw(path: Path, data: bytes) -> None:
    """Append as another process does, under the file's lock."""
    with open(path, "ab") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        other.write(data)


def healthy_stream_summary(path: Path) -> tuple[int, int, list[tuple[int, int]], int]:
    report = verify_files([str(path)])
    stream = report.streams[HEALTHY]
    return stream.count, stream.max_seq, stream.missing_ranges, report.bad_lines


# --- a fragment left by a writer killed mid-write ---------------------------------------------------------


def test_a_fragment_found_at_start_up_stays_one_unreadable_line_and_costs_no_record(tmp_path: Path) -> None:
    """A restart, or a new worker, opens a file whose last writer was killed in the middle of a line."""
    audit = tmp_path / "audit.log"
    audit.write_bytes(line(KILLED, 6) + b"\n" + FRAGMENT)
    sink = FileSink()
    sink.configure(build({"LOG_DIR": str(tmp_path)}, PROJECT))
    try:
        sink.write(batch(1, 2, 3))
    finally:
        sink.close()

    assert audit.read_bytes().split(b"\n") == [
        line(KILLED, 6),
        FRAGMENT,
        line(HEALTHY, 1),
        line(HEALTHY, 2),
        line(HEALTHY, 3),
        b"",
    ]
    assert healthy_stream_summary(audit) == (3, 3, [], 1)  # every record kept; the fragment is one bad line


def test_a_fragment_left_between_two_batches_is_ended_before_the_next(sink: FileSink, tmp_path: Path) -> None:
    """Another worker sharing the file is killed mid-write after this process's last batch."""
    audit = tmp_path / "audit.log"
    sink.write(batch(1, 2))
    append_raw(audit, FRAGMENT)
    sink.write(batch(3))
    sink.write(batch(4))

    assert audit.read_bytes().split(b"\n") == [
        line(HEALTHY, 1),
        line(HEALTHY, 2),
        FRAGMENT,
        line(HEALTHY, 3),
        line(HEALTHY, 4),
        b"",
    ]
    assert healthy_stream_summary(audit) == (4, 4, [], 1)


def count_preads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.pread

    def pread(fd: int, length: int, offset: int) -> bytes:
        calls.append(offset)
        return real(fd, length, offset)

    monkeypatch.setattr(file_sink_module.os, "pread", pread)
    return calls


def test_whole_lines_of_other_writers_get_no_blank_line_and_a_lone_writer_reads_nothing(
    sink: FileSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = tmp_path / "audit.log"
    preads = count_preads(monkeypatch)
    sink.write(batch(1))
    sink.write(batch(2, 3))
    assert preads == []  # the file ends where this process's last batch ended a line: nothing to check
    other = line(KILLED, 1) + b"\n"
    append_raw(audit, other)
    size = audit.stat().st_size
    sink.write(batch(4))
    sink.write(batch(5))

    assert preads == [size - 1]  # one byte read, once, after another writer
    assert audit.read_bytes().split(b"\n") == [
        line(HEALTHY, 1),
        line(HEALTHY, 2),
        line(HEALTHY, 3),
        line(KILLED, 1),
        line(HEALTHY, 4),
        line(HEALTHY, 5),
        b"",
    ]


def fail_after(monkeypatch: pytest.MonkeyPatch, path: Path, allowed: int) -> None:
    """Make writes to ``path`` store ``allowed`` bytes in all, then fail with ENOSPC (a full disk)."""
    real = os.write
    inode = path.stat().st_ino
    budget = [allowed]

    def write(fd: int, data: bytes | memoryview) -> int:
        if os.fstat(fd).st_ino != inode:
            return real(fd, data)
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        stored = real(fd, bytes(data[: budget[0]]))
        budget[0] -= stored
        return stored

    monkeypatch.setattr(file_sink_module.os, "write", write)


def test_a_full_disk_right_after_the_newline_that_ends_a_fragment_counts_no_record_stored(
    sink: FileSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = tmp_path / "audit.log"
    append_raw(audit, FRAGMENT)
    fail_after(monkeypatch, audit, 1 + len(line(HEALTHY, 1)) // 2)  # the newline and half of record 1
    with pytest.raises(PartialDelivery) as error:
        sink.write(batch(1, 2))
    monkeypatch.undo()
    preads = count_preads(monkeypatch)
    sink.write(batch(3))

    assert error.value.delivered == 0
    assert preads == []  # the failed write still left the file ending a line, and the sink knows where
    assert audit.read_bytes() == FRAGMENT + b"\n" + line(HEALTHY, 3) + b"\n"


# --- a lock held by a writer frozen mid-write -------------------------------------------------------------


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[Callable[[], None]]:
    """audit.log with its ``flock`` held, as by a process frozen mid-write; call the result to release it."""
    fd = os.open(tmp_path / "audit.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    fcntl.flock(fd, fcntl.LOCK_EX)
    released = []

    def release() -> None:
        if not released:
            released.append(True)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    yield release
    release()


def test_closing_gives_up_on_a_write_that_waits_for_another_process_lock(
    sink: FileSink,
    tmp_path: Path,
    held_lock: Callable[[], None],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    locking = threading.Event()
    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX:
            locking.set()
        real_flock(fd, operation)

    monkeypatch.setattr(file_sink_module.fcntl, "flock", flock)
    writer = threading.Thread(target=sink.write, args=(batch(1, 2),), daemon=True)
    writer.start()
    assert locking.wait(10)
    started = time.monotonic()
    closed = sink.close(timeout=0.2)
    waited = time.monotonic() - started
    held_lock()  # the frozen process resumes: the write it held up ends, in the file still open for it
    writer.join(10)

    assert (closed, waited < 5, writer.is_alive()) == (False, True, False)
    assert capsys.readouterr().err == (
        f"activity_audit: file sink: closing the log files gave up after 0.2s: a write of 2 record(s) to "
        f"{tmp_path / 'audit.log'} is still under way (waiting for the lock another process holds?); the "
        "files are left open for the OS to close\n"
    )
    assert (tmp_path / "audit.log").read_bytes() == line(HEALTHY, 1) + b"\n" + line(HEALTHY, 2) + b"\n"
    assert sink.close(timeout=None) is True


def test_a_process_exits_on_time_while_another_holds_the_lock_and_reports_what_it_did_not_write(
    tmp_path: Path, held_lock: Callable[[], None]
) -> None:
    started = time.monotonic()
    child = start_scenario("burst", tmp_path, {"count": 5, "exit": "normal"}, SHUTDOWN_TIMEOUT=1)
    finished = finish(child, timeout=8)  # fails the test, after killing the child, if it hangs
    elapsed = time.monotonic() - started
    held_lock()

    assert (finished.returncode, elapsed < 8) == (0, True)
    # PIPELINE_STARTED, the 5 records and PIPELINE_STOPPED: none written, every one reported. The first
    # batch, the one waiting for the lock, holds PIPELINE_STARTED and as many records as the worker found.
    pipeline_report, close_report = finished.stderr.splitlines()
    assert pipeline_report == (
        "activity_audit: sink activity_audit.plugins.file_sink did not finish in time; "
        "7 records not delivered"
    )
    assert re.fullmatch(
        r"activity_audit: file sink: closing the log files gave up after 1s: a write of [1-6] record\(s\) to "
        + re.escape(str(tmp_path / "audit.log"))
        + r" is still under way \(waiting for the lock another process holds\?\); the files are left open "
        r"for the OS to close",
        close_report,
    )
    assert (tmp_path / "audit.log").read_bytes() == b""
