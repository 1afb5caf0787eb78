"""Prove from the files alone that nothing was lost or repeated: every stream's ``seq`` must run 1, 2, 3 ...

Records of one stream may be spread over several files (``audit.log``, ``api.log``, ``app.log``) and may
appear out of order (threads); the check is per stream over all the files given. A stream that ends
without a ``PIPELINE_STOPPED`` record was cut short (killed, or still running), which the report says too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson


@dataclass
class StreamReport:
    stream_id: str
    count: int = 0
    max_seq: int = 0
    missing: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    stopped: bool = False
    declared_drops: int = 0


@dataclass
class VerifyReport:
    streams: dict[str, StreamReport]
    bad_lines: int

    @property
    def ok(self) -> bool:
        return self.bad_lines == 0 and all(not s.missing and not s.duplicates for s in self.streams.values())

    def lines(self) -> list[str]:
        out = []
        for stream in self.streams.values():
            state = "stopped" if stream.stopped else "open (still running, or killed)"
            out.append(
                f"stream {stream.stream_id}: {stream.count} records, seq 1..{stream.max_seq}, "
                f"{len(stream.missing)} missing, {len(stream.duplicates)} repeated, "
                f"{stream.declared_drops} declared dropped, {state}"
            )
            if stream.missing:
                out.append(f"  missing seq: {_ranges(stream.missing)}")
            if stream.duplicates:
                out.append(f"  repeated seq: {_ranges(stream.duplicates)}")
        out.append(f"unreadable lines: {self.bad_lines}")
        out.append("OK" if self.ok else "FAILED")
        return out


def verify_lines(lines: Iterable[bytes]) -> VerifyReport:
    seen: dict[str, set[int]] = {}
    reports: dict[str, StreamReport] = {}
    bad = 0
    for raw in lines:
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
            stream_id, seq = record["stream_id"], int(record["seq"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1
            continue
        report = reports.setdefault(stream_id, StreamReport(stream_id))
        numbers = seen.setdefault(stream_id, set())
        if seq in numbers:
            report.duplicates.append(seq)
        numbers.add(seq)
        report.count += 1
        report.max_seq = max(report.max_seq, seq)
        if record.get("event_type") == "PIPELINE_STOPPED":
            report.stopped = True
        if record.get("event_type") == "RECORDS_DROPPED":
            report.declared_drops += int(record.get("count", 0))
    for stream_id, report in reports.items():
        numbers = seen[stream_id]
        report.missing = [n for n in range(1, report.max_seq + 1) if n not in numbers]
    return VerifyReport(reports, bad)


def verify_files(paths: Iterable[str]) -> VerifyReport:
    def lines() -> Iterable[bytes]:
        for path in paths:
            with open(path, "rb") as handle:
                yield from handle

    return verify_lines(lines())


def _ranges(numbers: list[int]) -> str:
    parts, start, previous = [], None, None
    for number in sorted(numbers):
        if start is None:
            start = previous = number
        elif previous is not None and number == previous + 1:
            previous = number
        else:
            parts.append(f"{start}-{previous}" if start != previous else f"{start}")
            start = previous = number
    if start is not None:
        parts.append(f"{start}-{previous}" if start != previous else f"{start}")
    return ", ".join(parts[:50]) + (" ..." if len(parts) > 50 else "")
