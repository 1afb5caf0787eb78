"""Drain the pipeline in a ``multiprocessing`` child started by fork, which ends with ``os._exit``.

``os._exit`` skips ``atexit``, so the pipeline's usual drain at exit never runs in such a child. What does
run there, before ``os._exit``, are ``multiprocessing.util``'s finalizers: once ``multiprocessing`` is in use,
every forked ``multiprocessing`` child gets a finalizer that drains the pipeline after the application's own
finalizers (which may still log). Children of the ``spawn`` start method end through ``sys.exit`` and
need nothing of this.

``Pool.terminate()`` (also what leaving ``with Pool() as pool:`` does) sends SIGTERM to workers that may
already be ending. From the first finalizer to the end of the drain SIGTERM is ignored, so that it cannot cut
the drain short; the drain itself is bounded by ``SHUTDOWN_TIMEOUT``, after which the child ends as it was
going to. Before the first finalizer, the package's SIGTERM handler (see
:func:`activity_audit.dispatch.install_sigterm_handler`) turns it into ``SystemExit``, which still passes
through these finalizers; once multiprocessing's exit has begun, that handler ignores it.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

# multiprocessing runs finalizers from the highest priority down: the shield first, the drain after every
# finalizer the application set (which may still log).
_FIRST = 1_000_000
_LAST = -1_000_000

_arranged = False


def arrange_drain_at_child_exit(owner: object, drain: Callable[[], object]) -> None:
    """Have every ``multiprocessing`` child forked from now on call ``drain()`` as it ends.

    Called after each fork, in the child. Does nothing until ``multiprocessing`` has been imported (a
    process that never imported it starts no ``multiprocessing`` children), and then registers once per
    process line: forked children inherit the registration. ``owner`` must outlive the process (the
    registry of ``multiprocessing.util`` holds it weakly).
    """
    global _arranged
    util = sys.modules.get("multiprocessing.util")
    if util is None or _arranged:
        return

    def _in_new_child(_owner: object) -> None:
        ending = _ShieldedEnd(drain)
        util.Finalize(None, ending.shield, exitpriority=_FIRST)
        util.Finalize(None, ending.drain, exitpriority=_LAST)

    util.register_after_fork(owner, _in_new_child)
    _arranged = True


class _ShieldedEnd:
    """The end of one child: SIGTERM ignored from :meth:`shield` until :meth:`drain` has run ``drain()``."""

    def __init__(self, drain: Callable[[], object]) -> None:
        self._drain = drain
        self._previous: Any = None
        self._shielded = False

    def shield(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self._shielded = True

    def drain(self) -> None:
        try:
            self._drain()
        finally:
            if self._shielded:
                signal.signal(signal.SIGTERM, self._previous)
