"""The package's background threads: marked as pipeline threads, and deaf to the process's signals.

A signal sent to a process (``kill``, a server's ``terminate()``) is delivered by the kernel to any one of its
threads that does not block it, and Python runs the handler only on the main thread, at its next bytecode.
If it lands on an audit thread while the main thread waits in C (a lock, a pipe, a semaphore), nothing wakes
the main thread: the handler waits as long as the wait does, which may be forever. So every thread started
here blocks the asynchronous signals a process is asked to stop or reload with, and the kernel hands them to
a thread that can act on them. The mask is set around ``start()`` (a new thread inherits its creator's), so
the new thread never runs a moment without it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

# Set on the pipeline's own threads: a record logged there (a sink's library logging its retries) must not
# re-enter the pipeline and feed itself.
pipeline_thread = threading.local()

# The logger (and its children) a sink's library logs to from threads the library starts itself, where no mark
# can be set (paramiko's transport thread: ``Transport.set_log_channel``). Records logged under it stay out of
# the pipeline too.
PIPELINE_WORK_LOGGER = "activity_audit.pipeline_work"


@contextlib.contextmanager
def pipeline_work() -> Iterator[None]:
    """Mark the calling thread as a pipeline thread for the block, then restore its mark.

    For the pipeline's work done on another thread than its own: a sink's start-up check on the thread that
    configures. Records its library logs meanwhile (boto3's requests, with their credentials) stay out of the
    pipeline, as they do on the sink's own thread.
    """
    previous = getattr(pipeline_thread, "active", False)
    pipeline_thread.active = True
    try:
        yield
    finally:
        pipeline_thread.active = previous


_ASYNCHRONOUS_SIGNALS = frozenset(
    getattr(signal, name)
    for name in (
        "SIGTERM",
        "SIGINT",
        "SIGHUP",
        "SIGQUIT",
        "SIGUSR1",
        "SIGUSR2",
        "SIGALRM",
        "SIGVTALRM",
        "SIGPROF",
        "SIGCHLD",
        "SIGWINCH",
        "SIGTTIN",
        "SIGTTOU",
    )
    if hasattr(signal, name)
)


def start_thread(target: Callable[[], object], name: str) -> threading.Thread:
    """Start a daemon thread running ``target`` with the signals above blocked; returns it.

    Raises :class:`RuntimeError` as :meth:`threading.Thread.start` does (an interpreter that is exiting).
    """
    thread = threading.Thread(target=target, name=name, daemon=True)
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no per-thread masks
        thread.start()
        return thread
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNCHRONOUS_SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread
