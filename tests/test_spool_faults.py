"""The spool under faults: options, failing uploaders and disks, forks, a removed directory.

Every test counts records exactly: what the spool acknowledged is delivered, and what it did not is counted.
The remote is a directory, as in ``test_spool.py``.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.exceptions import ImproperlyConfigured

from activity_audit import spool as spool_module
from activity_audit.conf import get_settings
from activity_audit.dispatch import pipeline
from activity_audit.errors import PartialDelivery
from activity_audit.plugin_options import PluginOptions
from activity_audit.records import Entry
from activity_audit.spool import (
    SPOOL_OPTION_KEYS,
    Segment,
    Spool,
    SpoolFull,
    SpoolOptions,
    _created_at,
    build_segment,
)
from tests.support.remote_archive import wait_until

STREAM = "aaaaaaaa-0000-4000-8000-000000000000"
OTHER_STREAM = "bbbbbbbb-0000-4000-8000-000000000000"  # the stream of the next process


def spool_options(**values: Any) -> SpoolOptions:
    return SpoolOptions.read(PluginOptions("s3", values, SPOOL_OPTION_KEYS), get_settings())


def test_retry_max_defaults_to_at_least_retry_initial() -> None:
    assert (spool_options(retry_initial=600).retry_initial, spool_options(retry_initial=600).retry_max) == (
        600.0,
        600.0,
    )
    assert spool_options(retry_initial=2).retry_max == 300.0


def test_a_retry_max_below_retry_initial_names_both_options() -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        spool_options(retry_initial=600, retry_max=100)
    assert str(error.value) == (
        "ACTIVITY_AUDIT['PLUGINS']['s3']['retry_max'] must be a number of seconds of at least retry_initial "
        "(600), got 100."
    )


class DirectoryUploader:
    """A remote that is a directory; ``fail`` makes uploads raise, and ``names`` lists the uploads."""

    def __init__(self, root: Path, fail: bool = False) -> None:
        self.root, self.fail = root, fail
        self.names: list[str] = []

    def upload(self, name: str, segment: Segment) -> None:
        if self.fail:
            raise RuntimeError("remote down")
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(segment.data)
        self.names.append(name)

    def close(self) -> None:
        pass

    def forget(self) -> None:
        pass


def entry(seq: int, stream: str = STREAM, pad: str = "") -> Entry:
    record = {"timestamp": "2026-11-28T15:09:32.123456+00:00", "stream_id": stream, "seq": seq}
    if pad:
        record["pad"] = pad
    return Entry("audit", record, orjson.dumps(record))


def uploaded_lines(root: Path) -> list[bytes]:
    return [
        line
        for path in sorted(root.rglob("*.gz"))
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]


def uploaded_seqs(root: Path) -> list[int]:
    return sorted(orjson.loads(line)["seq"] for line in uploaded_lines(root))


def unstarted(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> Spool:
    """``spool`` without its upload thread: the test drives the uploads."""
    monkeypatch.setattr(spool, "start", lambda: None)
    return spool


def test_segments_without_an_envelope_and_with_the_same_bytes_are_all_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A custom formatter dropped stream_id and seq, and the same event came twice, in two segments."""
    denied = b'{"event":"ACCESS_DENIED","user":"bob","path":"/admin"}'
    options = SpoolOptions(directory=tmp_path / "spool", segment_max_bytes=1)  # one segment per batch
    uploader = DirectoryUploader(tmp_path / "remote")
    spool = unstarted(Spool("unit", options, uploader), monkeypatch)
    spool.append([Entry("audit", {"stream_id": STREAM, "seq": 1}, denied)])
    spool.append([Entry("audit", {"stream_id": STREAM, "seq": 2}, denied)])
    segments = spool.backlog()
    names = [
        build_segment(path.read_bytes(), _created_at(path), path.stem).object_name() for path in segments
    ]
    spool._upload_ready()
    spool.close()

    assert uploaded_lines(tmp_path / "remote") == [denied, denied]
    assert uploader.names == names  # the name a retry of the same segment would get
    assert names == [
        f"{_created_at(path):%Y/%m/%d/%H}/segment-{path.stem}-000000000000-000000000000.jsonl.gz"
        for path in segments
    ]


