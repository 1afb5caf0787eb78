"""Nothing queued is lost when the process ends gracefully: normal exit, sys.exit, SIGTERM, gunicorn stop.

Each case runs a real child process, then counts every record in the files it left behind (RELIABILITY.md E1:
the stdlib QueueListener loses the whole queue in each of these cases).
"""

from __future__ import annotations

import signal
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.procs import (
    assert_streams_complete,
    expected_keys_by_stream,
    finish,
    gunicorn,
    read_written,
    record_key,
    run_scenario,
    start_scenario,
)

BURST = 20_000
# Queues big enough that nothing is dropped, and time enough to drain them at exit on two busy cores: these
# tests are about exit, not overflow or the shutdown deadline.
ROOMY = {"QUEUE_SIZE": 100_000, "SINK_QUEUE_SIZE": 100_000, "SHUTDOWN_TIMEOUT": 40}


@pytest.mark.parametrize(
    ("how", "returncode"),
    [("normal", 0), ("sysexit", 3), ("sigterm", 128 + signal.SIGTERM)],
)
def test_plain_process_exit_loses_nothing(tmp_path: Path, how: str, returncode: int) -> None:
    finished = finish(
        start_scenario("burst", tmp_path, {"count": BURST, "exit": how}, HANDLE_SIGTERM=True, **ROOMY)
    )

    assert finished.returncode == returncode, finished.stderr
    written = read_written(tmp_path)
    assert_streams_complete(written)
    [stream] = written.report.streams.values()
    assert written.origins() == {"burst": BURST}
    assert sorted(record_key(r) for r in written.marked()) == [("burst", i) for i in range(BURST)]
    # PIPELINE_STARTED, the burst, PIPELINE_STOPPED: seq 1..BURST+2, nothing else.
    assert (stream.count, stream.max_seq, stream.declared_drops) == (BURST + 2, BURST + 2, 0)
    assert finished.stderr == ""


@pytest.mark.parametrize("how", ["normal", "sysexit"])
def test_a_few_records_and_an_immediate_exit_lose_nothing(tmp_path: Path, how: str) -> None:
    """A process that emits a few records and exits before the worker ever woke: the exit delivers them.

    A long ``FLUSH_INTERVAL`` keeps the worker asleep until the exit wakes it, so that the first batch, and
    the start of the sink threads, happen while the interpreter is shutting down.
    """
    args = {"count": 3, "exit": how}
    finished = finish(start_scenario("burst", tmp_path, args, FLUSH_INTERVAL=5, **ROOMY))

    assert finished.returncode == (3 if how == "sysexit" else 0), finished.stderr
    written = read_written(tmp_path)
    assert_streams_complete(written)
    assert sorted(record_key(r) for r in written.marked()) == [("burst", i) for i in range(3)]
    [stream] = written.report.streams.values()
    assert (stream.count, stream.max_seq) == (5, 5)  # PIPELINE_STARTED, 3 records, PIPELINE_STOPPED
    assert finished.stderr == ""


def test_sigterm_from_outside_while_idle(tmp_path: Path) -> None:
    process = start_scenario(
        "burst", tmp_path, {"count": 5_000, "exit": "sigterm-while-sleeping", "via": "log"},
        HANDLE_SIGTERM=True, **ROOMY,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline() == "READY\n"
    process.send_signal(signal.SIGTERM)
    finished = finish(process)

    assert finished.returncode == 128 + signal.SIGTERM, finished.stderr
    written = read_written(tmp_path)
    assert_streams_complete(written)
    assert sorted(record_key(r) for r in written.marked()) == [("burst", i) for i in range(5_000)]
    assert {r["level"] for r in written.marked()} == {"INFO"}  # they came through logging, into app.log
    assert len((tmp_path / "app.log").read_bytes().splitlines()) == 5_000


@pytest.mark.parametrize(
    ("exit", "sink", "returncode"),
    [
        ("sysexit", "sigterm_in_drain_sink", 3),
        ("sigterm", "sigterm_in_drain_sink", 128 + signal.SIGTERM),  # a second SIGTERM
        ("sysexit", "sigint_in_drain_sink", 3),
        ("sigterm", "sigint_in_drain_sink", 128 + signal.SIGTERM),
    ],
)
def test_a_signal_during_the_exit_drain_does_not_cut_it_short(
    tmp_path: Path, exit: str, sink: str, returncode: int
) -> None:
    # The sink sends SIGTERM (or SIGINT) to its own process once the drain at exit has begun, the exit itself
    # started by sys.exit or by a first SIGTERM; the signal must neither raise in the middle of that drain (it
    # would stop it with records still queued) nor end the process by its default action.
    process = start_scenario(
        "burst", tmp_path, {"count": 20_000, "exit": exit},
        HANDLE_SIGTERM=True, HOOKS_MODULES=[f"tests.proc.{sink}"], BATCH_SIZE=256, **ROOMY,
    )  # fmt: skip
    finished = finish(process)

    assert finished.returncode == returncode, finished.stderr
    written = read_written(tmp_path)
    assert_streams_complete(written)
    assert sorted(record_key(r) for r in written.marked()) == [("burst", i) for i in range(20_000)]
    assert written.events("PIPELINE_STOPPED")
    assert finished.stderr == ""


REQUESTS = 40
PER_REQUEST = 250


def _hit(url: str, prefix: str) -> list[dict]:
    def one(number: int) -> dict:
        response = requests.get(
            f"{url}/emit", params={"origin": f"{prefix}{number}", "n": PER_REQUEST}, timeout=30
        )
        response.raise_for_status()
        return response.json()

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(REQUESTS)))


