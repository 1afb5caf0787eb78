"""The record pipeline: a bounded queue, one worker thread, and one delivery thread per sink.

Caller threads only take a ``seq`` and append to the queue (:meth:`Pipeline.submit`, a few hundred
nanoseconds). The worker stamps the envelope (``event_id``, ``stream_id``, ``seq``), redacts, formats and
hands batches to a :class:`SinkRunner` per ``sink`` implementation, so a sink that raises or hangs costs
only its own records, and every one of them is counted.

Guarantees (each has a test that counts records):

* graceful exit (``atexit``, ``sys.exit``, SIGTERM through :mod:`activity_audit.sigterm` or a server that
  exits through ``sys.exit`` like gunicorn): everything queued is delivered within ``SHUTDOWN_TIMEOUT``;
* ``os.fork()``: the child starts a new stream with fresh locks and threads; the parent keeps and writes what
  it queued, so nothing is written twice and no child hangs on a lock copied mid-use. A ``multiprocessing``
  child ends with ``os._exit`` (no ``atexit``): :mod:`activity_audit.mp_exit` drains it before that;
* queue full: ``WHEN_FULL = "block"`` waits up to ``BLOCK_TIMEOUT`` then drops, ``"drop"`` drops at once;
  every drop spends a ``seq`` (a visible gap) and is reported as a ``RECORDS_DROPPED`` record;
* memory: at most ``QUEUE_SIZE`` records queued, plus per sink a backlog of at most ``SINK_QUEUE_SIZE``
  records and ``SINK_QUEUE_BYTES`` bytes of lines. A slow sink sets the pace (the worker waits for room while
  the sink keeps finishing batches); a stalled one (nothing finished for ``STALL_AFTER`` seconds) loses its
  batches, counted and reported as ``SINK_BACKLOG_FULL``, and holds back no other sink;
* a sink that raises or hangs costs only its own records, counted per sink (``stats()``) and reported with
  the plugin's name at most once per ``REPORT_INTERVAL`` (plus a summary at shutdown). On the pipeline's own
  threads a plugin's ``BaseException`` (``SystemExit``, ``asyncio.CancelledError`` ...) is a failure like any
  other: no signal is ever delivered to these threads, so nothing legitimate arrives that way, and letting it
  through would end the thread and every record after it;
* SIGKILL, power loss: what is still queued (at most ``QUEUE_SIZE`` records plus each sink's backlog) is lost.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import records as rec
from .encoding import DEFAULT_LIMITS, Limits, dumps_line, one_line
from .errors import PartialDelivery
from .mp_exit import arrange_drain_at_child_exit
from .plugins.json_formatter import format_record as _builtin_format_record
from .reporting import Reporter, write_stderr
from .threads import pipeline_thread, start_thread

if TYPE_CHECKING:
    import pluggy

    from .conf import AuditSettings
    from .manager import AuditPluginManager

Record = dict[str, Any]
# A record in the queue: its channel, the record, and the seq it was given when submitted.
Queued = tuple[str, Record, int]
RecordCall = Callable[[Record], Any]

# The caller name of a hook whose implementations pluggy calls together (a wrapper is registered).
_ALL_AT_ONCE = "pluggy"

# Keys a record keeps when a redactor fails on it: enough to prove it existed, nothing it might have leaked.
_STUB_KEYS = ("timestamp", "level", "name", "event_type", "event_id", "stream_id", "seq")

# Problems the trail already holds exact records of (RECORDS_DROPPED, one per worker cycle, with seq ranges):
# the reporter only rate-limits their stderr lines.
_RECORDED_BY_THEMSELVES = frozenset({"RECORDS_DROPPED"})
# Why a record was dropped, as RECORDS_DROPPED says it.
_QUEUE_FULL = "queue full"
_INTERRUPTED = "interrupted while being queued"


class FlushBarrier:
    """Passes through the queue behind every record submitted before it; done when every sink reached it."""

    __slots__ = ("_lock", "_remaining", "done")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining = 0
        self.done = threading.Event()

    def expect(self, parties: int) -> None:
        with self._lock:
            self._remaining = parties
        if parties == 0:
            self.done.set()

    def arrive(self) -> None:
        with self._lock:
            self._remaining -= 1
            finished = self._remaining <= 0
        if finished:
            self.done.set()


# Seconds a sink may go without finishing a batch, while the worker waits for room in its backlog, before it
# is treated as stalled (and its batches are dropped instead of holding up the other sinks).
STALL_AFTER = 1.0
_STALLED = f"backlog full and no batch finished for {STALL_AFTER:g}s (stalled)"


class SinkRunner:
    """Feeds one ``sink`` implementation, in order, on a thread of its own.

    The backlog is bounded by ``capacity`` records and ``capacity_bytes`` bytes of formatted lines. When a
    batch does not fit, the worker waits for room as long as the sink keeps finishing batches (a slow sink
    sets the pace, and the queue's ``WHEN_FULL`` policy applies upstream). A sink that finishes nothing for
    :data:`STALL_AFTER` seconds is stalled: from then on, until it finishes a batch again, a batch that does
    not fit is dropped at once and counted as lost for this sink only, so it holds back no other sink.
    """

    def __init__(
        self,
        name: str,
        call: Callable[[Sequence[rec.Entry]], Any],
        capacity: int,
        pipeline: Pipeline,
        capacity_bytes: int = 64 << 20,
    ):
        self.name = name
        self._call = call
        self._capacity = capacity
        self._capacity_bytes = capacity_bytes
        self._pipeline = pipeline
        self._items: deque[tuple[list[rec.Entry], int] | FlushBarrier] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._backlog = 0
        self._backlog_bytes = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._inline = False  # no thread could be started: deliver on the thread that offers
        self.busy_since: float | None = None
        self._exited = False  # its thread has taken its last item: nothing appended now is delivered by it
        self.abandoned = False  # still busy when shutdown stopped waiting for it: hung, never called again
        self.delivered = 0
        self.lost = 0
        self.failures = 0
        self.finished_batches = 0
        self.stalled = False

    def offer(self, batch: list[rec.Entry], size: int) -> bool:
        """Queue ``batch`` (``size`` bytes of lines); False, nothing queued, when it cannot (see above)."""
        with self._cond:
            deadline, progress = time.monotonic() + STALL_AFTER, self.finished_batches
            while self._backlog and (
                self._backlog + len(batch) > self._capacity
                or self._backlog_bytes + size > self._capacity_bytes
            ):
                if self.stalled or self._stopping:
                    return False
                if self.finished_batches != progress:  # slow, not stuck: keep waiting
                    deadline, progress = time.monotonic() + STALL_AFTER, self.finished_batches
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.stalled = True
                    return False
                self._cond.wait(remaining)
            self._items.append((batch, size))
            self._backlog += len(batch)
            self._backlog_bytes += size
            self._cond.notify()
        self._ensure_thread()
        return True

    def offer_barrier(self, barrier: FlushBarrier) -> None:
        with self._cond:
            self._items.append(barrier)
            self._cond.notify()
        self._ensure_thread()

    @property
    def backlog(self) -> int:
        return self._backlog

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait for the backlog to be delivered; True when the thread finished in time."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(max(timeout, 0.0))
        return not thread.is_alive()

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._inline:
            with self._cond:
                if self._thread is None and not self._inline:
                    try:
                        self._thread = start_thread(self._run, f"activity-audit-sink:{self.name}")
                    except RuntimeError:  # the interpreter is exiting: Python 3.12+ starts no new thread
                        self._inline = True
        if self._inline:
            self._deliver_here()

    def _deliver_here(self) -> None:
        """Deliver the backlog on the calling thread (at exit, when no thread of its own may start)."""
        while True:
            with self._cond:
                if not self._items:
                    return
                item = self._items.popleft()
            if isinstance(item, FlushBarrier):
                item.arrive()
            else:
                self._deliver(*item)

    def _run(self) -> None:
        pipeline_thread.active = True
        while True:
            with self._cond:
                while not self._items and not self._stopping:
                    self._cond.wait()
                if not self._items:
                    self._exited = True
                    return
                item = self._items.popleft()
            if isinstance(item, FlushBarrier):
                item.arrive()
                continue
            self._deliver(*item)

    def deliver_late(self, batch: list[rec.Entry]) -> None:
        """Deliver ``batch``, formatted after shutdown began: behind the backlog while this runner's thread
        still delivers it, at once on the calling thread once that thread has ended (or never started).
        A sink that hung at shutdown is not called again (the process could never end): the batch is
        counted lost for it, and reported."""
        with self._cond:
            abandoned = self.abandoned
            if abandoned:
                self.lost += len(batch)
            elif self._thread is not None and not self._exited:
                size = sum(len(entry.line) for entry in batch)
                self._items.append((batch, size))
                self._backlog += len(batch)
                self._backlog_bytes += size
                self._cond.notify()
                return
        if abandoned:
            self._pipeline.reporter.problem(
                "SINK_FAILED", self.name, lost=len(batch), error="hung at shutdown; not called again"
            )
        else:
            self.deliver_now(batch)

    def deliver_now(self, batch: list[rec.Entry]) -> None:
        """Deliver ``batch`` on the calling thread, counted as usual, outside the backlog (after shutdown)."""
        try:
            self._call(batch)
            self.delivered += len(batch)
        except PartialDelivery as exc:
            self.delivered += exc.delivered
            self._failed(len(batch) - exc.delivered, exc.__cause__ or exc)
        except BaseException as exc:
            self._failed(len(batch), exc)

    def _deliver(self, batch: list[rec.Entry], size: int) -> None:
        self.busy_since = time.monotonic()
        try:
            self.deliver_now(batch)
        finally:
            self.busy_since = None
            with self._cond:
                self._backlog -= len(batch)
                self._backlog_bytes -= size
                self.finished_batches += 1
                self.stalled = False
                self._cond.notify_all()  # a worker may be waiting for room

    def _failed(self, lost: int, exc: BaseException) -> None:
        self.failures += 1
        self.lost += lost
        self._pipeline.reporter.problem(
            "SINK_FAILED", self.name, lost=lost, error=f"{type(exc).__name__}: {exc}"
        )


class _HookCallers:
    """Direct callers of the per-record hooks, rebuilt whenever the registered implementations change."""

    def __init__(self) -> None:
        self._pm: AuditPluginManager | None = None
        self._generation = -1
        self.redactors: list[tuple[str, RecordCall]] = []
        self.formatters: list[tuple[str, RecordCall]] = []
        self.format_candidates = ""
        self.sinks: list[tuple[str, Callable[[Sequence[rec.Entry]], Any]]] = []
        self._names_by_code: dict[Any, str] = {}

    def culprit(self, name: str, exc: BaseException) -> str:
        """The plugin to blame for ``exc`` raised by the caller named ``name``.

        With a wrapper registered, a hook's implementations are called together through pluggy: the plugin
        is then the one whose implementation is the innermost frame of the traceback.
        """
        if name != _ALL_AT_ONCE:
            return name
        traceback = exc.__traceback__
        while traceback is not None:
            name = self._names_by_code.get(traceback.tb_frame.f_code, name)
            traceback = traceback.tb_next
        return name

    def refresh(self, pm: AuditPluginManager) -> bool:
        """Re-read the hook implementations; True when they changed since the last call."""
        if pm is self._pm and pm.generation == self._generation:
            return False
        self._pm, self._generation = pm, pm.generation
        self.redactors = _per_record_callers(pm, pm.hook.redact)
        self.formatters = _per_record_callers(pm, pm.hook.format_record)
        # Who may have returned a value through pluggy (wrapper mode), in call order: blamed together.
        self.format_candidates = ", ".join(
            _plugin_name(pm, impl)
            for impl in reversed(pm.hook.format_record.get_hookimpls())
            if not (impl.hookwrapper or getattr(impl, "wrapper", False))
        )
        self._names_by_code = {
            impl.function.__code__: _plugin_name(pm, impl)
            for hook in (pm.hook.redact, pm.hook.format_record)
            for impl in hook.get_hookimpls()
            if hasattr(impl.function, "__code__")
        }
        sinks = reversed(pm.hook.sink.get_hookimpls())
        self.sinks = [(_plugin_name(pm, impl), _bind(impl, "records")) for impl in sinks]
        return True


def _plugin_name(pm: pluggy.PluginManager, impl: Any) -> str:
    return pm.get_name(impl.plugin) or impl.plugin_name


def _bind(impl: Any, argname: str) -> Callable[[Any], Any]:
    function = impl.function
    if tuple(impl.argnames) == (argname,):
        return function  # type: ignore[no-any-return]
    if not impl.argnames:
        return lambda _value: function()
    return lambda value: function(**{argname: value})


def _per_record_callers(pm: pluggy.PluginManager, hook: Any) -> list[tuple[str, RecordCall]]:
    impls = hook.get_hookimpls()
    if any(impl.hookwrapper or getattr(impl, "wrapper", False) for impl in impls):
        return [(_ALL_AT_ONCE, lambda record: hook(record=record))]
    return [(_plugin_name(pm, impl), _bind(impl, "record")) for impl in reversed(impls)]


class Pipeline:
    """The process-wide record pipeline (one instance: :data:`pipeline`)."""

    def __init__(self) -> None:
        self.settings: AuditSettings | None = None
        self.pm: AuditPluginManager | None = None
        self._new_stream()

    # --- state -------------------------------------------------------------------------------------------
    def _new_stream(self) -> None:
        """Fresh stream, queue, locks and counters: at construction and in a forked child."""
        stream = uuid.uuid4()
        self.stream_id = str(stream)
        # event_id = UUIDv8: 76 random bits of the stream, then seq as the last 48 bits.
        raw = stream.hex
        self._event_prefix = (
            f"{raw[:8]}-{raw[8:12]}-8{raw[13:16]}-{'89ab'[int(raw[16], 16) & 3]}{raw[17:20]}-"
        )
        self._seq = itertools.count(1)
        # Held only to stamp and append, so that seq order is queue order and the bound is exact.
        self._submit_lock = threading.Lock()
        self._late_lock = threading.Lock()  # one record at a time through the sinks once stopped
        self._queue: deque[Queued | FlushBarrier] = deque()
        self._wakeup = threading.Event()
        self._space = threading.Condition(threading.Lock())
        self._blocked = 0
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = False
        self._stopped = False
        self.shutting_down = False
        # Set in a child forked by a thread other than the parent's main thread (see _run).
        self.watch_main_thread = False
        self._shutdown_lock = threading.RLock()
        self._warned_unconfigured = False
        self._callers = _HookCallers()
        self._runners: dict[str, SinkRunner] = {}
        self._drop_lock = threading.Lock()
        self._dropped = 0
        self._dropped_first_seq = 0
        self._dropped_last_seq = 0
        self._drop_causes: set[str] = set()
        self.submitted = 0
        self.dropped_total = 0
        interval = self.settings.REPORT_INTERVAL if self.settings else 60.0
        self.reporter = Reporter(self._publish_problem, interval)
        self._apply_limits()

    def _apply_limits(self) -> None:
        s = self.settings
        self.enabled = s.ENABLED if s else True
        self._maxsize = s.QUEUE_SIZE if s else 10_000
        self._batch_size = s.BATCH_SIZE if s else 512
        self._flush_interval = s.FLUSH_INTERVAL if s else 0.2
        self._block = (s.WHEN_FULL if s else "block") == "block"
        self._block_timeout = s.BLOCK_TIMEOUT if s else 0.5
        self._max_bytes = s.MAX_RECORD_BYTES if s else 1 << 20
        self._limits = s.limits if s else DEFAULT_LIMITS
        self.reporter.interval = s.REPORT_INTERVAL if s else 60.0

    @property
    def limits(self) -> Limits:
        """The capture caps of the settings (``MAX_FIELD_CHARS`` ...); the defaults until configured."""
        return self._limits

    def configure(self, settings: AuditSettings, pm: AuditPluginManager) -> None:
        """Attach settings and plugins; records submitted before this wait in the queue (bounded)."""
        self.settings, self.pm = settings, pm
        self._apply_limits()
        self._callers = _HookCallers()
        self._refresh_hooks()
        if not self.enabled and self._worker is None:
            self._discard_early_records()
        if self._queue:
            self._ensure_worker()

    def _discard_early_records(self) -> None:
        """With ``ENABLED`` False, what was logged before the settings were read (during ``django.setup()``)
        is not written either: auditing off writes nothing, not even the pipeline's start and stop."""
        with self._submit_lock:
            early = list(self._queue)
            self._queue.clear()
        for item in early:
            if isinstance(item, FlushBarrier):
                item.done.set()

    # --- caller side ----------------------------------------------------------------------------------------
    def submit(self, channel: str, record: Record) -> bool:
        """Give ``record`` the next ``seq`` and queue it for ``channel``. Never raises, never blocks for long.

        The envelope (``event_id``, ``stream_id``, ``seq``) is written into ``record`` on the worker, before
        any ``redact`` implementation sees it. Returns False when the record was dropped (queue full) or the
        pipeline is disabled.
        """
        if not self.enabled:
            return False
        if self._worker is None and not self._stopped:
            self._ensure_worker()  # so that PIPELINE_STARTED is the first record of the stream
        queue = self._queue
        seq = 0
        handed = False  # queued, delivered or counted dropped: the record is accounted for
        try:
            with self._submit_lock:
                # _stopped is read under the lock shutdown sets it under: a record is either queued before
                # the last drain of the queue, or delivered late, never left in a queue nobody reads.
                seq = next(self._seq)
                stopped = self._stopped
                if not stopped and len(queue) < self._maxsize:
                    queue.append((channel, record, seq))
                    handed = True
                    self.submitted += 1
                    if len(queue) == self._batch_size:
                        self._wakeup.set()
            if handed:
                return True
            if not stopped:
                if not self._wait_for_room():
                    handed = True
                    self._count_drop(seq)
                    return False
                with self._submit_lock:
                    stopped = self._stopped
                    if not stopped:
                        queue.append((channel, record, seq))
                        handed = True
                        self.submitted += 1
                        return True
            with self._submit_lock:
                self.submitted += 1
            handed = True
            return self._deliver_late((channel, record, seq))
        except BaseException:
            # SystemExit from a SIGTERM handler, KeyboardInterrupt: a seq spent on a record that is neither
            # queued nor delivered is declared dropped rather than left as an unexplained gap.
            if seq and not handed:
                self._count_drop(seq, _INTERRUPTED)
            raise

    def _deliver_late(self, item: Queued) -> bool:
        """A record submitted after the pipeline stopped (an ``atexit`` handler of the application's that runs
        after the drain, a daemon thread still working at exit): stamped, redacted, formatted and handed to
        every sink at once, on this thread, one at a time, so that no record accepted is lost.
        Returns True when handed over (the sinks count and report their own failures)."""
        with self._late_lock:
            try:
                entries = self._format([item])
                for runner in self._runners.values():
                    runner.deliver_late(entries)
                self.reporter.flush_all()  # the exit's last report has been made: nothing else would
            except BaseException as exc:  # never into the caller, at exit least of all
                write_stderr(f"a record submitted after the audit pipeline stopped was lost: {exc!r}")
                return False
        return True

    def _submit_internal(self, record: Record) -> None:
        """Queue one of the pipeline's own records; it bypasses the bound so it is never dropped."""
        with self._submit_lock:
            seq = next(self._seq)
            self._queue.append((rec.CHANNEL_AUDIT, record, seq))
            self.submitted += 1
        self._wakeup.set()

    def _announce(self, event_type: str, message: str, **fields: Any) -> None:
        """Queue a record of the pipeline starting or stopping in this process."""
        self._submit_internal(
            rec.pipeline_event(event_type, message, level="INFO", pid=os.getpid(), **fields)
        )

    def _wait_for_room(self) -> bool:
        self._wakeup.set()
        if not self._block or getattr(pipeline_thread, "active", False) or self._worker is None:
            return False
        deadline = time.monotonic() + self._block_timeout
        with self._space:
            self._blocked += 1
            try:
                while len(self._queue) >= self._maxsize:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._space.wait(remaining)
                return True
            finally:
                self._blocked -= 1

    def _count_drop(self, seq: int, cause: str = _QUEUE_FULL) -> None:
        with self._drop_lock:
            self._drop_causes.add(cause)
            # Threads count their drops in any order: the range is the lowest and highest seq dropped.
            if not self._dropped:
                self._dropped_first_seq = self._dropped_last_seq = seq
            else:
                self._dropped_first_seq = min(self._dropped_first_seq, seq)
                self._dropped_last_seq = max(self._dropped_last_seq, seq)
            self._dropped += 1
            self.dropped_total += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record submitted before this call has been handed to every sink.

        True when done within ``timeout`` seconds; False when it was not (a sink is slow or hung, or the app
        is not configured yet). With ``ENABLED`` False and no stream started, True at once: nothing is
        queued, and no worker is started (it would write ``PIPELINE_STARTED``).
        """
        if (not self.enabled and self._worker is None) or self._stopped:
            return True  # nothing queued: once stopped, a record is written as it is submitted
        barrier = FlushBarrier()
        self._queue.append(barrier)
        self._ensure_worker()
        self._wakeup.set()
        return barrier.done.wait(timeout)

    # --- worker side ------------------------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        if self.pm is None:
            self._warn_if_never_configured()
        if self._worker is not None or self.pm is None or self._stopped:
            return
        with self._start_lock:
            if self._worker is not None:
                return
            self._announce(
                "PIPELINE_STARTED",
                "Audit pipeline started",
                service_name=self.settings.SERVICE_NAME if self.settings else None,
            )
            try:
                self._worker = start_thread(self._run, "activity-audit-worker")
            except RuntimeError:  # the interpreter is exiting: shutdown() delivers the queue itself
                return

    def _warn_if_never_configured(self) -> None:
        """Say so on stderr, once, when records arrive after Django has set up every app but the pipeline
        was never configured: ``activity_audit`` is not in ``INSTALLED_APPS`` (the ``LOGGING`` helpers work
        without it), and nothing would ever be written."""
        if self._warned_unconfigured:
            return
        from django.apps import apps

        if apps.ready and not apps.is_installed("activity_audit"):
            self._warned_unconfigured = True
            write_stderr(
                "records are handed to the audit pipeline, but 'activity_audit' is not in INSTALLED_APPS: "
                "nothing is written until it is (add it to INSTALLED_APPS)"
            )

    def _run(self) -> None:
        pipeline_thread.active = True
        while True:
            self._wakeup.wait(self._flush_interval)
            self._wakeup.clear()
            try:
                self._drain()
                self._check_drops()
                self._check_stuck_sinks()
                self.reporter.tick()
            except BaseException as exc:  # the worker must outlive any bug, ours included
                write_stderr(f"internal error in the audit worker: {type(exc).__name__}: {exc}")
            if self._stopping and not self._queue:
                return
            if self.watch_main_thread and self._main_thread_gone():
                # A child forked by a thread other than the main one, whose forking thread has ended without
                # exiting the process: only the package's threads are left, and they would keep it alive.
                start_thread(self.shutdown, "activity-audit-last-drain")
                return

    def _main_thread_gone(self) -> bool:
        return not self.shutting_down and not self._stopping and not threading.main_thread().is_alive()

    def _drain(self) -> None:
        queue, size = self._queue, self._batch_size
        while queue:
            batch: list[Queued] = []
            barrier: FlushBarrier | None = None
            while queue and len(batch) < size:
                item = queue.popleft()
                if isinstance(item, FlushBarrier):
                    barrier = item
                    break
                batch.append(item)
            if self._blocked:
                with self._space:
                    self._space.notify_all()
            if batch:
                self._dispatch(self._format(batch))
            if barrier is not None:
                self._pass_barrier(barrier)

    def _format(self, batch: list[Queued]) -> list[rec.Entry]:
        """Stamp, redact and encode each queued record (on the worker, or on the thread delivering late)."""
        self._refresh_hooks()
        redactors, formatters = self._callers.redactors, self._callers.formatters
        # Only the built-in formatter: call the encoder it wraps directly (same bytes, two calls fewer).
        builtin_only = len(formatters) == 1 and formatters[0][1] is _builtin_format_record
        max_bytes, limits = self._max_bytes, self._limits
        prefix, stream_id = self._event_prefix, self.stream_id
        entries: list[rec.Entry] = []
        append, entry = entries.append, rec.Entry
        for channel, record, seq in batch:
            record["event_id"] = f"{prefix}{seq:012x}"
            record["stream_id"] = stream_id
            record["seq"] = seq
            for name, redact in redactors:
                try:
                    redact(record)
                except BaseException as exc:
                    record = self._redaction_failed(record, self._callers.culprit(name, exc), exc)
                    break
            if builtin_only:
                append(entry(channel, record, dumps_line(record, max_bytes, limits)))
            else:
                append(entry(channel, record, self._encode(record, formatters)))
        return entries

    def _encode(self, record: Record, formatters: list[tuple[str, RecordCall]]) -> bytes:
        for name, format_record in formatters:
            try:
                line = format_record(record)
            except BaseException as exc:
                culprit = self._callers.culprit(name, exc)
                self.reporter.problem("FORMAT_FAILED", culprit, error=f"{type(exc).__name__}: {exc}")
                break
            if line is None:
                continue
            if format_record is _builtin_format_record and isinstance(line, bytes):
                return line  # dumps_line output: one line by construction
            checked = one_line(line) if isinstance(line, bytes) else None
            if checked is not None:
                return checked
            if name == _ALL_AT_ONCE:  # through a wrapper: whichever implementation answered first
                name = f"one of {self._callers.format_candidates}"
            self.reporter.problem("FORMAT_FAILED", name, error="format_record must return one line of bytes")
            break
        return dumps_line(record, self._max_bytes, self._limits)

    def _redaction_failed(self, record: Record, plugin: str, exc: BaseException) -> Record:
        self.reporter.problem("REDACTION_FAILED", plugin, error=type(exc).__name__)
        stub = {key: record[key] for key in _STUB_KEYS if key in record}
        stub["message"] = "record withheld: a redactor failed on it"
        stub["redaction_failed"] = plugin
        return stub

    def _dispatch(self, entries: list[rec.Entry]) -> None:
        size = sum([len(entry.line) for entry in entries])
        for runner in self._runners.values():
            if not runner.offer(entries, size):
                runner.lost += len(entries)
                self.reporter.problem("SINK_BACKLOG_FULL", runner.name, lost=len(entries), error=_STALLED)

    def _pass_barrier(self, barrier: FlushBarrier) -> None:
        self._refresh_hooks()  # a flush reaches every sink registered when it passes, even one never fed yet
        runners = list(self._runners.values())
        barrier.expect(len(runners))
        for runner in runners:
            runner.offer_barrier(barrier)

    def _refresh_hooks(self) -> None:
        if self.pm is None or not self._callers.refresh(self.pm):
            return
        capacity = self.settings.SINK_QUEUE_SIZE if self.settings else 20_000
        capacity_bytes = self.settings.SINK_QUEUE_BYTES if self.settings else 64 << 20
        current = {name: call for name, call in self._callers.sinks}
        for name in list(self._runners):
            if name not in current:
                self._runners.pop(name).stop()
        for name, call in current.items():
            runner = self._runners.get(name)
            if runner is None or runner._call is not call:
                if runner is not None:
                    runner.stop()
                self._runners[name] = SinkRunner(name, call, capacity, self, capacity_bytes)

    def _check_drops(self) -> None:
        with self._drop_lock:
            count, first, last = self._dropped, self._dropped_first_seq, self._dropped_last_seq
            causes = ", ".join(sorted(self._drop_causes))
            self._dropped = 0
            self._drop_causes = set()
        if not count:
            return
        policy = "block" if self._block else "drop"
        # stderr hears about it at most once per interval; the trail gets every drop, with its seq range.
        self.reporter.problem(
            "RECORDS_DROPPED",
            "queue",
            lost=count,
            error=f"{causes} ({self._maxsize} records, policy {policy})",
        )
        if not self._stopped:
            self._submit_internal(
                rec.pipeline_event(
                    "RECORDS_DROPPED",
                    f"{count} audit records dropped: {causes}",
                    level="ERROR",
                    count=count,
                    first_seq=first,
                    last_seq=last,
                    policy=policy,
                )
            )

    def _check_stuck_sinks(self) -> None:
        limit = max(self.reporter.interval, 1.0)
        now = time.monotonic()
        for runner in self._runners.values():
            since = runner.busy_since
            if since is not None and now - since > limit:
                self.reporter.problem(
                    "SINK_STUCK",
                    runner.name,
                    error=f"one batch has taken {now - since:.0f}s so far",
                    backlog=runner.backlog,
                )

    def _publish_problem(
        self, kind: str, source: str, occurrences: int, lost: int, error: str, details: dict[str, Any]
    ) -> None:
        write_stderr(f"{kind} {source}: {occurrences} time(s), {lost} record(s) lost; last error: {error}")
        if self._stopped or kind in _RECORDED_BY_THEMSELVES:
            return
        self._submit_internal(
            rec.pipeline_event(
                kind,
                f"{kind.replace('_', ' ').lower()}: {source}",
                level="ERROR",
                source=source,
                occurrences=occurrences,
                lost=lost,
                # Since the stream began: a report lost with the records it tells of (a full disk) is made
                # good by the next one written.
                lost_in_stream=self.reporter.totals.get((kind, source), lost),
                error=error,
                **details,
            )
        )

    # --- lifecycle -----------------------------------------------------------------------------------------
    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is queued, stop the threads, close the sinks. True when nothing was left behind.

        Safe to call more than once and from ``atexit``; a hung sink is abandoned after ``timeout`` seconds
        (default ``SHUTDOWN_TIMEOUT``) and what it still held is reported on stderr.
        """
        with self._shutdown_lock:  # one drain at a time (atexit, a SIGTERM thread, a finalizer)
            if self._stopped or self.shutting_down:  # done, or under way further up this thread's stack
                return self._stopped
            self.shutting_down = True  # a SIGTERM from now on must not cut the drain short
            try:
                with _interrupts_ignored():
                    return self._shut_down(timeout)
            finally:
                self.shutting_down = False

    def _shut_down(self, timeout: float | None) -> bool:
        if timeout is None:
            timeout = self.settings.SHUTDOWN_TIMEOUT if self.settings else 5.0
        deadline = time.monotonic() + timeout
        worker = self._worker
        if worker is None and self._queue and self.pm is not None:
            self._drain()  # queued, but no worker was ever started (or could be): deliver from here
        if self.pm is None and self.enabled:
            self._report_never_configured()
        if worker is not None:
            self._check_drops()
            self.reporter.flush_all()  # what went wrong so far goes into the trail, before the last record
            self._announce(
                "PIPELINE_STOPPED",
                "Audit pipeline stopped",
                submitted=self.submitted + 1,
                dropped=self.dropped_total,
            )
            self._stopping = True
            self._wakeup.set()
            worker.join(max(deadline - time.monotonic(), 0.0))
        with self._submit_lock:  # see submit(): no record may be queued after the last drain below
            self._stopped = True
        clean = worker is None or not worker.is_alive()
        if clean:
            self._deliver_leftovers()  # queued as the worker made its last check: written here
        if not clean:
            write_stderr(
                f"the audit worker did not finish in time; {len(self._queue)} queued items not delivered"
            )
        for runner in self._runners.values():
            runner.stop()
        for runner in _join_all(list(self._runners.values()), deadline):
            runner.abandoned = runner.busy_since is not None or bool(runner.backlog)
            if runner.backlog:  # an empty one is only on its way out
                clean = False
                write_stderr(
                    f"sink {runner.name} did not finish in time; {runner.backlog} records not delivered"
                )
        self._check_drops()
        self.reporter.flush_all()  # failures of the last batches: stderr only, the trail is closed
        if self.pm is not None:
            _call_each(self.pm, "audit_shutdown")
        return clean

    def _report_never_configured(self) -> None:
        """At exit of a process whose pipeline was never configured: how many records were never written."""
        left = sum(1 for item in self._queue if not isinstance(item, FlushBarrier)) + self.dropped_total
        if left:
            write_stderr(
                f"{left} audit record(s) never written: the audit pipeline was never set up "
                "(is 'activity_audit' in INSTALLED_APPS?)"
            )

    def _deliver_leftovers(self) -> None:
        """Hand the records queued as the worker made its last check to the sinks, behind their backlogs
        (the sinks' threads still run: they deliver in order, one batch at a time)."""
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, FlushBarrier):
                item.done.set()  # every record submitted before it has been handed over
                continue
            with self._late_lock:
                entries = self._format([item])
                for runner in self._runners.values():
                    runner.deliver_late(entries)

    def after_fork_in_child(self) -> None:
        """Start over in a forked child: the parent owns, and writes, everything queued before the fork."""
        # Keep the parent's queue and backlogs referenced: freeing them would touch (and copy) every page
        # they live on, in every child a preforking server starts.
        _inherited.append((self._queue, self._runners))
        self._new_stream()
        self._apply_limits()
        if self.pm is not None:
            _call_each(self.pm, "audit_after_fork")
            self._refresh_hooks()

    def stats(self) -> dict[str, Any]:
        """Counters for health checks and tests."""
        return {
            "stream_id": self.stream_id,
            "submitted": self.submitted,
            "dropped": self.dropped_total,
            "queued": len(self._queue),
            "sinks": {
                name: {
                    "delivered": r.delivered,
                    "lost": r.lost,
                    "failures": r.failures,
                    "backlog": r.backlog,
                    "backlog_bytes": r.backlog_bytes,
                }
                for name, r in self._runners.items()
            },
        }

    def reset_for_tests(self) -> None:
        """Stop everything and start a fresh stream (tests only)."""
        self.shutdown(timeout=5.0)
        self._new_stream()
        if self.settings is not None and self.pm is not None:
            self.configure(self.settings, self.pm)


