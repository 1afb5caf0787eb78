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


# --- a last line still being written ---------------------------------------------------------------------

HALF = len(line(2)) // 2


def test_a_line_being_written_is_read_no_further_and_counts_once_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first reading ends inside seq 2, whose writer finishes it right after: the rest must not pass for
    a line of its own, nor the half for an unreadable one; seq 2 is found on the second reading."""
    audit, api = tmp_path / "audit.log", tmp_path / "api.log"
    audit.write_bytes(line(1) + b"\n" + line(2)[:HALF])
    api.write_bytes(line(3) + b"\n")

    def writer_finishes() -> None:
        append(audit, line(2)[HALF:] + b"\n")

    during_first_reading(monkeypatch, at_unfinished=writer_finishes)
    report = verify_files([str(audit), str(api)])

    assert report.lines() == [summary(3, 3), "unreadable lines: 0", OPEN_WARNING, "OK"]


def test_a_line_finished_after_both_readings_were_made_is_judged_as_it_is_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No seq is missing, so only the unfinished line is read again: finished, it is a record like any."""
    audit = tmp_path / "audit.log"
    audit.write_bytes(line(1) + b"\n" + line(2)[:HALF])

    def writer_finishes(path: str) -> None:
        append(audit, line(2)[HALF:] + b"\n" + line(3) + b"\n")

    readings = during_first_reading(monkeypatch, after_file=writer_finishes)
    report = verify_files([str(audit)])

    assert report.lines() == [summary(1, 1), "unreadable lines: 0", OPEN_WARNING, "OK"]
    assert len(readings) == 1


def test_a_line_still_growing_at_the_second_reading_is_left_unchecked_and_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = tmp_path / "audit.log"
    big = line(2, body="x" * 100_000)
    audit.write_bytes(line(1) + b"\n" + big[:1000])

    def writer_goes_on() -> None:
        append(audit, big[1000:50_000])

    during_first_reading(monkeypatch, at_unfinished=writer_goes_on)
    report = verify_files([str(audit)])

    assert report.lines() == [
        summary(1, 1),
        "unreadable lines: 0",
        "lines still being written, not checked: 1",
        OPEN_WARNING,
        "OK",
    ]
    assert (report.ok, report.bad_lines, report.unfinished_lines) == (True, 0, 1)


def test_a_last_line_that_stays_unfinished_is_torn(tmp_path: Path) -> None:
    """Its writer was killed: the file no longer grows, and the line counts as unreadable."""
    audit = tmp_path / "audit.log"
    audit.write_bytes(line(1) + b"\n" + line(2)[:HALF])

    report = verify_files([str(audit)])

    assert report.lines() == [summary(1, 1), "unreadable lines: 1", OPEN_WARNING, "FAILED"]


def test_a_fragment_another_writer_ended_with_a_newline_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer was killed; the next one ends the fragment with a newline before its own records."""
    audit = tmp_path / "audit.log"
    audit.write_bytes(line(1) + b"\n" + line(2)[:HALF])

    def next_writer() -> None:
        append(audit, b"\n" + line(3) + b"\n")

    during_first_reading(monkeypatch, at_unfinished=next_writer)
    report = verify_files([str(audit)])

    assert report.lines() == [summary(1, 1), "unreadable lines: 1", OPEN_WARNING, "FAILED"]


def test_a_torn_line_followed_by_others_is_unreadable_at_once(tmp_path: Path) -> None:
    audit = tmp_path / "audit.log"
    audit.write_bytes(line(1) + b"\n" + line(2)[:HALF] + b"\n" + line(3) + b"\n" + stopped(4) + b"\n")

    report = verify_files([str(audit)])

    assert report.lines() == [
        summary(3, 4, "stopped", missing=1),
        "  missing seq: 2",
        "unreadable lines: 1",
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
