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
``PIPELINE_STOPPED``, reaches a file read later. And a plain file whose end is read inside a line is read no
further the first time: that line is judged on the second reading. Whole by then, it is read like any other;
still unfinished while its file grows, it is being written and is left unchecked (the report counts it); still
unfinished in a file that has not grown for :data:`SETTLE_SECONDS` since the first reading, it is torn and
counts as unreadable. A line torn in the middle of a file (followed by others) is unreadable at once.

Memory grows with the number of records read, never with the values of ``seq``.
"""

from __future__ import annotations

import bisect
import enum
import errno
import gzip
import os
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import orjson

# How many ranges of missing or repeated seq a report line shows.
SHOWN_RANGES = 50
OPEN_ADVICE = " (if their processes have stopped, their ends are missing: --require-closed fails on this)"
# Seconds from the first reading during which an unfinished last line, in a file that does not grow, may still
# be finished: a large write reaches the file in steps, with pauses between them.
SETTLE_SECONDS = 1.0
_SETTLE_POLL = 0.05


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
    unfinished_lines: int = 0  # last lines still being written when read: not checked

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
        if self.unfinished_lines:
            out.append(f"lines still being written, not checked: {self.unfinished_lines}")
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
        record = _record_of(raw)
        if record is None:
            bad += 1
            continue
        stream_id, seq = record["stream_id"], record["seq"]
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

    A file whose name ends in ``.gz`` (rotated and compressed by logrotate) is read through gzip. The files
    are read twice when a seq is missing or a line is unfinished (see the module's docstring).
    """

    paths = list(paths)
    unfinished: list[_Unfinished] = []
    report = verify_lines(_set_aside(_lines_of(paths), unfinished), require_closed=require_closed)
    _read_again(report, paths, unfinished)
    return report


@dataclass(frozen=True)
class _Unfinished:
    """The last line of a plain file, read without its newline: still being written, or torn."""

    path: str
    offset: int  # where the line starts
    size: int  # of the file, as far as it was read
    inode: tuple[int, int]  # (st_dev, st_ino) of the file read
    seen_at: float  # time.monotonic() of the first reading


def _lines_of(paths: list[str]) -> Iterator[bytes | _Unfinished]:
    """Every line of ``paths`` in turn (``.gz`` files decompressed). A plain file whose end is read inside a
    line is read no further (the rest of that line may be on its way): the line is given as
    :class:`_Unfinished` instead, unless it is blank. Raises :class:`OSError` naming the file (``filename``)
    when one cannot be read to its end: missing, unreadable, or a ``.gz`` cut short or corrupt (which ``gzip``
    reports as ``EOFError`` or ``zlib.error``)."""
    for path in paths:
        try:
            if str(path).endswith(".gz"):
                with gzip.open(path, "rb") as handle:
                    yield from handle
            else:
                yield from _plain_lines(path)
        except (OSError, EOFError, zlib.error) as exc:
            if isinstance(exc, OSError) and exc.filename is not None:
                raise
            raise OSError(errno.EIO, str(exc) or type(exc).__name__, str(path)) from exc


def _plain_lines(path: str) -> Iterator[bytes | _Unfinished]:
    """The whole lines of the file at ``path``, then its unfinished last line if any (see ``_lines_of``)."""
    with open(path, "rb") as handle:
        offset = 0
        for line in handle:
            if not line.endswith(b"\n"):
                if line.strip():
                    stat = os.fstat(handle.fileno())
                    inode = (stat.st_dev, stat.st_ino)
                    yield _Unfinished(str(path), offset, offset + len(line), inode, time.monotonic())
                return  # read on, the rest of the line, written meanwhile, would pass for a line of its own
            offset += len(line)
            yield line


def _set_aside(items: Iterable[bytes | _Unfinished], unfinished: list[_Unfinished]) -> Iterator[bytes]:
    """The lines of ``items``; each unfinished one is appended to ``unfinished`` instead."""
    for item in items:
        if isinstance(item, _Unfinished):
            unfinished.append(item)
        else:
            yield item