@contextlib.contextmanager
def _interrupts_ignored() -> Iterator[None]:
    """Ignore SIGINT (Ctrl-C) on the main thread while the drain runs, when Python's default handler has it.

    ``KeyboardInterrupt`` raised inside the drain would abandon what is still queued; the drain is bounded by
    ``SHUTDOWN_TIMEOUT``. A handler of the project's own is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGINT)
        if previous is not signal.default_int_handler:
            previous = None
        else:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # signals unavailable (an embedded interpreter)
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _join_all(runners: list[SinkRunner], deadline: float) -> list[SinkRunner]:
    """Wait for every runner until ``deadline``; a hung one does not eat the time of the others. Returns the
    runners still busy at the deadline."""
    pending = runners
    while pending:
        pending = [runner for runner in pending if not runner.join(0.0)]
        if not pending or time.monotonic() >= deadline:
            break
        pending[0].join(min(0.02, max(deadline - time.monotonic(), 0.0)))
    return pending


# What a forked child inherited from its parent's pipeline, never used and never freed (see after_fork).
_inherited: list[object] = []


def _call_each(pm: pluggy.PluginManager, hook_name: str) -> None:
    """Call every implementation of a lifecycle hook, each isolated from the others' failures (any
    exception: a plugin's ``CancelledError`` or ``SystemExit`` is its failure, not a reason to skip the
    others' shutdown, which closes their files)."""
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        try:
            impl.function()
        except BaseException as exc:
            write_stderr(f"{hook_name} of {_plugin_name(pm, impl)} failed: {type(exc).__name__}: {exc}")


pipeline = Pipeline()


# Whether the fork under way was called from a thread other than the main one (read in the new child).
_forking_off_the_main_thread = False


def _before_fork() -> None:
    global _forking_off_the_main_thread
    _forking_off_the_main_thread = threading.current_thread() is not threading.main_thread()


def _after_fork_in_child() -> None:
    pipeline.after_fork_in_child()
    pipeline.watch_main_thread = _forking_off_the_main_thread
    arrange_drain_at_child_exit(pipeline, pipeline.shutdown)


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
atexit.register(pipeline.shutdown)