class CloseRaisingUploader(DirectoryUploader):
    """Its close() raises while the remote is down, as paramiko's does when the socket died under it."""

    def close(self) -> None:
        if self.fail:
            raise EOFError()


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What killed a thread during the test (empty when none died)."""
    errors: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(repr(args.exc_value)))
    return errors


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int]]:
    """The problems reported to the pipeline during the test, as ``(kind, source, lost)``."""
    problems: list[tuple[str, str, int]] = []

    def problem(kind: str, source: str, lost: int = 0, error: str = "", **details: Any) -> None:
        problems.append((kind, source, lost))

    monkeypatch.setattr(pipeline.reporter, "problem", problem)
    return problems


FAST = {"segment_max_age": 0.05, "retry_initial": 0.05, "retry_max": 0.1}


def test_the_upload_thread_survives_an_uploader_whose_close_raises(
    tmp_path: Path, thread_errors: list[str], reported: list[tuple[str, str, int]]
) -> None:
    uploader = CloseRaisingUploader(tmp_path / "remote", fail=True)
    spool = Spool("unit", SpoolOptions(directory=tmp_path / "spool", **FAST), uploader)
    try:
        spool.append([entry(1)])
        wait_until(lambda: len(reported) >= 2, 10, "two failed attempts")
        uploader.fail = False
        spool.append([entry(2)])
        wait_until(lambda: uploaded_seqs(tmp_path / "remote") == [1, 2], 10, "the upload")
    finally:
        spool.close()
    assert thread_errors == []
    assert {problem for problem in reported} == {("UPLOAD_FAILED", "unit", 0)}


def test_the_upload_thread_survives_a_failure_to_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thread_errors: list[str]
) -> None:
    failures: list[str] = []

    def failing_problem(kind: str, source: str, lost: int = 0, error: str = "", **details: Any) -> None:
        failures.append(kind)
        raise RuntimeError("the reporter is broken")

    monkeypatch.setattr(pipeline.reporter, "problem", failing_problem)
    uploader = DirectoryUploader(tmp_path / "remote", fail=True)
    spool = Spool("unit", SpoolOptions(directory=tmp_path / "spool", **FAST), uploader)
    try:
        spool.append([entry(1)])
        wait_until(lambda: len(failures) >= 2, 10, "two failed attempts")
        uploader.fail = False
        wait_until(lambda: uploaded_seqs(tmp_path / "remote") == [1], 10, "the upload")
    finally:
        spool.close()
    assert thread_errors == []


def test_start_replaces_an_upload_thread_that_died(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(
        "unit", SpoolOptions(directory=tmp_path / "spool", **FAST), DirectoryUploader(tmp_path / "remote")
    )
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    spool._thread = dead  # what an error nobody foresaw leaves behind
    try:
        spool.append([entry(1)])
        wait_until(lambda: uploaded_seqs(tmp_path / "remote") == [1], 10, "the upload")
    finally:
        spool.close()


def padded_batch(first: int, count: int = 12) -> list[Entry]:
    """``count`` records of about 100 bytes: 12 fill a 1 KiB segment."""
    return [entry(seq, pad="x" * 30) for seq in range(first, first + count)]


def fill(spool: Spool, first: int = 1) -> list[int]:
    """Append 12-record batches until the spool refuses one; the seqs it took."""
    taken: list[int] = []
    while True:
        batch = padded_batch(first + len(taken))
        try:
            spool.append(batch)
        except SpoolFull:
            return taken
        taken += [item.record["seq"] for item in batch]


def on_disk(spool: Spool) -> int:
    return sum(path.stat().st_size for path in spool.backlog() if path.exists())


CAPPED = {"segment_max_bytes": 1024, "max_bytes": 12000, "segment_max_age": 3600}


def test_batches_are_taken_as_soon_as_uploads_make_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an outage the spool is full; while the backlog drains, the application keeps logging."""
    uploader = DirectoryUploader(tmp_path / "remote", fail=True)
    spool = unstarted(
        Spool("unit", SpoolOptions(directory=tmp_path / "spool", **CAPPED), uploader), monkeypatch
    )
    taken = fill(spool)
    assert len(spool.backlog()) >= 5
    outcomes: list[str] = []
    real_upload = uploader.upload

    def upload_while_logging(name: str, segment: Segment) -> None:
        real_upload(name, segment)
        batch = padded_batch(len(taken) + 1)
        room = spool.options.max_bytes - on_disk(spool)
        try:
            spool.append(batch)
            taken.extend(item.record["seq"] for item in batch)
            outcomes.append("taken")
        except SpoolFull:
            fits = sum(len(item.line) + 1 for item in batch) <= room
            outcomes.append("refused with room" if fits else "refused")

    monkeypatch.setattr(uploader, "upload", upload_while_logging)
    uploader.fail = False
    spool._upload_ready()
    monkeypatch.setattr(uploader, "upload", real_upload)
    spool.close()
    Spool("next", spool.options, uploader)._upload_ready()

    assert "refused with room" not in outcomes
    assert outcomes.count("taken") >= len(outcomes) - 1  # the first upload had not yet deleted its segment
    assert uploaded_seqs(tmp_path / "remote") == taken


