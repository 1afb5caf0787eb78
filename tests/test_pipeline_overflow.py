"""A stalled pipeline and a burst: memory stays bounded; every record is either written or declared dropped.

RELIABILITY.md E3: the stdlib's unbounded queue grows by about 1 KB per record with no ceiling; a bounded one
drops with no counter. Here the queue holds at most QUEUE_SIZE records and each sink's backlog at most
SINK_QUEUE_SIZE records (and SINK_QUEUE_BYTES bytes); every drop spends a seq and is declared in the trail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.procs import read_written, run_scenario

STALLS = "tests.proc.stalls"
QUEUE_SIZE, SINK_QUEUE_SIZE = 5_000, 5_000
# Budget per record held (the record dict, its nested dicts, its encoded line, allocator slack), and room
# for what the interpreter and Django allocate anyway. Unbounded, 1,000,000 records would take over 1 GB.
BYTES_PER_HELD_RECORD = 4 * 1024
BASE_SLACK = 48 * 1024 * 1024


@pytest.mark.parametrize(
    ("policy", "total", "sink_bytes"),
    [("drop", 1_000_000, 64 << 20), ("block", 200_000, 64 << 20), ("drop", 200_000, 256 * 1024)],
    ids=["drop-1M", "block-200k", "drop-200k-byte-bound"],
)
def test_burst_into_stalled_pipeline(tmp_path: Path, policy: str, total: int, sink_bytes: int) -> None:
    finished = run_scenario(
        "overflow", tmp_path, {"total": total, "drops_while_stalled": 5},
        timeout=58,
        HOOKS_MODULES=[STALLS],
        DISABLED_PLUGINS=["activity_audit.plugins.redaction"],  # not measured here, it would only slow it
        QUEUE_SIZE=QUEUE_SIZE, SINK_QUEUE_SIZE=SINK_QUEUE_SIZE, SINK_QUEUE_BYTES=sink_bytes,
        WHEN_FULL=policy, BLOCK_TIMEOUT=0.05, REPORT_INTERVAL=3600,
    )  # fmt: skip

    assert finished.returncode == 0, finished.stderr
    result = finished.result
    stats = result["stats"]

    # Memory: bounded by what the queue and the backlogs may hold, whatever the burst.
    growth = (result["peak_kib"] - result["before_kib"]) * 1024
    assert growth < (QUEUE_SIZE + SINK_QUEUE_SIZE) * BYTES_PER_HELD_RECORD + BASE_SLACK
    held = result["at_peak"]["sinks"][STALLS]
    assert held["backlog"] <= SINK_QUEUE_SIZE
    assert held["backlog_bytes"] <= max(sink_bytes, 512 * 1024)  # one batch may exceed a tiny byte bound

    written = read_written(tmp_path)
    [stream] = written.report.streams.values()
    assert written.report.bad_lines == 0 and stream.duplicates == [] and stream.stopped
    # Every record of the burst is either in the file or declared dropped, and the gaps are exactly the drops.
    declared = written.events("RECORDS_DROPPED")
    dropped = sum(r["count"] for r in declared)
    assert dropped == stats["dropped"] == stream.missing_count >= 5
    assert len(written.marked()) == result["accepted"] == total - dropped
    ranges = [(r["first_seq"], r["last_seq"]) for r in declared]
    assert all(any(first <= seq <= last for first, last in ranges) for seq in stream.missing_seqs())
    assert {r["policy"] for r in declared} == {policy}
    [stopped] = written.events("PIPELINE_STOPPED")
    assert stopped["dropped"] == dropped
    # stderr: rate-limited (first at once, the rest summed), and adding up to the same count.
    drop_reports = finished.reports("RECORDS_DROPPED", "queue")
    assert 1 <= len(drop_reports) <= 3
    assert sum(lost for _, lost in drop_reports) == dropped

    # The stalled sink: what it did not take is counted, to the record, and reported.
    stalled = stats["sinks"][STALLS]
    assert stalled["delivered"] + stalled["lost"] == len(written.records)
    assert stalled["backlog"] == stalled["failures"] == 0
    # (It loses nothing if the burst ends before it counts as stalled: the worker waits for it until then.)
    backlog_reports = finished.reports("SINK_BACKLOG_FULL", STALLS)
    assert len(backlog_reports) <= 3 and bool(backlog_reports) == bool(stalled["lost"])
    assert sum(lost for _, lost in backlog_reports) == stalled["lost"]
    assert stats["sinks"]["activity_audit.plugins.file_sink"]["lost"] == 0
