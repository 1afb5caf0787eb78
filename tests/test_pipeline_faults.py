"""A sink that raises on every batch, or never returns: the worker survives, the file sink still gets every
record, and the loss is counted exactly and reported once per interval with the plugin's name.

RELIABILITY.md E4: with the stdlib QueueListener a raising handler kills the listener thread silently.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.procs import assert_streams_complete, read_written, run_scenario

PIPELINE = "activity_audit.pipeline"
QUIET = {"REPORT_INTERVAL": 3600}  # one report at once, the rest summed until shutdown


def _problem_records(written, kind: str, source: str) -> list[dict]:
    return [r for r in written.events(kind) if r["source"] == source]


def test_raising_sink(tmp_path: Path) -> None:
    name = "tests.proc.raising_sink"
    batches, per_batch = 5, 200
    finished = run_scenario(
        "faulty_sink", tmp_path, {"batches": batches, "per_batch": per_batch}, HOOKS_MODULES=[name], **QUIET
    )

    assert finished.returncode == 0, finished.stderr
    result = finished.result
    assert result["worker_alive"]
    written = read_written(tmp_path)
    assert_streams_complete(written)
    origins = {f"batch-{b}": per_batch for b in range(batches)} | {"after": per_batch}
    assert written.origins() == origins  # the file sink got every record, "after" ones included
    stats = result["stats"]["sinks"][name]
    # The broken sink was offered exactly what the file sink wrote, and lost all of it.
    assert (stats["delivered"], stats["lost"], stats["backlog"]) == (0, len(written.records), 0)

    # stderr: the first failure at once, the sum at shutdown, and the last batch after the trail closed.
    reports = finished.reports("SINK_FAILED", name)
    assert len(reports) == 3
    assert sum(lost for _, lost in reports) == stats["lost"]
    assert sum(occurrences for occurrences, _ in reports) == stats["failures"]
    assert finished.stderr.count("activity_audit:") == 3
    # The trail holds the reports made while it was open, with the same numbers.
    in_trail = _problem_records(written, "SINK_FAILED", name)
    assert [(r["occurrences"], r["lost"]) for r in in_trail] == reports[:2]
    first = in_trail[0]
    assert {k: v for k, v in first.items() if k not in ("timestamp", "event_id", "stream_id", "seq")} == {
        "level": "ERROR",
        "name": PIPELINE,
        "message": f"sink failed: {name}",
        "event_type": "SINK_FAILED",
        "source": name,
        "occurrences": 1,
        "lost": reports[0][1],
        "lost_in_stream": reports[0][1],
        "error": f"RuntimeError: broken sink refused {reports[0][1]} records",
    }
    assert in_trail[1]["lost_in_stream"] == reports[0][1] + reports[1][1]


def test_hanging_sink(tmp_path: Path) -> None:
    name = "tests.proc.hanging_sink"
    batches, per_batch, capacity = 5, 1_000, 1_000
    finished = run_scenario(
        "faulty_sink", tmp_path, {"batches": batches, "per_batch": per_batch, "flush_timeout": 0.3},
        HOOKS_MODULES=[name], SINK_QUEUE_SIZE=capacity, SHUTDOWN_TIMEOUT=2, **QUIET,
    )  # fmt: skip

    assert finished.returncode == 0, finished.stderr
    result = finished.result
    assert result["worker_alive"]
    written = read_written(tmp_path)
    assert_streams_complete(written)
    assert written.origins() == {f"batch-{b}": per_batch for b in range(batches)} | {"after": per_batch}
    stats = result["stats"]["sinks"][name]
    # Held: one batch in the sink's hands plus a bounded backlog; everything else counted as lost.
    assert stats["delivered"] == 0
    assert 0 < stats["backlog"] <= capacity
    assert stats["lost"] + stats["backlog"] == len(written.records)
    assert stats["failures"] == 0

    reports = finished.reports("SINK_BACKLOG_FULL", name)
    assert len(reports) == 3
    assert sum(lost for _, lost in reports) == stats["lost"]
    in_trail = _problem_records(written, "SINK_BACKLOG_FULL", name)
    assert [(r["occurrences"], r["lost"]) for r in in_trail] == reports[:2]
    assert f"sink {name} did not finish in time; {stats['backlog']} records not delivered" in finished.stderr
    assert finished.stderr.count("activity_audit:") == 4


def test_records_after_the_drain_skip_a_sink_that_hung_through_it(tmp_path: Path) -> None:
    name = "tests.proc.hanging_sink"
    finished = run_scenario(
        "hung_sink_then_late_records", tmp_path, {"before": 20, "after": 3}, timeout=20.0,
        HOOKS_MODULES=[name], SHUTDOWN_TIMEOUT=1, **QUIET,
    )  # fmt: skip

    assert finished.returncode == 0, finished.stderr  # it ended: the hung sink was not called again
    assert finished.result["clean"] is False
    written = read_written(tmp_path)
    assert written.origins() == {"before": 20, "after": 3}  # the file sink got the late records at once
    stats = finished.result["stats"]["sinks"][name]
    assert stats["lost"] == 3 and stats["delivered"] == 0
    assert finished.reports("SINK_FAILED", name) == [(1, 1), (1, 1), (1, 1)]
    assert "hung at shutdown; not called again" in finished.stderr
