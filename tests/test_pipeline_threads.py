"""The pipeline's threads take none of the process's signals, so SIGTERM always reaches a thread that can act
on it (Python runs handlers on the main thread only). Runs in the test process, on its pipeline."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

import activity_audit
from activity_audit.emit import emit_crud
from activity_audit.records import new_record
from activity_audit.threads import start_thread

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread masks in /proc")


def blocked_signals(thread: threading.Thread) -> set[int]:
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    [mask] = [line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")]
    bits = int(mask, 16)
    return {number for number in range(1, 65) if bits & (1 << (number - 1))}


def test_the_worker_and_sink_threads_block_the_signals_a_process_is_stopped_with() -> None:
    assert emit_crud(new_record("AUDIT", "tests.threads", "wake the pipeline"))
    assert activity_audit.flush(5.0)

    audit_threads = [t for t in threading.enumerate() if t.name.startswith("activity-audit")]
    names = {t.name for t in audit_threads}
    assert "activity-audit-worker" in names
    assert "activity-audit-sink:activity_audit.plugins.file_sink" in names
    for thread in audit_threads:
        assert {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD} <= blocked_signals(thread)
    assert signal.SIGTERM not in blocked_signals(threading.main_thread())


def test_start_thread_leaves_the_starting_threads_mask_as_it_was() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    seen: list[set[int]] = []
    done = threading.Event()

    def body() -> None:
        seen.append({int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])})
        done.set()

    thread = start_thread(body, "activity-audit-test")
    assert done.wait(5.0)
    thread.join(5.0)

    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
    assert {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGALRM} <= seen[0]
    assert thread.daemon
