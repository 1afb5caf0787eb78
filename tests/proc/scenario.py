"""Child-process scenarios: ``python -m tests.proc.scenario NAME '{"json": "args"}'``.

Each sets up Django with :mod:`tests.proc.settings`, does one thing the pipeline must survive, and prints its
findings as one line ``RESULT {json}`` on stdout (unless the point is that it dies first). Every wait has a
timeout, so a hang turns into a failed test instead of a stuck run.
"""

from __future__ import annotations

import _thread
import json
import os
import resource
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import django

# Python 3.12+ warns that fork() in a multi-threaded process may deadlock the child: forking such a process
# is what these scenarios do on purpose, to prove the pipeline survives it.
warnings.filterwarnings("ignore", r"This process .* is multi-threaded", DeprecationWarning)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.proc.settings")
django.setup()

from activity_audit.dispatch import pipeline  # noqa: E402

from .emitting import emit  # noqa: E402

Args = dict[str, Any]
SCENARIOS: dict[str, Callable[[Args], None]] = {}


def scenario(function: Callable[[Args], None]) -> Callable[[Args], None]:
    SCENARIOS[function.__name__] = function
    return function


def result(**values: Any) -> None:
    print("RESULT " + json.dumps(values), flush=True)


def rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


@scenario
def burst(args: Args) -> None:
    """Emit a burst and leave at once: by falling off the end, ``sys.exit(3)``, or SIGTERM to itself."""
    count, how = args["count"], args["exit"]
    emit(args.get("origin", "burst"), count, via=args.get("via", "crud"))
    if how == "sysexit":
        sys.exit(3)
    if how == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises SystemExit long before this ends
        result(error="SIGTERM did not end the process")
    if how == "sigterm-while-sleeping":
        print("READY", flush=True)
        time.sleep(30)
        result(error="SIGTERM did not end the process")


@scenario
def after_the_drain(args: Args) -> None:
    """Records submitted after the exit drain: by an ``atexit`` handler that runs after the package's (one
    registered before Django set up; here the drain is run by hand first) and by a daemon thread."""
    emit("before", args["before"])
    pipeline.shutdown()
    emit("after", args["after"])
    done = threading.Event()
    threading.Thread(target=lambda: (emit("thread", args["thread"]), done.set()), daemon=True).start()
    done.wait(20.0)
    result(flushed=pipeline.flush(1.0), stats=pipeline.stats())


@scenario
def submitted_during_the_drain(args: Args) -> None:
    """A thread submits while the exit drain runs: it is held just before the pipeline's submit lock until
    the drain is over, the widest form of the race between a submit and the last drain of the queue."""
    emit("before", args["before"])
    real_lock, racer_waits, release = pipeline._submit_lock, threading.Event(), threading.Event()

    class HoldsTheRacer:
        def __enter__(self) -> Any:
            if threading.current_thread().name == "racer":
                racer_waits.set()
                release.wait(20.0)
            return real_lock.__enter__()

        def __exit__(self, *exc: Any) -> Any:
            return real_lock.__exit__(*exc)

    pipeline._submit_lock = HoldsTheRacer()  # type: ignore[assignment]
    racer = threading.Thread(target=lambda: emit("racer", 1), name="racer")
    racer.start()
    racer_waits.wait(20.0)
    clean = pipeline.shutdown()
    release.set()
    racer.join(20.0)
    result(clean=clean, queued=pipeline.stats()["queued"])


@scenario
def fork(args: Args) -> None:
    """The parent emits, forks; the child emits and leaves through ``sys.exit``; the parent emits again."""
    emit("parent-before", args["parent_before"])
    pid = os.fork()
    if pid == 0:
        emit("child", args["child"])
        sys.exit(0)
    hung = not _wait_child(pid, timeout=20.0)
    emit("parent-after", args["parent_after"])
    result(child_pid=pid, hung=hung, parent_stream=pipeline.stream_id)


@scenario
def fork_from_a_thread(args: Args) -> None:
    """A thread other than the main one forks; in the child that thread emits and ends (``sys.exit`` ends a
    thread, not the process): the package's threads must not keep the child alive, and must write its records.
    """
    emit("parent-before", args["parent_before"])
    forked: list[int] = []

    def fork_and_leave() -> None:
        pid = os.fork()
        if pid == 0:
            emit("child", args["child"])
            sys.exit(0)
        forked.append(pid)

    thread = threading.Thread(target=fork_and_leave)
    thread.start()
    thread.join(20.0)
    pid = forked[0]
    hung = not _wait_child(pid, timeout=20.0)
    emit("parent-after", args["parent_after"])
    result(child_pid=pid, hung=hung)