def test_room_made_by_another_process_is_seen_before_a_batch_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = SpoolOptions(directory=tmp_path / "spool", **CAPPED)
    uploader = DirectoryUploader(tmp_path / "remote", fail=True)
    spool = unstarted(Spool("worker-1", options, uploader), monkeypatch)
    taken = fill(spool)
    uploader.fail = False
    Spool("worker-2", options, uploader)._upload_ready()  # another worker drains the shared directory
    batch = padded_batch(len(taken) + 1)
    spool.append(batch)
    spool.close()
    Spool("next", options, uploader)._upload_ready()

    assert uploaded_seqs(tmp_path / "remote") == [*taken, *(item.record["seq"] for item in batch)]


def test_after_a_restart_with_the_clock_stepped_back_new_segments_follow_the_backlog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = SpoolOptions(directory=tmp_path / "spool", segment_max_bytes=1)  # one segment per batch
    uploader = DirectoryUploader(tmp_path / "remote", fail=True)
    monkeypatch.setattr(spool_module, "_wall_clock_ns", lambda: 2_000_000_000_000_000_000)
    before = unstarted(Spool("unit", options, uploader), monkeypatch)
    before.append([entry(1)])
    before.close()  # the remote was down: the segment waits for the next start
    monkeypatch.setattr(spool_module, "_wall_clock_ns", lambda: 1_000_000_000_000_000_000)  # years earlier
    after = unstarted(Spool("unit", options, uploader), monkeypatch)
    after.append([entry(2, stream=OTHER_STREAM)])
    uploader.fail = False
    after._upload_ready()
    after.close()

    assert [name.rsplit("/", 1)[1] for name in uploader.names] == [
        f"{STREAM}-000000000001-000000000001.jsonl.gz",
        f"{OTHER_STREAM}-000000000002-000000000002.jsonl.gz",
    ]


@contextlib.contextmanager
def forked_child(spool: Spool) -> Iterator[None]:
    """Fork now (a gunicorn worker, a multiprocessing process) and keep the child alive in the block; the
    child calls ``after_fork`` as the ``audit_after_fork`` hook would, and then only lives."""
    ready, ready_to_tell = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            spool.after_fork()
            os.write(ready_to_tell, b"x")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(ready_to_tell)
    try:
        assert os.read(ready, 1) == b"x"
        yield
    finally:
        os.close(ready)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_child_forked_while_a_segment_is_adopted_does_not_hold_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, remote = tmp_path / "spool", tmp_path / "remote"
    directory.mkdir()
    abandoned = directory / f"{1:020d}-999999-deadbeef.open"  # its writer was killed
    abandoned.write_bytes(b"".join(item.line + b"\n" for item in (entry(1), entry(2))))
    spool = Spool("unit", SpoolOptions(directory=directory, **FAST), DirectoryUploader(remote))
    real_read_all, reading = spool_module._read_all, threading.Event()

    def slow_read_all(fd: int) -> bytes:  # the segment is big
        reading.set()
        time.sleep(0.3)
        return real_read_all(fd)

    monkeypatch.setattr(spool_module, "_read_all", slow_read_all)
    try:
        spool.start()
        assert reading.wait(10)
        with forked_child(spool):
            monkeypatch.setattr(spool_module, "_read_all", real_read_all)
            wait_until(lambda: not spool.backlog(), 10, "the adopted segment to be uploaded")
            assert uploaded_seqs(remote) == [1, 2]
    finally:
        spool.close()


