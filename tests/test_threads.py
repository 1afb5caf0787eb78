"""The audit threads never take the process's signals: those go to the application's threads."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from activity_audit.dispatch import pipeline
from activity_audit.emit import emit_crud
from activity_audit.records import new_record
from activity_audit.testing import CapturedRecords
from activity_audit.threads import start_quietly


def blocked_signals(thread: threading.Thread) -> set[int]:
    """The signals ``thread`` blocks, read from the kernel's view of it."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    mask = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
    return {number for number in range(1, 65) if mask & (1 << (number - 1))}


def test_a_quietly_started_thread_blocks_what_comes_from_outside_and_nothing_else() -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(10.0,), daemon=True)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    start_quietly(thread)
    try:
        blocked = blocked_signals(thread)
        outside = {
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGHUP,
            signal.SIGQUIT,
            signal.SIGUSR1,
            signal.SIGCHLD,
        }
        assert outside <= blocked
        assert not {signal.SIGSEGV, signal.SIGPIPE, signal.SIGBUS} & blocked
        assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before  # the starting thread is unchanged
    finally:
        release.set()
        thread.join(5.0)


def test_the_pipelines_threads_block_sigterm(audit_records: CapturedRecords) -> None:
    emit_crud(new_record("AUDIT", "tests.threads", "start the threads"))
    audit_records.flush()
    names = ("activity-audit-worker", "activity-audit-sink:")
    threads = [t for t in threading.enumerate() if t.name.startswith(names)]
    assert {t.name.split(":")[0] for t in threads} == {"activity-audit-worker", "activity-audit-sink"}
    assert all(signal.SIGTERM in blocked_signals(t) for t in threads)
    assert signal.SIGTERM not in blocked_signals(threading.main_thread())
    assert pipeline.stats()["dropped"] == 0
