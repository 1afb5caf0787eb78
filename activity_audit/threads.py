"""Starting the package's background threads so that they never take the process's signals.

A signal sent to a process (``kill``, ``Pool.terminate()``, a server's arbiter) is delivered to any one of
its threads that does not block it. Python runs the handler on the main thread only when the main thread
next runs Python code; if the signal landed on a background thread while the main thread waits in a call
that only that signal would interrupt (a ``multiprocessing`` lock, say), the handler never runs and the
process never ends. The audit threads therefore block the asynchronous signals for their whole life: the
kernel hands those to the application's own threads, as it would if the package were not there.
"""

from __future__ import annotations

import signal
import threading

# What arrives from outside the process; faults (SIGSEGV ...) and SIGPIPE stay with the thread that caused
# them.
_ASYNC_SIGNALS: frozenset[signal.Signals] = frozenset(
    getattr(signal, name)
    for name in (
        "SIGTERM",
        "SIGINT",
        "SIGHUP",
        "SIGQUIT",
        "SIGUSR1",
        "SIGUSR2",
        "SIGALRM",
        "SIGCHLD",
        "SIGWINCH",
    )
    if hasattr(signal, name)
)


def start_quietly(thread: threading.Thread) -> None:
    """``thread.start()``, the new thread blocking the asynchronous signals from its first instruction.

    The mask is inherited from the starting thread, so it is set around the start and restored at once.
    Raises what ``Thread.start`` raises (``RuntimeError`` at interpreter exit).
    """
    if not hasattr(signal, "pthread_sigmask"):
        thread.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