def test_a_child_forked_while_a_segment_is_created_does_not_hold_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = tmp_path / "remote"
    spool = Spool("unit", SpoolOptions(directory=tmp_path / "spool", **FAST), DirectoryUploader(remote))
    real_fchmod, creating = os.fchmod, threading.Event()

    def slow_fchmod(fd: int, mode: int) -> None:  # between the creation of the segment and its flock
        real_fchmod(fd, mode)
        if not creating.is_set():
            creating.set()
            time.sleep(0.3)

    monkeypatch.setattr(spool_module.os, "fchmod", slow_fchmod)
    appending = threading.Thread(target=spool.append, args=([entry(1), entry(2)],))
    try:
        appending.start()
        assert creating.wait(10)
        with forked_child(spool):
            appending.join()
            wait_until(lambda: not spool.backlog(), 10, "the segment to be uploaded")
            assert uploaded_seqs(remote) == [1, 2]
    finally:
        spool.close()


def drain(options: SpoolOptions, remote: Path) -> None:
    """What the next start does: adopt what is left in ``options.directory`` and upload it."""
    spool = Spool("next", options, DirectoryUploader(remote))
    spool._adopt_abandoned()
    spool._upload_ready()


def test_records_acknowledged_around_the_removal_of_the_spool_directory_are_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator removes LOG_DIR while the application runs: the segment being written goes with it, but
    the spool still holds it open, and moves its records into the directory it creates again."""
    options = SpoolOptions(directory=tmp_path / "logs" / "spool" / "s3")
    spool = unstarted(Spool("unit", options, DirectoryUploader(tmp_path / "remote")), monkeypatch)
    spool.append([entry(1), entry(2)])
    shutil.rmtree(tmp_path / "logs")
    spool.append([entry(3), entry(4)])
    spool.append([entry(5)])
    spool.close()
    drain(options, tmp_path / "remote")

    assert uploaded_seqs(tmp_path / "remote") == [1, 2, 3, 4, 5]
    assert list(options.directory.iterdir()) == []


def test_records_of_a_segment_whose_directory_was_renamed_are_delivered_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = SpoolOptions(directory=tmp_path / "logs" / "spool" / "s3")
    spool = unstarted(Spool("unit", options, DirectoryUploader(tmp_path / "remote")), monkeypatch)
    spool.append([entry(1), entry(2)])
    (tmp_path / "logs").rename(tmp_path / "logs.1")  # rotated away
    spool.append([entry(3)])
    spool.close()
    drain(options, tmp_path / "remote")
    drain(SpoolOptions(directory=tmp_path / "logs.1" / "spool" / "s3"), tmp_path / "remote")  # put back later

    assert uploaded_seqs(tmp_path / "remote") == [1, 2, 3]


def test_the_upload_thread_moves_a_segment_whose_directory_was_removed(tmp_path: Path) -> None:
    options = SpoolOptions(directory=tmp_path / "logs" / "spool" / "s3", **FAST)
    spool = Spool("unit", options, DirectoryUploader(tmp_path / "remote"))
    try:
        spool.append([entry(1), entry(2)])
        wait_until(lambda: uploaded_seqs(tmp_path / "remote") == [1, 2], 10, "the first upload")
        spool.append([entry(3), entry(4)])
        shutil.rmtree(tmp_path / "logs")  # before the segment is due: the thread finds it without a name
        wait_until(lambda: uploaded_seqs(tmp_path / "remote") == [1, 2, 3, 4], 10, "the second upload")
    finally:
        spool.close()
    assert list(options.directory.iterdir()) == []


def test_a_segment_that_cannot_be_sealed_is_kept_and_delivered_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = SpoolOptions(directory=tmp_path / "spool", segment_max_bytes=1)  # sealed after every batch
    spool = unstarted(Spool("unit", options, DirectoryUploader(tmp_path / "remote")), monkeypatch)
    real_rename, failures = os.rename, []

    def rename_failing_once(source: Any, target: Any) -> None:
        if str(target).endswith(".ready") and not failures:
            failures.append(target)
            raise OSError(errno.EIO, "Input/output error")
        real_rename(source, target)

    monkeypatch.setattr(spool_module.os, "rename", rename_failing_once)
    spool.append([entry(1)])  # stored and fsynced; sealing it failed, so it stays the segment being written
    spool.append([entry(2)])
    spool._upload_ready()
    spool.close()

    assert len(failures) == 1
    assert uploaded_seqs(tmp_path / "remote") == [1, 2]
    assert list(options.directory.iterdir()) == []


def test_records_lost_with_a_removed_spool_directory_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reported: list[tuple[str, str, int]]
) -> None:
    """The directory is gone and cannot be made again (a file took its place): the records of the segment
    it held are lost when the spool closes, and counted; the batch that came meanwhile was refused."""
    options = SpoolOptions(directory=tmp_path / "logs" / "spool" / "s3")
    spool = unstarted(Spool("unit", options, DirectoryUploader(tmp_path / "remote")), monkeypatch)
    spool.append([entry(1), entry(2)])
    shutil.rmtree(tmp_path / "logs")
    (tmp_path / "logs").write_text("not a directory")
    with pytest.raises(OSError):
        spool.append([entry(3)])  # refused whole: the core counts it lost
    assert reported == []  # nothing is lost yet: the spool still holds 1 and 2
    spool.close()

    assert reported == [("SINK_FAILED", "unit", 2)]


def fail_once(monkeypatch: pytest.MonkeyPatch, name: str, when: Any = lambda *args: True) -> list[tuple]:
    """Make ``os.<name>`` raise EIO at its first call for which ``when(*args)`` holds; the calls it failed."""
    real, failed = getattr(os, name), []

    def failing(*args: Any) -> Any:
        if not failed and when(*args):
            failed.append(args)
            raise OSError(errno.EIO, "Input/output error")
        return real(*args)

    monkeypatch.setattr(spool_module.os, name, failing)
    return failed


def test_a_batch_whose_fsync_failed_is_cut_back_out_and_counted_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = SpoolOptions(directory=tmp_path / "spool")
    spool = unstarted(Spool("unit", options, DirectoryUploader(tmp_path / "remote")), monkeypatch)
    spool.append([entry(1), entry(2)])
    failed = fail_once(monkeypatch, "fsync", lambda fd: fd == spool._fd)
    with pytest.raises(PartialDelivery) as error:
        spool.append([entry(3), entry(4)])
    spool.append([entry(5)])
    spool.close()
    drain(options, tmp_path / "remote")

    assert (len(failed), error.value.delivered) == (1, 0)
    assert uploaded_seqs(tmp_path / "remote") == [1, 2, 5]


def test_records_whose_fsync_failed_and_that_stay_in_the_segment_are_counted_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fsync fails, and so does cutting the lines back out: they stay, and are delivered with the rest."""
    options = SpoolOptions(directory=tmp_path / "spool")
    spool = unstarted(Spool("unit", options, DirectoryUploader(tmp_path / "remote")), monkeypatch)
    spool.append([entry(1)])
    fail_once(monkeypatch, "fsync", lambda fd: fd == spool._fd)
    fail_once(monkeypatch, "ftruncate")
    with pytest.raises(PartialDelivery) as error:
        spool.append([entry(2), entry(3)])
    spool.append([entry(4)])
    spool.close()
    drain(options, tmp_path / "remote")

    assert error.value.delivered == 2
    assert uploaded_seqs(tmp_path / "remote") == [1, 2, 3, 4]


