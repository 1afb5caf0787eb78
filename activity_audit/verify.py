"""Prove from the files alone that nothing was lost or repeated: every stream's ``seq`` must run 1, 2, 3 ...

Records of one stream may be spread over several files (``audit.log``, ``api.log``, ``app.log``) and may
appear out of order (threads); the check is per stream over all the files given.

A line counts as unreadable unless it is a JSON object whose ``stream_id`` is a non-empty string and whose
``seq`` is a whole number of 1 or more (not a boolean, a float or a string).

A stream is *closed* when its ``PIPELINE_STOPPED`` record is present, and *open* otherwise: its process may
still be running, or it was killed, or the end of its trail was cut off. Records after the last one found
cannot be checked for an open stream, so the report says so; with ``require_closed`` an open stream fails.

Files may be read while processes write them, so they are read a second time for the seqs any stream misses,
closed or open: a record may reach a file already read, while a later one of the same stream, even its
``PIPELINE_STOPPED``, reaches a file read later.

Memory grows with the number of records read, never with the values of ``seq``.
"""

from __future__ import annotations

import bisect
import errno
import gzip
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeGuard

import orjson

# How many ranges of missing or repeated seq a report line shows.
SHOWN_RANGES = 50
OPEN_ADVICE = " (if their processes have stopped, their ends are missing: --require-closed fails on this)"


@dataclass
class StreamReport:
    stream_id: str
    count: int = 0
    max_seq: int = 0
    missing_ranges: list[tuple[int, int]] = field(default_factory=list)  # first and last included
    duplicates: list[int] = field(default_factory=list)  # one entry per extra copy
    stopped: bool = False
    declared_drops: int = 0

    @property
    def missing_count(self) -> int:
        return sum(last - first + 1 for first, last in self.missing_ranges)

    def missing_seqs(self) -> Iterator[int]:
        """Every missing ``seq``, in order (lazily: there may be a great many)."""
        for first, last in self.missing_ranges:
            yield from range(first, last + 1)


@dataclass
class VerifyReport:
    streams: dict[str, StreamReport]
    bad_lines: int
    require_closed: bool = False

    @property
    def open_streams(self) -> int:
        return sum(not stream.stopped for stream in self.streams.values())

    @property
    def ok(self) -> bool:
        """No unreadable line, no gap, no repeat, and (with ``require_closed``) no open stream."""
        complete = all(not s.missing_ranges and not s.duplicates for s in self.streams.values())
        return self.bad_lines == 0 and complete and not (self.require_closed and self.open_streams)

    def lines(self) -> list[str]:
        out = []
        for stream in self.streams.values():
            state = "stopped" if stream.stopped else "open (still running, or killed)"
            out.append(
                f"stream {stream.stream_id}: {stream.count} records, seq 1..{stream.max_seq}, "
                f"{stream.missing_count} missing, {len(stream.duplicates)} repeated, "
                f"{stream.declared_drops} declared dropped, {state}"
            )
            if stream.missing_ranges:
                out.append(f"  missing seq: {_format_ranges(stream.missing_ranges)}")
            if stream.duplicates:
                out.append(f"  repeated seq: {_format_ranges(_ranges(stream.duplicates))}")
        out.append(f"unreadable lines: {self.bad_lines}")
        if self.open_streams:
            severity, advice = ("error", "") if self.require_closed else ("warning", OPEN_ADVICE)
            out.append(
                f"{severity}: {self.open_streams} open stream(s): records after the last one found cannot be "
                f"checked{advice}"
            )
        out.append("OK" if self.ok else "FAILED")
        return out


def verify_lines(lines: Iterable[bytes], *, require_closed: bool = False) -> VerifyReport:
    """Check JSON lines, each an audit record, for gaps and repeats in every stream's ``seq``."""
    seen: dict[str, list[int]] = {}
    reports: dict[str, StreamReport] = {}
    bad = 0
    for raw in lines:
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        stream_id = record.get("stream_id") if isinstance(record, dict) else None
        seq = record.get("seq") if isinstance(record, dict) else None
        if not _is_count(seq) or seq < 1 or not isinstance(stream_id, str) or not stream_id:
            bad += 1
            continue
        report = reports.get(stream_id)
        if report is None:
            report = reports[stream_id] = StreamReport(stream_id)
            seen[stream_id] = []
        seen[stream_id].append(seq)
        report.count += 1
        event_type = record.get("event_type")
        if event_type == "PIPELINE_STOPPED":
            report.stopped = True
        elif event_type == "RECORDS_DROPPED" and _is_count(record.get("count")):
            report.declared_drops += record["count"]
    for stream_id, report in reports.items():
        _find_gaps_and_repeats(report, sorted(seen.pop(stream_id)))
    return VerifyReport(reports, bad, require_closed)


