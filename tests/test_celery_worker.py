"""A real Celery worker (prefork pool, Redis broker): its pool processes end with ``os._exit``, after Celery's
``worker_process_shutdown`` signal. Every record a task emitted must be written, whether the process was
recycled (``--max-tasks-per-child``) or stopped by the worker's warm shutdown (SIGTERM).

The worker's pipeline only wakes every 30 s (``FLUSH_INTERVAL``), so what gets written before the processes
end is what the drain at their exit wrote.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.procs import ROOT, assert_streams_complete, child_env, read_written, record_key

celery = pytest.importorskip("celery")
BROKER = "redis://127.0.0.1:6379/13"
TASKS, PER_TASK = 12, 150


def test_records_of_celery_tasks_survive_recycled_and_stopped_pool_processes(tmp_path: Path) -> None:
    queue = f"audit-{uuid.uuid4().hex[:12]}"
    env = child_env(tmp_path, FLUSH_INTERVAL=30, SHUTDOWN_TIMEOUT=20)
    env["AUDIT_CELERY_BROKER"] = BROKER
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.proc.celery_app", "worker", "--pool=prefork",
         "--concurrency=2", "--max-tasks-per-child=3", f"--queues={queue}", "--without-heartbeat",
         "--without-gossip", "--without-mingle", "--loglevel=WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = celery.Celery("audit_client", broker=BROKER, backend=BROKER)
    try:
        results = [
            client.send_task("tests.emit_records", args=[f"task-{n}", PER_TASK], queue=queue)
            for n in range(TASKS)
        ]
        accepted = [result.get(timeout=60) for result in results]
    finally:
        stderr = stop(worker)  # warm shutdown: the pool processes end, then the worker

    assert accepted == [PER_TASK] * TASKS
    assert worker.returncode == 0, stderr
    written = read_written(tmp_path)
    assert_streams_complete(written)
    assert sorted(record_key(r) for r in written.marked()) == sorted(
        (f"task-{n}", i) for n in range(TASKS) for i in range(PER_TASK)
    )
    # 12 tasks, 3 per process: at least four pool processes came and went, each with a stream of its own
    task_streams = {r["stream_id"] for r in written.marked()}
    assert len(task_streams) >= 4
    assert "activity_audit" not in stderr, stderr


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_records_of_tasks_run_in_the_worker_process_survive_a_restart_by_sighup(
    tmp_path: Path, pool: str
) -> None:
    # SIGHUP restarts the worker: Celery re-executes the process from an atexit handler that runs before the
    # package's drain would; the drain on worker_shutdown comes first.
    queue = f"audit-{uuid.uuid4().hex[:12]}"
    env = child_env(tmp_path, FLUSH_INTERVAL=30, SHUTDOWN_TIMEOUT=20)
    env["AUDIT_CELERY_BROKER"] = BROKER
    # The console script: Celery re-executes its own argv, and "python -m celery" cannot be re-executed.
    command = [
        str(Path(sys.executable).with_name("celery")), "-A", "tests.proc.celery_app", "worker",
        f"--pool={pool}", "--concurrency=2", f"--queues={queue}", "--without-heartbeat", "--without-gossip",
        "--without-mingle", "--loglevel=WARNING",
    ]  # fmt: skip
    worker = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    client = celery.Celery("audit_client", broker=BROKER, backend=BROKER)
    try:
        first = [
            client.send_task("tests.emit_records", args=[f"before-{n}", PER_TASK], queue=queue)
            for n in range(4)
        ]
        accepted = [result.get(timeout=60) for result in first]
        worker.send_signal(signal.SIGHUP)  # the same process, re-executed: it takes the next tasks
        second = [
            client.send_task("tests.emit_records", args=[f"after-{n}", PER_TASK], queue=queue)
            for n in range(2)
        ]
        accepted += [result.get(timeout=60) for result in second]
    finally:
        stderr = stop(worker)

    assert accepted == [PER_TASK] * 6
    written = read_written(tmp_path)
    assert_streams_complete(written)
    origins = [f"before-{n}" for n in range(4)] + [f"after-{n}" for n in range(2)]
    assert sorted(record_key(r) for r in written.marked()) == sorted(
        (o, i) for o in origins for i in range(PER_TASK)
    )
    assert len(written.report.streams) == 2  # before and after the restart
    assert "activity_audit" not in stderr, stderr


def stop(worker: subprocess.Popen[str]) -> str:
    """Warm-shut ``worker`` down with SIGTERM; its stderr. Fails the test if it does not stop in time."""
    worker.send_signal(signal.SIGTERM)
    try:
        return worker.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        worker.kill()
        stderr = worker.communicate()[1]
        raise AssertionError(f"the worker did not stop\n{stderr}") from None
