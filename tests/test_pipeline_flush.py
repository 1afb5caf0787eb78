"""``activity_audit.flush(timeout)``: True once every record submitted before the call is in every sink;
False, within the timeout, when a sink hangs. Runs in the test process, on its pipeline."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import activity_audit
from activity_audit import hookimpl
from activity_audit.emit import emit_crud
from activity_audit.records import Entry, new_record
from activity_audit.testing import registered_plugin
from tests.conftest import read_lines

MARKER = "tests.flush"


class SlowSink:
    """Takes its time over every batch, so that a flush that did not wait would see records missing."""

    def __init__(self) -> None:
        self.seqs: list[int] = []

    @hookimpl
    def sink(self, records: Sequence[Entry]) -> None:
        time.sleep(0.02)
        self.seqs.extend(e.record["seq"] for e in records if e.record.get("name") == MARKER)


class HangingSink:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.seqs: list[int] = []

    @hookimpl
    def sink(self, records: Sequence[Entry]) -> None:
        self.release.wait(30)
        self.seqs.extend(e.record["seq"] for e in records if e.record.get("name") == MARKER)


def _emit(count: int, run: str) -> list[dict[str, Any]]:
    """Emit ``count`` records; the worker writes each one's ``seq`` into it before any sink sees it."""
    records = []
    for i in range(count):
        record = new_record("AUDIT", MARKER, "flush test", run=run, i=i)
        assert emit_crud(record)
        records.append(record)
    return records


def _seqs(records: list[dict[str, Any]]) -> list[int | None]:
    return [record.get("seq") for record in records]


def _call_with_deadline(function, *args, deadline: float = 20.0):
    """Run ``function`` on a thread; fail (instead of hanging the run) if it does not return in time."""
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(function(*args)), daemon=True)
    thread.start()
    thread.join(deadline)
    assert not thread.is_alive(), f"{function.__name__} did not return within {deadline}s"
    return outcome[0]


def _wait_for(read, expected, deadline: float = 20.0) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if read() == expected:
            return True
        time.sleep(0.02)
    return read() == expected


def test_flush_returns_when_everything_is_in_the_sinks(log_dir: Path) -> None:
    slow = SlowSink()
    with registered_plugin(slow, name="tests.flush.slow"):
        emitted = _emit(3_000, "slow")
        assert _call_with_deadline(activity_audit.flush, 20.0) is True
        seqs = _seqs(emitted)
        assert seqs == list(range(seqs[0], seqs[0] + 3_000))
        # Nothing more is waited for: what flush promised is already there, in the slow sink and in the file.
        assert slow.seqs == seqs
        in_file = [r["seq"] for r in read_lines(log_dir / "audit.log") if r.get("run") == "slow"]
        assert in_file == seqs


def test_flush_gives_up_on_a_hung_sink(log_dir: Path) -> None:
    hanging = HangingSink()
    with registered_plugin(hanging, name="tests.flush.hanging"):
        emitted = _emit(10, "hung")
        assert _call_with_deadline(activity_audit.flush, 0.5) is False
        assert hanging.seqs == []
        assert _wait_for(lambda: None in _seqs(emitted), False)  # the worker has stamped them
        # The file sink was not held up by the hung one (waited for, with a deadline, never timed).
        assert _wait_for(
            lambda: [r["seq"] for r in read_lines(log_dir / "audit.log") if r.get("run") == "hung"],
            _seqs(emitted),
        )
        seqs = _seqs(emitted)
        hanging.release.set()
        assert _call_with_deadline(activity_audit.flush, 20.0) is True
        assert hanging.seqs == seqs