def verify_files(paths: Iterable[str], *, require_closed: bool = False) -> VerifyReport:
    """:func:`verify_lines` over every line of the files; ``OSError`` for a file that cannot be read.

    A file whose name ends in ``.gz`` (rotated and compressed by logrotate) is read through gzip.
    """

    paths = list(paths)
    report = verify_lines(_lines_of(paths), require_closed=require_closed)
    _look_again_for_missing(report, paths)
    return report


def _lines_of(paths: list[str]) -> Iterator[bytes]:
    """Every line of ``paths`` in turn (``.gz`` files decompressed). Raises :class:`OSError` naming the file
    (``filename``) when one cannot be read to its end: missing, unreadable, or a ``.gz`` cut short or
    corrupt (which ``gzip`` reports as ``EOFError`` or ``zlib.error``)."""
    for path in paths:
        try:
            with gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb") as handle:
                yield from handle
        except (OSError, EOFError, zlib.error) as exc:
            if isinstance(exc, OSError) and exc.filename is not None:
                raise
            raise OSError(errno.EIO, str(exc) or type(exc).__name__, str(path)) from exc


def _look_again_for_missing(report: VerifyReport, paths: list[str]) -> None:
    """Read the files once more for the seqs any stream misses, and keep only those still missing.

    A process still running writes while the files are read one after another: a record may reach a file
    already read, after a later one of the same stream (its ``PIPELINE_STOPPED`` too: a closed stream is
    looked at again as well) was found in the next file. Such a record is there on the second reading; a seq
    missing from both was really lost (or is still on its way, at the very end).
    """
    gaps = {
        stream_id: stream.missing_ranges
        for stream_id, stream in report.streams.items()
        if stream.missing_ranges
    }
    if not gaps:
        return
    found: dict[str, set[int]] = {stream_id: set() for stream_id in gaps}
    starts = {stream_id: [first for first, _ in ranges] for stream_id, ranges in gaps.items()}
    for raw in _lines_of(paths):
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        stream_id, seq = record.get("stream_id"), record.get("seq")
        if not isinstance(stream_id, str) or stream_id not in gaps or not _is_count(seq):
            continue
        ranges = gaps[stream_id]
        index = bisect.bisect_right(starts[stream_id], seq) - 1
        if index >= 0 and seq <= ranges[index][1]:
            found[stream_id].add(seq)
    for stream_id, seqs in found.items():
        if seqs:
            stream = report.streams[stream_id]
            stream.missing_ranges = _without(stream.missing_ranges, seqs)
            stream.count += len(seqs)


def _without(ranges: list[tuple[int, int]], seqs: set[int]) -> list[tuple[int, int]]:
    """``ranges`` (sorted, disjoint, first and last included) without the numbers in ``seqs``.

    One sort, then ranges and seqs are walked together: time grows with their sizes added, not multiplied.
    """
    out: list[tuple[int, int]] = []
    found = sorted(seqs)
    index = 0
    for first, last in ranges:
        start = first
        while index < len(found) and found[index] <= last:
            seq = found[index]
            index += 1
            if seq >= start:  # not below this range (in no range at all)
                if seq > start:
                    out.append((start, seq - 1))
                start = seq + 1
        if start <= last:
            out.append((start, last))
    return out


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _find_gaps_and_repeats(report: StreamReport, seqs: list[int]) -> None:
    """Fill in ``missing_ranges``, ``duplicates`` and ``max_seq`` from the stream's sorted seqs."""
    previous = 0
    for seq in seqs:
        if seq == previous:
            report.duplicates.append(seq)
        elif seq > previous + 1:
            report.missing_ranges.append((previous + 1, seq - 1))
        previous = seq
    report.max_seq = previous


def _ranges(sorted_numbers: list[int]) -> list[tuple[int, int]]:
    """Runs of consecutive (or equal) numbers, as (first, last)."""
    runs: list[tuple[int, int]] = []
    for number in sorted_numbers:
        if runs and number - runs[-1][1] <= 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


def _format_ranges(ranges: list[tuple[int, int]]) -> str:
    parts = [f"{first}-{last}" if first != last else f"{first}" for first, last in ranges[:SHOWN_RANGES]]
    return ", ".join(parts) + (" ..." if len(ranges) > SHOWN_RANGES else "")