def _read_again(report: VerifyReport, paths: list[str], unfinished: list[_Unfinished]) -> None:
    """The second reading: look again for every stream's missing seqs, and judge the unfinished lines.

    A process still running writes while the files are read one after another: a record may reach a file
    already read, after a later one of the same stream (its ``PIPELINE_STOPPED`` too) was found in the next
    file. Such a record is there on the second reading; a seq missing from both was really lost (or is still
    on its way, at the very end). An unfinished line is judged by :func:`_settled_line`: whole, like any line
    (its seq may fill a gap); still being written, counted apart; torn, or its file replaced, unreadable.
    """
    search = _GapSearch(report)
    if search.gaps:
        for item in _lines_of(paths):
            record = None if isinstance(item, _Unfinished) else _record_of(item)
            if record is not None:
                search.look_at(record)
    for tail in unfinished:
        line = _settled_line(tail)
        if line is _Unsettled.WRITING:
            report.unfinished_lines += 1
            continue
        record = None if line is _Unsettled.TORN else _record_of(line)
        if record is None:
            report.bad_lines += 1
        else:
            search.look_at(record)
    search.apply()


class _Unsettled(enum.Enum):
    """What an unfinished line is on the second reading, when it is not whole."""

    WRITING = "still unfinished, and its file has grown: being written"
    TORN = "still unfinished in a file that no longer grows, or its file was replaced"


def _settled_line(tail: _Unfinished) -> bytes | _Unsettled:
    """The line ``tail`` marks, read again: whole (with its newline), or why not. Torn means no growth of the
    file for :data:`SETTLE_SECONDS` since the first reading. Raises :class:`OSError` naming the file."""
    while True:
        now = _line_now(tail)
        if now is None:
            return _Unsettled.TORN
        line, size = now
        if line.endswith(b"\n"):
            return line
        if size > tail.size:
            return _Unsettled.WRITING
        remaining = tail.seen_at + SETTLE_SECONDS - time.monotonic()
        if remaining <= 0:
            return _Unsettled.TORN
        time.sleep(min(remaining, _SETTLE_POLL))


def _line_now(tail: _Unfinished) -> tuple[bytes, int] | None:
    """The line at ``tail``'s offset as the file holds it now, and the file's size; None when the file at
    ``tail``'s path is another one. Raises :class:`OSError` naming the file."""
    try:
        with open(tail.path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            if (stat.st_dev, stat.st_ino) != tail.inode:
                return None
            handle.seek(tail.offset)
            return handle.readline(), stat.st_size
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), tail.path) from exc


class _GapSearch:
    """Collects, from records read a second time, the seqs each stream of ``report`` misses."""

    def __init__(self, report: VerifyReport) -> None:
        self._report = report
        self.gaps = {
            sid: stream.missing_ranges for sid, stream in report.streams.items() if stream.missing_ranges
        }
        self._starts = {sid: [first for first, _ in ranges] for sid, ranges in self.gaps.items()}
        self._found: dict[str, set[int]] = {sid: set() for sid in self.gaps}

    def look_at(self, record: dict[str, Any]) -> None:
        """Note the seq of ``record`` (as :func:`_record_of` gives it) when its stream misses it."""
        stream_id, seq = record["stream_id"], record["seq"]
        ranges = self.gaps.get(stream_id)
        if ranges is None:
            return
        index = bisect.bisect_right(self._starts[stream_id], seq) - 1
        if index >= 0 and seq <= ranges[index][1]:
            self._found[stream_id].add(seq)

    def apply(self) -> None:
        """Take the seqs found out of their streams' missing ranges, and count their records."""
        for stream_id, seqs in self._found.items():
            if seqs:
                stream = self._report.streams[stream_id]
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


def _record_of(raw: bytes) -> dict[str, Any] | None:
    """The record on line ``raw``, or None when the line is unreadable: not a JSON object whose ``stream_id``
    is a non-empty string and whose ``seq`` is a whole number of 1 or more."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    stream_id, seq = record.get("stream_id"), record.get("seq")
    if not isinstance(stream_id, str) or not stream_id or not _is_count(seq) or seq < 1:
        return None
    return record


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
