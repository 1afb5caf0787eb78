"""SIGTERM as a graceful exit: ``SystemExit(143)``, so that ``atexit`` drains the pipeline before the end.

The handler raises only where the exception does what it should:

- while the process is already ending (the pipeline's drain runs, or a ``multiprocessing``/billiard child runs
  its exit finalizers) it does nothing: an exception there would cut the drain short, and the exit asked for
  is under way, bounded by ``SHUTDOWN_TIMEOUT``;
- inside ``os.fork`` (its ``register_at_fork`` hooks run Python code, ours and the standard library's) Python
  swallows any exception, and the process would live on: a ``Pool`` left by ``with`` terminates workers that
  may have been forked a moment ago, then waits for them forever. A new child, which has run none of its own
  code yet, then ends by SIGTERM's default action, as it would have without this handler; the parent gets
  the signal again as soon as ``os.fork`` has returned. SIGTERM is blocked from the first ``before`` hook to
  the end of the pipeline's ``after`` hooks: Python forgets a signal that reaches a new child before it has
  re-initialised its signal state, whereas a blocked one waits, in the kernel, until it can be acted on.

Python runs a handler on the main thread only, at its next bytecode. A SIGTERM that lands just as the main
thread enters a blocking wait in C is acted on only when that wait ends: in a ``Pool`` worker, which waits
for its next task on a semaphore that ``Pool.terminate()`` holds, never. So each ``multiprocessing`` and
billiard child has a watcher thread that reads the signal numbers Python's C-level handler writes to a
wakeup pipe (``signal.set_wakeup_fd``, unless another library uses it): a SIGTERM whose handler has not run
within a quarter of a second, while the handler is still this one, is acted on from there: the pipeline is
drained and the child ends with exit code 143. A project that sets its own SIGTERM handler keeps it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType

from .mp_exit import exit_under_way as multiprocessing_exit_under_way
from .mp_exit import handler_ignores_sigterm_at_exit, on_child_start
from .threads import start_thread

# How long a SIGTERM may wait for the main thread to run the handler before a child's watcher acts on it.
_HANDLER_GRACE = 0.25


class _HandlerState:
    def __init__(self) -> None:
        self.shutting_down: Callable[[], bool] = lambda: False
        self.drain: Callable[[], object] = lambda: None
        # The os.fork call under way: (id of the calling frame, its code, its instruction), and the parent.
        self.fork_call: tuple[int, CodeType, int] | None = None
        self.fork_parent = 0
        self.mask_before_fork: set[int | signal.Signals] | None = None
        self.handled = 0  # how many times the handler ran (in this process)
        self.watching_forks = False


_state = _HandlerState()


def install_sigterm_handler(shutting_down: Callable[[], bool], drain: Callable[[], object]) -> bool:
    """Turn SIGTERM into ``SystemExit(143)`` (see the module docstring); ``shutting_down()`` tells whether the
    pipeline's drain runs, ``drain()`` runs it (in ``multiprocessing`` children, from their SIGTERM thread).

    Only when SIGTERM still has its default action and we are on the main thread: a server that handles
    SIGTERM itself (gunicorn, uWSGI, Celery) keeps its own handler. Returns True when installed. A second
    SIGTERM, before the first exit began its drain, ends the process at once; during the drain it is ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    _state.shutting_down, _state.drain = shutting_down, drain
    on_child_start(_watch_for_a_stuck_main_thread)
    handler_ignores_sigterm_at_exit(_exit_gracefully)
    handler_ignores_sigterm_at_exit(_after_the_first)
    if not _state.watching_forks:
        os.register_at_fork(
            before=_note_fork_call, after_in_parent=_fork_returned, after_in_child=_fork_returned
        )
        _state.watching_forks = True
    signal.signal(signal.SIGTERM, _exit_gracefully)
    return True


def _exit_gracefully(signum: int, frame: FrameType | None) -> None:
    _state.handled += 1
    if _state.shutting_down() or multiprocessing_exit_under_way(frame):
        return
    if _inside_fork_call(frame):
        if os.getpid() != _state.fork_parent:  # a new child, none of its own code run yet
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)  # the default action: the kernel ends the process here
        else:
            _send_again_soon(signum)
        return
    signal.signal(signal.SIGTERM, _after_the_first)
    raise SystemExit(128 + signum)


def _after_the_first(signum: int, frame: FrameType | None) -> None:
    """SIGTERM once a graceful exit began: ignored while the drain runs (it is bounded by
    ``SHUTDOWN_TIMEOUT``); before the drain has begun, it ends the process at once, by the default action."""
    if _state.shutting_down() or multiprocessing_exit_under_way(frame):
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _note_fork_call() -> None:
    """``os.fork``'s ``before`` hook: remember which call is under way (the child inherits the note)."""
    caller = sys._getframe(1)  # the frame that called os.fork (this hook is called from C)
    _state.fork_call = (id(caller), caller.f_code, caller.f_lasti)
    _state.fork_parent = os.getpid()
    _state.mask_before_fork = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _fork_returned() -> None:
    """``os.fork``'s ``after`` hooks: unblock SIGTERM; one that came meanwhile is handled right here."""
    previous, _state.mask_before_fork = _state.mask_before_fork, None
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _inside_fork_call(frame: FrameType | None) -> bool:
    """True when ``frame`` runs inside the noted ``os.fork`` call (in one of its hooks, in either process)."""
    call = _state.fork_call
    if call is None:
        return False
    ident, code, instruction = call
    while frame is not None:
        # The caller is still at the very instruction that called os.fork: the call has not returned.
        if id(frame) == ident and frame.f_code is code and frame.f_lasti == instruction:
            return True
        frame = frame.f_back
    return False


def _send_again_soon(signum: int) -> None:
    """Deliver ``signum`` to this process again once the main thread is out of ``os.fork``."""

    def send() -> None:
        time.sleep(0.001)
        os.kill(os.getpid(), signum)

    start_thread(send, "activity-audit-sigterm")  # blocks SIGTERM itself: the signal goes to the main thread


def _watch_for_a_stuck_main_thread() -> None:
    """In a new ``multiprocessing`` or billiard child, on its main thread: see the module docstring."""
    if signal.getsignal(signal.SIGTERM) is not _exit_gracefully:
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except (ValueError, OSError):
        previous = None
    if previous != -1:  # could not, or another library watches signals this way: leave it to it
        if previous is not None:
            signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)
        return
    handled_before = _state.handled  # counted in the parent, before the fork
    start_thread(lambda: _watch(read_end, handled_before), "activity-audit-sigterm")


def _watch(read_end: int, seen: int) -> None:
    """Read the signal numbers Python's C handler writes; act on a SIGTERM the main thread did not take.

    ``seen`` is how many times the handler had run when the watch began.
    """
    while True:
        numbers = os.read(read_end, 512)
        if not numbers:
            return
        seen += numbers.count(signal.SIGTERM)
        deadline = time.monotonic() + _HANDLER_GRACE
        while _state.handled < seen and time.monotonic() < deadline:
            time.sleep(0.005)
        if _state.handled >= seen or signal.getsignal(signal.SIGTERM) is not _exit_gracefully:
            continue  # the handler ran; or the project handles SIGTERM itself (as it would without us)
        if _state.shutting_down() or multiprocessing_exit_under_way():
            continue
        try:
            _state.drain()  # the main thread is stuck in C: drain from here, then end as SIGTERM asked
        finally:
            os._exit(128 + signal.SIGTERM)
