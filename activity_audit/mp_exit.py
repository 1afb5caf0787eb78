"""Drain the pipeline in forked children that end with ``os._exit``: multiprocessing, billiard, Celery.

``os._exit`` skips ``atexit``, so the pipeline's usual drain at exit never runs in such a child. What does
run there, before ``os._exit``, are ``multiprocessing.util``'s finalizers: once ``multiprocessing`` is in use,
every forked ``multiprocessing`` child gets a finalizer that drains the pipeline after the application's own
finalizers (which may still log). billiard (Celery's fork of multiprocessing) gets the same for its
``Process`` children. A child of the ``forkserver`` or ``spawn`` start method starts its pipeline itself,
after the fork: it arranges the same drain then (:func:`arrange_drain_in_this_child`); ``forkserver`` children
end with ``os._exit`` too, ``spawn`` children through ``sys.exit`` (the drain then runs before ``atexit``'s).

Celery's prefork pool workers end in billiard's ``Worker._do_exit``, which calls ``os._exit`` without any
finalizer; Celery sends its ``worker_process_shutdown`` signal there, in the child, just before. Once
``celery.signals`` is imported, every child forked from then on drains the pipeline on that signal: records
of tasks survive a child recycled by ``max_tasks_per_child`` and a worker's warm shutdown.

``Pool.terminate()`` (also what leaving ``with Pool() as pool:`` does) sends SIGTERM to workers that may
already be ending. From the first finalizer to the end of the drain SIGTERM is ignored, so that it cannot cut
the drain short; the drain itself is bounded by ``SHUTDOWN_TIMEOUT``, after which the child ends as it was
going to. Before the first finalizer, the package's SIGTERM handler (see
:func:`activity_audit.sigterm.install_sigterm_handler`) turns it into ``SystemExit``, which still passes
through these finalizers; once multiprocessing's exit has begun, that handler ignores it.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

# multiprocessing runs finalizers from the highest priority down: the shield first, the drain after every
# finalizer the application set (which may still log).
_FIRST = 1_000_000
_LAST = -1_000_000

# The packages whose children end this way, with the module that runs their finalizers: the standard
# library's, and billiard, the fork of it that Celery's prefork pool runs on. Both offer the same
# register_after_fork / Finalize / _exiting. billiard's child imports its util only after the fork, so it is
# imported here for it.
_PROCESS_UTILS = {"multiprocessing": "multiprocessing.util", "billiard": "billiard.util"}

_CELERY = "celery.signals"

_arranged: set[str] = set()
_child_start_callbacks: list[Callable[[], object]] = []
_handlers_ignoring_sigterm_at_exit: list[object] = []


def handler_ignores_sigterm_at_exit(handler: object) -> None:
    """Tell the exit drain that ``handler`` ignores SIGTERM once :func:`exit_under_way` is true."""
    if handler not in _handlers_ignoring_sigterm_at_exit:
        _handlers_ignoring_sigterm_at_exit.append(handler)


def on_child_start(callback: Callable[[], object]) -> None:
    """Call ``callback()`` in each ``multiprocessing`` or billiard child, on its main thread, as it starts."""
    if callback not in _child_start_callbacks:
        _child_start_callbacks.append(callback)


def arrange_drain_at_child_exit(owner: object, drain: Callable[[], object]) -> None:
    """Have every ``multiprocessing`` or billiard child forked from now on call ``drain()`` as it ends.

    Called after each fork, in the child. Does nothing for a library not imported yet (a process that never
    imported it starts none of its children), and registers once per library and process line: forked
    children inherit the registration. ``owner`` must outlive the process (the registries hold it weakly).
    """
    for package, module_name in _PROCESS_UTILS.items():
        if package not in sys.modules or module_name in _arranged:
            continue
        util = importlib.import_module(module_name)
        util.register_after_fork(owner, _finalizers_for(util, drain))
        _arranged.add(module_name)
    celery_signals = sys.modules.get(_CELERY)
    if celery_signals is not None and _CELERY not in _arranged:

        def _on_worker_process_shutdown(**_details: Any) -> None:
            drain()

        celery_signals.worker_process_shutdown.connect(
            _on_worker_process_shutdown, weak=False, dispatch_uid="activity_audit.drain"
        )
        _arranged.add(_CELERY)


def arrange_drain_in_this_child(owner: object, drain: Callable[[], object]) -> None:
    """In a ``multiprocessing`` child whose pipeline started after the fork (``forkserver``, ``spawn``), have
    ``drain()`` run as the child ends: ``forkserver`` children end with ``os._exit`` after the exit function,
    and no fork hook of this process ran to arrange it. Once per process; nothing in any other process.

    Such a child may start its pipeline while it imports the parent's main module, before the process
    bootstraps and clears its finalizers: the finalizers are then registered by the bootstrap's after-fork
    hooks, which run after that clearing. ``owner`` must outlive the process (the registry holds it weakly).
    """
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return
    # Private: set while a spawned child imports the main module (getattr: a rename reads as "no").
    preparing = getattr(mp.current_process(), "_inheriting", False) is True
    if mp.parent_process() is None and not preparing:
        return
    marker = f"multiprocessing.util:{os.getpid()}"
    if marker in _arranged:
        return
    util = importlib.import_module("multiprocessing.util")
    if preparing:
        util.register_after_fork(owner, _finalizers_for(util, drain))
    else:
        _finalizers_for(util, drain)(owner)
    _arranged.add(marker)


def arrange_drain_at_worker_shutdown(drain: Callable[[], object]) -> None:
    """In a Celery worker's own process, drain on Celery's ``worker_shutdown`` signal, once it is imported.

    Tasks of the ``solo`` and ``threads`` pools run in that process. A worker restarted by SIGHUP re-executes
    itself from an ``atexit`` handler that Celery registers when the signal comes, so it runs before the
    package's own and the process is replaced before that could drain; ``worker_shutdown`` is sent before.
    """
    celery_signals = sys.modules.get(_CELERY)
    if celery_signals is None or "celery.worker_shutdown" in _arranged:
        return

    def _on_worker_shutdown(**_details: Any) -> None:
        drain()

    celery_signals.worker_shutdown.connect(
        _on_worker_shutdown, weak=False, dispatch_uid="activity_audit.drain_worker"
    )
    _arranged.add("celery.worker_shutdown")


def exit_under_way(frame: FrameType | None = None) -> bool:
    """True once a ``multiprocessing`` or billiard child has begun its exit function (which runs the drain).

    ``frame`` is where a signal handler interrupted the main thread: the exit function may have been entered
    without having set its flag yet (a pending signal is handled as a function starts).
    """
    exit_functions = set()
    for name in _PROCESS_UTILS.values():
        util = sys.modules.get(name)
        # Private names of both libraries: the flag their exit function sets as it starts, and the function
        # itself. getattr keeps a future rename from breaking the caller (it then sees False).
        if getattr(util, "_exiting", False) is True:
            return True
        exit_function = getattr(util, "_exit_function", None)
        if exit_function is not None:
            exit_functions.add(exit_function.__code__)
    while frame is not None and exit_functions:
        if frame.f_code in exit_functions:
            return True
        frame = frame.f_back
    return False


def _finalizers_for(util: Any, drain: Callable[[], object]) -> Callable[[object], None]:
    def _in_new_child(_owner: object) -> None:
        ending = _ShieldedEnd(drain)
        util.Finalize(None, ending.shield, exitpriority=_FIRST)
        util.Finalize(None, ending.drain, exitpriority=_LAST)
        for callback in _child_start_callbacks:
            callback()

    return _in_new_child


class _ShieldedEnd:
    """The end of one child: SIGTERM ignored from :meth:`shield` until :meth:`drain` has run ``drain()``."""

    def __init__(self, drain: Callable[[], object]) -> None:
        self._drain = drain
        self._previous: Any = None
        self._shielded = False

    def shield(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) in _handlers_ignoring_sigterm_at_exit:
            # Such a handler already ignores SIGTERM from here on; replacing it while a SIGTERM is on its way
            # to it would make Python report "Signal 15 ignored due to race condition" on stderr.
            return
        self._previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._shielded = True

    def drain(self) -> None:
        try:
            self._drain()
        finally:
            if self._shielded:
                signal.signal(signal.SIGTERM, self._previous)
