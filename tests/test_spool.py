"""The spool on its own: a torn segment left by a killed writer, one stream per segment, several processes.

The remote here is a directory (the spool is the component under test; the S3 and SFTP plugins' tests run
it against real servers).
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from activity_audit import spool as spool_module
from activity_audit.records import Entry
from activity_audit.spool import Segment, Spool, SpoolOptions
from tests.support.remote_archive import wait_until


class DirectoryUploader:
    def __init__(self, root: Path) -> None:
        self.root = root

    def upload(self, name: str, segment: Segment) -> None:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(segment.data)

    def close(self) -> None:
        pass

    def forget(self) -> None:
        pass


def entry(stream: str, seq: int) -> Entry:
    record = {"timestamp": "2026-11-28T15:09:32.123456+00:00", "stream_id": stream, "seq": seq}
    return Entry("audit", record, orjson.dumps(record))


def uploaded(root: Path) -> dict[str, list[dict]]:
    return {
        str(path.relative_to(root)): [
            orjson.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()
        ]
        for path in sorted(root.rglob("*.gz"))
    }


STREAM_A = "aaaaaaaa-0000-4000-8000-000000000000"
STREAM_B = "bbbbbbbb-0000-4000-8000-000000000000"


def test_one_segment_per_stream_named_by_its_seq_range(tmp_path: Path) -> None:
    options = SpoolOptions(
        directory=tmp_path / "spool", segment_max_age=0.05, retry_initial=0.05, retry_max=0.1
    )
    spool = Spool("unit", options, DirectoryUploader(tmp_path / "remote"))
    spool.append([entry(STREAM_A, 1), entry(STREAM_A, 2), entry(STREAM_B, 1)])
    spool.append([entry(STREAM_B, 2)])
    wait_until(lambda: not spool.backlog(), 10, "the spool to drain")
    spool.close()
    assert {name: [r["seq"] for r in records] for name, records in uploaded(tmp_path / "remote").items()} == {
        f"2026/11/28/15/{STREAM_A}-000000000001-000000000002.jsonl.gz": [1, 2],
        f"2026/11/28/15/{STREAM_B}-000000000001-000000000002.jsonl.gz": [1, 2],
    }


def test_a_segment_abandoned_mid_line_is_trimmed_and_delivered(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    whole = orjson.dumps(entry(STREAM_A, 1).record) + b"\n" + orjson.dumps(entry(STREAM_A, 2).record) + b"\n"
    abandoned = directory / f"{1:020d}-999999-deadbeef.open"  # its writer is gone: nobody holds its flock
    abandoned.write_bytes(whole + b'{"timestamp": "2026-11-28T15:')
    os.chmod(abandoned, 0o640)
    options = SpoolOptions(directory=directory, segment_max_age=0.05, retry_initial=0.05, retry_max=0.1)
    spool = Spool("unit", options, DirectoryUploader(tmp_path / "remote"))
    spool.start()
    wait_until(lambda: not spool.backlog(), 10, "the abandoned segment to be delivered")
    spool.close()
    assert list(uploaded(tmp_path / "remote").values()) == [
        [entry(STREAM_A, 1).record, entry(STREAM_A, 2).record]
    ]


def test_a_segment_being_created_is_never_adopted_by_another_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's spool looks for abandoned segments while this one is between creating and locking."""
    directory, remote = tmp_path / "spool", tmp_path / "remote"
    directory.mkdir()
    options = SpoolOptions(directory=directory, segment_max_age=3600, retry_initial=0.05, retry_max=0.1)
    writer = Spool("writer", options, DirectoryUploader(remote))
    other = Spool("other", options, DirectoryUploader(remote))
    real_fchmod, creating = os.fchmod, threading.Event()

    def slow_fchmod(fd: int, mode: int) -> None:  # runs between the creation and the flock
        real_fchmod(fd, mode)
        creating.set()
        time.sleep(0.3)

    monkeypatch.setattr(spool_module.os, "fchmod", slow_fchmod)
    appending = threading.Thread(target=writer.append, args=([entry(STREAM_A, seq) for seq in (1, 2, 3)],))
    appending.start()
    assert creating.wait(5)
    assert [path.suffix for path in directory.iterdir()] == [".new"]
    other._adopt_abandoned()
    appending.join()
    monkeypatch.setattr(spool_module.os, "fchmod", real_fchmod)
    assert [path.suffix for path in directory.iterdir()] == [".open"]
    writer.close()
    other._upload_ready()
    assert [[r["seq"] for r in records] for records in uploaded(remote).values()] == [[1, 2, 3]]


def test_a_creation_swept_before_its_lock_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, remote = tmp_path / "spool", tmp_path / "remote"
    directory.mkdir()
    options = SpoolOptions(directory=directory, segment_max_age=3600)
    spool = Spool("unit", options, DirectoryUploader(remote))
    real_fchmod, sweeps = os.fchmod, []

    def swept_once(fd: int, mode: int) -> None:  # a sweep deleted the .new file before its creator locked it
        real_fchmod(fd, mode)
        if not sweeps:
            sweeps.extend(path.name for path in directory.glob("*.new"))
            for path in directory.glob("*.new"):
                path.unlink()

    monkeypatch.setattr(spool_module.os, "fchmod", swept_once)
    spool.append([entry(STREAM_A, 1), entry(STREAM_A, 2)])
    spool.close()
    assert len(sweeps) == 1
    assert [path.suffix for path in directory.iterdir()] == [".ready"]
    Spool("next", options, DirectoryUploader(remote))._upload_ready()
    assert [[r["seq"] for r in records] for records in uploaded(remote).values()] == [[1, 2]]
    assert list(directory.iterdir()) == []