@pytest.mark.parametrize(
    "worker_args", [("-k", "sync", "-w", "2"), ("-k", "gthread", "-w", "2", "--threads", "4")]
)
def test_gunicorn_sigterm_loses_nothing(tmp_path: Path, worker_args: tuple[str, ...]) -> None:
    with gunicorn(tmp_path, *worker_args, **ROOMY) as server:
        answers = _hit(server.url, "req")
        finished = server.stop(signal.SIGTERM)

    assert finished.returncode == 0, finished.stderr
    written = read_written(tmp_path)
    assert_streams_complete(written)
    expected = expected_keys_by_stream(answers)
    for stream_id, keys in expected.items():
        assert sorted(record_key(r) for r in written.marked(stream_id)) == keys
    # Every stream in the files is a worker that answered, and each holds its records and its two events.
    assert set(written.by_stream) == set(expected)
    for stream_id, keys in expected.items():
        assert len(written.by_stream[stream_id]) == len(keys) + 2
    assert "activity_audit:" not in finished.stderr


def test_records_submitted_after_the_drain_are_written_at_once(tmp_path: Path) -> None:
    finished = run_scenario("after_the_drain", tmp_path, {"before": 300, "after": 40, "thread": 25}, **ROOMY)

    assert finished.returncode == 0, finished.stderr
    assert finished.result["flushed"] is True
    written = read_written(tmp_path)
    assert_streams_complete(written)
    assert written.origins() == {"before": 300, "after": 40, "thread": 25}
    [stopped] = written.events("PIPELINE_STOPPED")
    late = [r for r in written.marked() if r["origin"] != "before"]
    assert all(r["seq"] > stopped["seq"] for r in late)  # after the stop, in order, none missing
    assert finished.result["stats"]["sinks"]["activity_audit.plugins.file_sink"]["lost"] == 0
    assert finished.stderr == ""


def test_a_record_submitted_while_the_exit_drain_runs_is_written(tmp_path: Path) -> None:
    finished = run_scenario("submitted_during_the_drain", tmp_path, {"before": 50}, **ROOMY)

    assert finished.returncode == 0, finished.stderr
    assert finished.result == {"clean": True, "queued": 0}
    written = read_written(tmp_path)
    assert_streams_complete(written)  # no seq left in a queue nobody reads any more
    assert written.origins() == {"before": 50, "racer": 1}


class InterruptedAppend(deque):  # type: ignore[type-arg]
    """A queue whose first ``append`` raises: what a SIGTERM handler raising ``SystemExit`` between the
    moment a seq is spent and the moment the record is queued looks like to the pipeline."""

    armed = True

    def append(self, item: object) -> None:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        super().append(item)


def test_an_interrupt_after_a_seq_was_spent_declares_it_dropped(audit_records) -> None:
    from activity_audit.dispatch import pipeline
    from activity_audit.records import CHANNEL_AUDIT, PIPELINE_LOGGER, new_record

    assert pipeline.flush(10)
    pipeline._queue = InterruptedAppend()  # the worker takes the queue anew at each drain
    with pytest.raises(KeyboardInterrupt):
        pipeline.submit(CHANNEL_AUDIT, new_record("AUDIT", "tests.interrupt", "never queued"))
    pipeline.submit(CHANNEL_AUDIT, new_record("AUDIT", "tests.interrupt", "queued after"))
    assert pipeline.flush(10)
    pipeline._check_drops()  # the worker does this every REPORT_INTERVAL; now, for the test
    assert pipeline.flush(10)

    [after] = audit_records.of("tests.interrupt")
    assert after["message"] == "queued after"
    seq = after["seq"] - 1  # spent on the record that was interrupted
    [declared] = audit_records.of(PIPELINE_LOGGER, event_type="RECORDS_DROPPED")
    assert (declared["count"], declared["first_seq"], declared["last_seq"]) == (1, seq, seq)
    assert declared["message"] == "1 audit records dropped: interrupted while being queued"
    assert [r["message"] for r in audit_records.of("tests.interrupt")] == ["queued after"]