@scenario
def multiprocessing_children(args: Args) -> None:
    """``multiprocessing`` children emit and return: made by fork or forkserver, they end with ``os._exit``,
    not atexit (forkserver children start their own pipeline, as they import this module again).

    Two ``Process`` children, then a ``Pool`` of two workers closed and joined, with nothing flushed by hand.
    """
    import multiprocessing

    context = multiprocessing.get_context(args.get("method", "fork"))
    emit("parent-before", args["parent_before"])
    children = [context.Process(target=emit, args=(f"process-{n}", args["child"])) for n in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(20.0)
    pool = context.Pool(2)
    accepted = pool.starmap(emit, [("pool", args["per_task"])] * args["tasks"])
    pool.close()
    pool.join()
    emit("parent-after", args["parent_after"])
    result(
        exitcodes=[child.exitcode for child in children],
        pool_accepted=sum(accepted),
        parent_stream=pipeline.stream_id,
    )


@scenario
def pool_terminated(args: Args) -> None:
    """A ``Pool`` left by ``with``: ``__exit__`` calls ``terminate()``, which sends SIGTERM to workers that
    are still ending (they were just sent their sentinel); every record they emitted must arrive."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    accepted = 0
    for round_number in range(args["rounds"]):  # each round is one more chance to hit the race
        with context.Pool(args["workers"]) as pool:
            origin = f"pool-{round_number}"
            accepted += sum(pool.starmap(emit, [(origin, args["per_task"])] * args["tasks"]))
    emit("parent-after", args["parent_after"])
    result(pool_accepted=accepted, parent_stream=pipeline.stream_id)


@scenario
def child_terminated_while_blocked(args: Args) -> None:
    """A ``multiprocessing`` child emits, then waits on a lock its parent holds; the parent terminates it.

    The child reports, before it blocks, the names of its threads. With ``own_handler`` the child first
    installs a SIGTERM handler of its own, which must be the one to run. With ``lost_race`` the SIGTERM comes
    as if it had landed just before the wait began: Python has taken it (C level) but the main thread, blocked
    in C, cannot run the handler (``_thread.interrupt_main`` from another thread does exactly that).
    """
    import multiprocessing

    context = multiprocessing.get_context("fork")
    held = context.Lock()
    held.acquire()
    report = context.Queue()

    def child() -> None:
        if args.get("own_handler"):

            def own_handler(signum: int, frame: object) -> None:
                emit("own-handler", 1)
                raise SystemExit(7)

            signal.signal(signal.SIGTERM, own_handler)
        emit("child", args["child"])
        names = sorted(thread.name for thread in threading.enumerate())
        report.put({"threads": names})
        if args.get("lost_race"):
            threading.Timer(0.1, _thread.interrupt_main, (signal.SIGTERM,)).start()
        held.acquire()  # forever: the parent never releases it

    process = context.Process(target=child)
    process.start()
    seen = report.get(timeout=20)
    if not args.get("lost_race"):
        time.sleep(0.1)  # let it reach the wait
        process.terminate()
    process.join(20)
    result(exitcode=process.exitcode, **seen)


@scenario
def sigterm_inside_fork(args: Args) -> None:
    """SIGTERM arrives while ``os.fork`` runs its hooks, in the new child (``"child"``) or in the parent.

    Python would swallow the ``SystemExit`` raised there. The child must end by SIGTERM before any code of its
    own; the parent must end gracefully (exit 143, records written) right after the fork returns.
    """
    emit("before", args["count"])
    hook = {"child": "after_in_child", "parent": "after_in_parent"}[args["in"]]
    os.register_at_fork(**{hook: lambda: os.kill(os.getpid(), signal.SIGTERM)})
    pid = os.fork()
    if pid == 0:
        os._exit(0)  # in the "child" case, never reached: SIGTERM ended the child first
    _, status = os.waitpid(pid, 0)
    time.sleep(args.get("linger", 0))
    emit("after", 1)
    result(child_signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)


@scenario
def billiard_processes(args: Args) -> None:
    """``Process`` children of billiard (Celery's fork of multiprocessing): they end with ``os._exit`` too."""
    import billiard

    children = [billiard.Process(target=emit, args=(f"billiard-{n}", args["child"])) for n in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(20.0)
    emit("parent-after", args["parent_after"])
    result(exitcodes=[child.exitcode for child in children], parent_stream=pipeline.stream_id)


def _wait_child(pid: int, timeout: float) -> bool:
    """Reap ``pid``; True when it exited with status 0 within ``timeout``, else kill it and return False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


@scenario
def fork_storm(args: Args) -> None:
    """Fork again and again while other threads submit as fast as they can (RELIABILITY.md E2b)."""
    sys.setswitchinterval(5e-5)
    stop = threading.Event()
    emitted = [0] * args["threads"]

    def hammer(slot: int) -> None:
        while not stop.is_set():
            emit(f"thread-{slot}", 50)
            emitted[slot] += 50

    threads = [threading.Thread(target=hammer, args=(slot,), daemon=True) for slot in range(args["threads"])]
    for thread in threads:
        thread.start()
    children, failed = [], []
    for _ in range(args["forks"]):
        pid = os.fork()
        if pid == 0:
            emit(f"child-{os.getpid()}", args["child_records"])
            sys.exit(0)
        children.append(pid)
        if not _wait_child(pid, timeout=args.get("child_timeout", 10.0)):
            failed.append(pid)
    stop.set()
    for thread in threads:
        thread.join(10.0)
    result(
        children=children, failed=failed, emitted=dict(enumerate(emitted)), parent_stream=pipeline.stream_id
    )


@scenario
def faulty_sink(args: Args) -> None:
    """Batches through a faulty sink beside the file sink; then prove the worker still works."""
    for batch in range(args["batches"]):
        emit(f"batch-{batch}", args["per_batch"])
        pipeline.flush(args.get("flush_timeout", 5.0))
    worker_alive = pipeline._worker is not None and pipeline._worker.is_alive()
    emit("after", args["per_batch"])
    pipeline.shutdown()
    result(worker_alive=worker_alive, stats=pipeline.stats())


@scenario
def hung_sink_then_late_records(args: Args) -> None:
    """A sink hangs through the exit drain, then records come after it (an ``atexit`` handler's): they must
    reach the other sinks without the hung one being called again, which would keep the process alive."""
    emit("before", args["before"])
    clean = pipeline.shutdown()
    emit("after", args["after"])
    result(clean=clean, stats=pipeline.stats())


@scenario
def overflow(args: Args) -> None:
    """A stalled sink, a stalled worker, then a burst of ``total`` records; report memory and counters."""
    from . import stalls

    stalls.sink_go.clear()  # the extra sink takes its first batch and keeps it until the end
    stalls.worker_go.clear()  # the worker sits on its first record: the queue fills up
    before = rss_kib()
    accepted = emit("burst", 1)
    submitted = 1
    while pipeline.stats()["dropped"] < args["drops_while_stalled"]:
        accepted += emit("burst", 1)
        submitted += 1
    stalls.worker_go.set()
    for _ in range(args["total"] - submitted):
        accepted += emit("burst", 1)
    peak = rss_kib("VmHWM")
    at_peak = pipeline.stats()
    stalls.sink_go.set()
    flushed = pipeline.flush(60.0)
    pipeline.shutdown()
    result(
        accepted=accepted,
        submitted=args["total"],
        before_kib=before,
        peak_kib=peak,
        flushed=flushed,
        at_peak=at_peak,
        stalled_sink_delivered=stalls.delivered[0],
        stats=pipeline.stats(),
    )


@scenario
def disk_full(args: Args) -> None:
    """Emit until the disk is full, wait for the test to free space, emit again."""
    emit("before", args["before"])
    pipeline.flush(30.0)
    print("FULL " + json.dumps(pipeline.stats()), flush=True)
    if not sys.stdin.readline():  # the test frees space, then writes a line
        result(error="stdin closed")
        return
    emit("after", args["after"])
    pipeline.flush(30.0)
    pipeline.shutdown()
    result(stats=pipeline.stats())


@scenario
def file_size_limit(args: Args) -> None:
    """Like ``disk_full``, with RLIMIT_FSIZE as the full disk (for machines that cannot mount a tmpfs)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (args["limit"], resource.RLIM_INFINITY))
    emit("before", args["before"])
    pipeline.flush(30.0)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    emit("after", args["after"])
    pipeline.flush(30.0)
    pipeline.shutdown()
    result(stats=pipeline.stats())


def main() -> None:
    name, raw = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}"
    SCENARIOS[name](json.loads(raw))


if __name__ == "__main__":
    main()