def test_only_stale_unlocked_new_files_are_swept(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    stale = directory / f"{1:020d}-999999-deadbeef.new"  # its creator died before renaming it
    fresh = directory / f"{time.time_ns():020d}-999999-cafebabe.new"  # being created right now
    held = directory / f"{2:020d}-999999-feedface.new"  # old, yet its creator holds it (it was stopped)
    for path in (stale, fresh, held):
        path.touch()
    holder = os.open(held, os.O_RDONLY)
    try:
        spool_module.fcntl.flock(holder, spool_module.fcntl.LOCK_EX)
        Spool(
            "unit", SpoolOptions(directory=directory), DirectoryUploader(tmp_path / "remote")
        )._adopt_abandoned()
    finally:
        os.close(holder)
    assert sorted(path.name for path in directory.iterdir()) == sorted([fresh.name, held.name])


PROCESSES, APPENDS = 6, 1500


def _append_in_a_process(number: int, directory: Path, remote: Path, results: Any) -> None:
    options = SpoolOptions(
        directory=directory, segment_max_bytes=1024, segment_max_age=0.01, retry_initial=0.01, retry_max=0.05
    )
    spool = Spool("shared", options, DirectoryUploader(remote))
    stream, acknowledged, refused = f"stream-{number}", 0, []
    for seq in range(1, APPENDS + 1):
        try:
            spool.append([entry(stream, seq)])
            acknowledged += 1
        except Exception as exc:
            refused.append(f"{type(exc).__name__}: {exc}")
    spool.close(timeout=5)
    results.put((stream, acknowledged, refused[:3]))


def test_processes_sharing_a_spool_deliver_every_acknowledged_record_once(tmp_path: Path) -> None:
    """Gunicorn workers on one spool directory: tiny segments, so segments open, close and get adopted all
    the time; then the next start drains what is left. Every record is delivered, exactly once here."""
    directory, remote = tmp_path / "spool", tmp_path / "remote"
    directory.mkdir()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [
        context.Process(target=_append_in_a_process, args=(number, directory, remote, results))
        for number in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes = sorted(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(10)
        assert process.exitcode == 0
    assert outcomes == [(f"stream-{number}", APPENDS, []) for number in range(PROCESSES)]
    final = Spool("shared", SpoolOptions(directory=directory), DirectoryUploader(remote))
    final._adopt_abandoned()
    final._upload_ready()
    delivered = Counter(
        (record["stream_id"], record["seq"]) for records in uploaded(remote).values() for record in records
    )
    expected = {(f"stream-{number}", seq) for number in range(PROCESSES) for seq in range(1, APPENDS + 1)}
    assert set(delivered) == expected
    assert sum(delivered.values()) == PROCESSES * APPENDS
    assert list(directory.iterdir()) == []


def test_a_remote_sink_keeps_a_batch_that_comes_after_shutdown_for_the_next_start(tmp_path: Path) -> None:
    """Records submitted after the exit drain come late: the spool keeps them for the next start."""
    from dataclasses import replace

    from activity_audit.conf import get_settings
    from activity_audit.remote_sink import RemoteSink

    remote = tmp_path / "remote"
    sink = RemoteSink("dirsink", option_keys=(), connect=lambda options: DirectoryUploader(remote))
    settings = replace(get_settings(), LOG_DIR=tmp_path / "logs", PLUGINS={"dirsink": {}})

    sink.audit_configure(settings)
    sink.sink([entry(STREAM_A, seq) for seq in (1, 2)])
    sink.audit_shutdown()
    sink.sink([entry(STREAM_A, 3)])  # after the drain

    sink.audit_configure(settings)  # the next start uploads what the spool kept
    try:
        wait_until(lambda: sum(len(lines) for lines in uploaded(remote).values()) == 3, 10.0, "the upload")
    finally:
        sink.audit_shutdown()
    assert sorted(line["seq"] for lines in uploaded(remote).values() for line in lines) == [1, 2, 3]


class OrderedUploader(DirectoryUploader):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.order: list[str] = []

    def upload(self, name: str, segment: Segment) -> None:
        super().upload(name, segment)
        self.order.append(name)


def test_segments_upload_in_the_order_written_when_the_clock_steps_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([2_000_000_000_000_000_000, 1_000_000_000_000_000_000])  # the second one years earlier
    monkeypatch.setattr(spool_module, "_wall_clock_ns", lambda: next(clock))
    options = SpoolOptions(
        directory=tmp_path / "spool", segment_max_bytes=1, retry_initial=0.05, retry_max=0.1
    )
    uploader = OrderedUploader(tmp_path / "remote")
    spool = Spool("unit", options, uploader)
    monkeypatch.setattr(spool, "start", lambda: None)  # both segments are sealed before any upload
    spool.append([entry(STREAM_A, 1)])
    spool.append([entry(STREAM_A, 2)])
    monkeypatch.undo()
    spool.start()
    wait_until(lambda: not spool.backlog(), 10, "the spool to drain")
    spool.close()

    assert uploader.order == [
        f"2026/11/28/15/{STREAM_A}-000000000001-000000000001.jsonl.gz",
        f"2026/11/28/15/{STREAM_A}-000000000002-000000000002.jsonl.gz",
    ]
