"""fork() after records were queued: each process writes its own records exactly once, and no child hangs.

RELIABILITY.md E2a (the child's copy of the queue is never drained) and E2b (a child forked while another
thread holds the queue's lock hangs for good), with a plain ``os.fork()`` and with ``gunicorn --preload``.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.support.procs import (
    Finished,
    assert_streams_complete,
    expected_keys_by_stream,
    gunicorn,
    read_written,
    record_key,
    run_scenario,
)
from tests.test_pipeline_exit import ROOMY, _hit


def test_fork_after_emitting(tmp_path: Path) -> None:
    finished = run_scenario(
        "fork", tmp_path, {"parent_before": 3_000, "child": 2_000, "parent_after": 1_000}, **ROOMY
    )

    assert finished.returncode == 0, finished.stderr
    result = finished.result
    assert not result["hung"]
    written = read_written(tmp_path)
    assert_streams_complete(written)
    parent = result["parent_stream"]
    [child] = set(written.by_stream) - {parent}
    assert written.origins(parent) == {"parent-before": 3_000, "parent-after": 1_000}
    assert written.origins(child) == {"child": 2_000}
    assert sorted(record_key(r) for r in written.marked(child)) == [("child", i) for i in range(2_000)]
    # The child's stream starts afresh: its own PIPELINE_STARTED (with its pid) at seq 1, then its records.
    [started] = written.events("PIPELINE_STARTED", child)
    assert (started["seq"], started["pid"]) == (1, result["child_pid"])
    assert len(written.by_stream[child]) == 2_000 + 2
    assert len(written.by_stream[parent]) == 4_000 + 2
    assert finished.stderr == ""


def test_a_child_forked_by_a_thread_ends_when_that_thread_ends(tmp_path: Path) -> None:
    finished = run_scenario(
        "fork_from_a_thread", tmp_path, {"parent_before": 200, "child": 300, "parent_after": 100}, **ROOMY
    )

    assert finished.returncode == 0, finished.stderr
    assert finished.result["hung"] is False
    written = read_written(tmp_path)
    assert_streams_complete(written)
    assert written.origins() == {"parent-before": 200, "child": 300, "parent-after": 100}


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_children_write_everything_though_they_end_with_os_exit(
    tmp_path: Path, method: str
) -> None:
    args = {"parent_before": 500, "child": 1_000, "tasks": 6, "per_task": 300, "parent_after": 500}
    args["method"] = method
    finished = run_scenario("multiprocessing_children", tmp_path, args, **ROOMY)

    assert finished.returncode == 0, finished.stderr
    result = finished.result
    assert result["exitcodes"] == [0, 0]
    assert result["pool_accepted"] == 6 * 300
    written = read_written(tmp_path)
    assert_streams_complete(written)
    assert written.origins() == {
        "parent-before": 500,
        "process-0": 1_000,
        "process-1": 1_000,
        "pool": 6 * 300,
        "parent-after": 500,
    }
    for origin in ("process-0", "process-1"):
        [stream] = {r["stream_id"] for r in written.marked() if r["origin"] == origin}
        assert sorted(record_key(r) for r in written.marked(stream)) == [(origin, i) for i in range(1_000)]
    pool_streams = {r["stream_id"] for r in written.marked() if r["origin"] == "pool"}
    assert 1 <= len(pool_streams) <= 2  # each pool worker writes its own stream
    assert finished.stderr == ""


def test_a_pool_left_by_with_terminates_its_workers_and_loses_none_of_their_records(tmp_path: Path) -> None:
    # Pool.__exit__ calls terminate(): SIGTERM reaches workers while they end after their sentinel, often
    # inside multiprocessing's exit finalizers, where an exception would skip the drain.
    args = {"rounds": 24, "workers": 2, "tasks": 4, "per_task": 100, "parent_after": 10}
    finished = run_scenario("pool_terminated", tmp_path, args, **ROOMY)

    assert finished.returncode == 0, finished.stderr
    assert finished.result["pool_accepted"] == 24 * 4 * 100
    assert_wrote_exactly(
        tmp_path, finished, {**{f"pool-{n}": 4 * 100 for n in range(24)}, "parent-after": 10}
    )


def test_a_child_terminated_in_a_blocking_wait_ends_and_its_records_are_written(tmp_path: Path) -> None:
    # The main thread may be blocked in C, where a Python handler would run only when the wait ends (a Pool
    # worker waiting for a task that terminate() will never send): a watcher thread acts on SIGTERM instead.
    finished = run_scenario(
        "child_terminated_while_blocked", tmp_path, {"child": 500}, **ROOMY, FLUSH_INTERVAL=30
    )

    assert finished.returncode == 0, finished.stderr
    result = finished.result
    assert result["exitcode"] == 128 + signal.SIGTERM
    assert "activity-audit-sigterm" in result["threads"]
    assert_wrote_exactly(tmp_path, finished, {"child": 500})


def test_sigterm_inside_fork_ends_the_new_child_as_the_default_action_would(tmp_path: Path) -> None:
    finished = run_scenario("sigterm_inside_fork", tmp_path, {"count": 300, "in": "child"}, **ROOMY)

    assert finished.returncode == 0, finished.stderr
    assert finished.result["child_signal"] == signal.SIGTERM
    assert_wrote_exactly(tmp_path, finished, {"before": 300, "after": 1})


def test_sigterm_inside_fork_in_the_parent_is_acted_on_once_the_fork_returned(tmp_path: Path) -> None:
    args = {"count": 300, "in": "parent", "linger": 10}
    finished = run_scenario("sigterm_inside_fork", tmp_path, args, **ROOMY, FLUSH_INTERVAL=30)

    assert finished.returncode == 128 + signal.SIGTERM, finished.stderr
    assert "RESULT" not in finished.stdout  # it ended during the linger, not after it
    assert_wrote_exactly(tmp_path, finished, {"before": 300})


def test_a_sigterm_the_blocked_main_thread_cannot_handle_is_acted_on_by_the_watcher(tmp_path: Path) -> None:
    args = {"child": 300, "lost_race": True}
    finished = run_scenario("child_terminated_while_blocked", tmp_path, args, **ROOMY, FLUSH_INTERVAL=30)

    assert finished.returncode == 0, finished.stderr
    assert finished.result["exitcode"] == 128 + signal.SIGTERM  # not None: the child did not hang
    assert_wrote_exactly(tmp_path, finished, {"child": 300})


def test_a_childs_own_sigterm_handler_still_runs(tmp_path: Path) -> None:
    args = {"child": 200, "own_handler": True}
    finished = run_scenario("child_terminated_while_blocked", tmp_path, args, **ROOMY, FLUSH_INTERVAL=30)

    assert finished.returncode == 0, finished.stderr
    assert finished.result["exitcode"] == 7  # what the child's handler chose
    assert_wrote_exactly(tmp_path, finished, {"child": 200, "own-handler": 1})


def test_billiard_process_children_write_everything_though_they_end_with_os_exit(tmp_path: Path) -> None:
    pytest.importorskip("billiard")
    args = {"child": 700, "parent_after": 10}
    # The pipeline's timer never fires in time: only the drain as each child ends can write its records.
    finished = run_scenario("billiard_processes", tmp_path, args, **ROOMY, FLUSH_INTERVAL=30)

    assert finished.returncode == 0, finished.stderr
    assert finished.result["exitcodes"] == [0, 0]
    assert_wrote_exactly(tmp_path, finished, {"billiard-0": 700, "billiard-1": 700, "parent-after": 10})


def test_fork_while_other_threads_submit_never_hangs(tmp_path: Path) -> None:
    forks, child_records = 40, 5
    # The submitting threads are held back by the bounded queue ("block", long timeout: nothing dropped).
    finished = run_scenario(
        "fork_storm", tmp_path, {"forks": forks, "threads": 3, "child_records": child_records},
        timeout=55, WHEN_FULL="block", BLOCK_TIMEOUT=30,
    )  # fmt: skip

    assert finished.returncode == 0, finished.stderr
    result = finished.result
    assert result["failed"] == []  # every child exited 0 within its timeout: none hung, none crashed
    written = read_written(tmp_path)
    assert_streams_complete(written)
    parent = result["parent_stream"]
    children = set(written.by_stream) - {parent}
    assert len(children) == forks
    pids = {written.events("PIPELINE_STARTED", child)[0]["pid"] for child in children}
    assert pids == set(result["children"])
    for child in children:
        [origin] = written.origins(child)
        assert written.origins(child) == {origin: child_records}
        assert len(written.by_stream[child]) == child_records + 2
    expected_threads = {f"thread-{slot}": count for slot, count in result["emitted"].items()}
    assert written.origins(parent) == Counter(expected_threads)


def test_gunicorn_preload_each_process_writes_its_own(tmp_path: Path) -> None:
    boot = 500
    with gunicorn(tmp_path, "--preload", "-k", "sync", "-w", "3", boot_records=boot, **ROOMY) as server:
        master_pid = server.process.pid
        answers = _hit(server.url, "pre")
        finished = server.stop(signal.SIGTERM)

    assert finished.returncode == 0, finished.stderr
    written = read_written(tmp_path)
    assert_streams_complete(written)
    expected = expected_keys_by_stream(answers)
    [master] = [s for s in written.by_stream if written.events("PIPELINE_STARTED", s)[0]["pid"] == master_pid]
    # The master's records (emitted before the fork) are written once, by the master only.
    assert sorted(record_key(r) for r in written.marked(master)) == [
        (f"boot-{master_pid}", i) for i in range(boot)
    ]
    assert len(written.by_stream[master]) == boot + 2
    assert set(written.by_stream) == set(expected) | {master}
    for stream_id, keys in expected.items():
        assert sorted(record_key(r) for r in written.marked(stream_id)) == keys
        assert len(written.by_stream[stream_id]) == len(keys) + 2
    all_keys = [record_key(r) for r in written.marked()]
    assert len(all_keys) == len(set(all_keys)) == boot + sum(answer["count"] for answer in answers)


def assert_wrote_exactly(tmp_path: Path, finished: Finished, origins: dict[str, int]) -> None:
    """Every stream whole, exactly ``origins`` written, and nothing on stderr (no "Exception ignored")."""
    written = read_written(tmp_path)
    assert_streams_complete(written)
    assert written.origins() == origins
    assert finished.stderr == ""