def test_a_batch_cut_short_at_a_change_of_stream_counts_what_it_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first stream's records are stored and sealed; the segment for the second cannot be created."""
    options = SpoolOptions(directory=tmp_path / "spool")
    spool = unstarted(Spool("unit", options, DirectoryUploader(tmp_path / "remote")), monkeypatch)
    spool.append([entry(1)])
    fail_once(monkeypatch, "open", lambda path, *rest: str(path).endswith(".new"))
    with pytest.raises(PartialDelivery) as error:
        spool.append([entry(2), entry(1, stream=OTHER_STREAM), entry(2, stream=OTHER_STREAM)])
    spool.close()
    drain(options, tmp_path / "remote")

    assert error.value.delivered == 1
    assert uploaded_lines(tmp_path / "remote") == [entry(1).line, entry(2).line]


def test_a_batch_cut_short_by_a_segment_that_would_not_close_counts_what_it_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = SpoolOptions(directory=tmp_path / "spool")
    spool = unstarted(Spool("unit", options, DirectoryUploader(tmp_path / "remote")), monkeypatch)
    fail_once(monkeypatch, "rename", lambda source, target: str(target).endswith(".ready"))
    with pytest.raises(PartialDelivery) as error:
        spool.append([entry(1), entry(2), entry(1, stream=OTHER_STREAM)])
    spool.append([entry(2, stream=OTHER_STREAM)])
    spool.close()
    drain(options, tmp_path / "remote")

    assert error.value.delivered == 2
    assert uploaded_lines(tmp_path / "remote") == [
        entry(1).line,
        entry(2).line,
        entry(2, stream=OTHER_STREAM).line,
    ]
