"""``audit verify`` on the files of processes that write them while they are read.

Each test plays the writer itself, at a chosen point of verify's first reading (``_lines_of`` is wrapped, one
file at a time, as verify reads them in turn), so what verify sees is fixed, not left to a race.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from activity_audit import verify
from activity_audit.verify import OPEN_ADVICE, VerifyReport, verify_files

STREAM = "2b1f3c9e-0000-4000-8000-000000000001"
OPEN_WARNING = f"warning: 1 open stream(s): records after the last one found cannot be checked{OPEN_ADVICE}"


def line(seq: int, **fields: Any) -> bytes:
    return json.dumps({"stream_id": STREAM, "seq": seq, "message": f"record {seq}", **fields}).encode()


def stopped(seq: int) -> bytes:
    return line(seq, event_type="PIPELINE_STOPPED")


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as file:
        file.write(data)


def summary(count: int, last: int, state: str = "open (still running, or killed)", missing: int = 0) -> str:
    counts = f"{count} records, seq 1..{last}, {missing} missing, 0 repeated, 0 declared dropped"
    return f"stream {STREAM}: {counts}, {state}"


def during_first_reading(
    monkeypatch: pytest.MonkeyPatch,
    at_unfinished: Callable[[], None] = lambda: None,
    after_file: Callable[[str], None] = lambda path: None,
) -> list[list[str]]:
    """Run ``at_unfinished`` once verify's first reading has taken the first line without its newline (once
    only: a reader that read on would meet the line again, unfinished, as long as the writer writes no
    newline), and ``after_file`` once it has read each file to its end; returns the paths of every reading."""
    real = verify._lines_of
    readings: list[list[str]] = []
    met_unfinished = False

    def lines_of(paths: list[str]) -> Iterator[object]:
        nonlocal met_unfinished
        first = not readings
        readings.append(list(paths))
        for path in paths:
            for item in real([path]):
                yield item
                if first and not met_unfinished and not (isinstance(item, bytes) and item.endswith(b"\n")):
                    met_unfinished = True
                    at_unfinished()
            if first:
                after_file(path)

    monkeypatch.setattr(verify, "_lines_of", lines_of)
    return readings


# --- a stream that stops while its files are read --------------------------------------------------------


def test_a_record_that_reaches_a_file_already_read_as_its_stream_stops_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``audit verify audit_logs/*.log`` reads api.log, then audit.log. The worker's last request record
    reaches api.log once it was read, its PIPELINE_STOPPED reaches audit.log before it is: the stream is
    closed, and its seq 3 was missing from the first reading."""
    api, audit = tmp_path / "api.log", tmp_path / "audit.log"
    api.write_bytes(line(1) + b"\n")
    audit.write_bytes(line(2) + b"\n")

    def worker_stops(path: str) -> None:
        if path == str(api):
            append(api, line(3) + b"\n")
            append(audit, stopped(4) + b"\n")

    readings = during_first_reading(monkeypatch, after_file=worker_stops)
    report = verify_files([str(api), str(audit)])

    assert report.lines() == [summary(4, 4, "stopped"), "unreadable lines: 0", "OK"]
    assert len(readings) == 2


def test_a_seq_lost_from_a_closed_stream_is_still_missing_after_the_second_reading(tmp_path: Path) -> None:
    audit = tmp_path / "audit.log"
    audit.write_bytes(line(1) + b"\n" + line(3) + b"\n" + stopped(4) + b"\n")

    report = verify_files([str(audit)])

    assert report.lines() == [
        summary(3, 4, "stopped", missing=1),
        "  missing seq: 2",
        "unreadable lines: 0",
        "FAILED",
    ]


# --- a busy trail --------------------------------------------------------------------------------------


def test_many_gaps_filled_on_the_second_reading_take_no_quadratic_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy process writes every other record to a file already read: 40000 gaps, each filled on the
    second reading (walking every found seq for every gap would take minutes)."""
    gaps = 40_000
    api, audit = tmp_path / "api.log", tmp_path / "audit.log"
    api.write_bytes(b"".join(line(seq) + b"\n" for seq in range(2, 2 * gaps + 1, 2)))
    audit.write_bytes(b"")

    def busy_writer(path: str) -> None:
        if path == str(audit):
            append(api, b"".join(line(seq) + b"\n" for seq in range(1, 2 * gaps, 2)))

    during_first_reading(monkeypatch, after_file=busy_writer)
    result: list[VerifyReport] = []
    checking = threading.Thread(
        target=lambda: result.append(verify_files([str(api), str(audit)])), daemon=True
    )
    checking.start()
    checking.join(8)

    assert not checking.is_alive(), "verify still busy after 8 s"
    assert result[0].lines() == [summary(2 * gaps, 2 * gaps), "unreadable lines: 0", OPEN_WARNING, "OK"]
