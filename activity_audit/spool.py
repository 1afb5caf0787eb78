"""At-least-once delivery to a remote store through a local spool on disk.

A remote sink (S3, SFTP, ...) must not lose records when the remote is down or the process restarts, and must
not slow the application. So its ``sink`` hook only appends the batch to a local *segment* file and returns; a
background thread closes segments, compresses them and uploads them. The model is Vector's and Fluent Bit's
disk buffers: write first, ship from disk, accept duplicates, dedupe by ``event_id``.

Files, in ``LOG_DIR/spool/<plugin>/`` (``DIR_MODE``, files ``FILE_MODE``)::

    <created_ns>-<pid>-<random>.new     a segment being created: empty, and never looked at by other spools
    <created_ns>-<pid>-<random>.open    the segment being written, flock'ed by its writer for its lifetime
    <created_ns>-<pid>-<random>.ready   a closed segment waiting for upload, deleted once uploaded

Contract:

* :meth:`Spool.append` writes whole lines and fsyncs before it returns; a batch that would take the spool past
  ``spool_max_bytes`` is refused with :class:`SpoolFull` (the core then counts it lost and records
  ``SINK_FAILED``), and the lines of a failed write or fsync are cut back out of the segment, so that
  :class:`PartialDelivery` counts exactly the records that stay (those fsynced before, of another stream);
* a segment is closed when it reaches ``segment_max_bytes`` or ``segment_max_age`` seconds, and when the
  records' ``stream_id`` changes, so that one segment holds one stream;
* closed segments are uploaded oldest first (by name: a spool never names a segment below one it created
  before, nor below one it found in the directory when it started, even when the wall clock stepped back)
  as gzip (``mtime=0``, so a retry sends the same bytes) under the deterministic name
  :meth:`Segment.object_name`, so a repeated upload replaces itself; a segment is deleted only after its
  upload succeeded;
* a failed upload is retried with exponential backoff and full jitter between ``retry_initial`` and
  ``retry_max`` seconds, reported through ``pipeline.reporter`` (``UPLOAD_FAILED``, once per
  ``REPORT_INTERVAL``); later segments wait, so delivery stays in order;
* an ``.open`` segment whose writer died (SIGKILL) is no longer locked: any spool on the same directory trims
  its torn last line, closes it and uploads it. Several processes (gunicorn workers) share one directory: each
  writes its own segment and an upload is claimed with ``flock``;
* a segment that cannot be closed (a failed ``fsync`` or ``rename``) stays the segment being written, and
  closing it is tried again later; its records stay where they are;
* the directory may be removed or renamed under a running spool (an operator cleaning ``LOG_DIR``): the next
  batch, or the thread when the segment is due, makes it again and moves the lines of the segment being
  written (held through its descriptor only, now) into a new segment there. Records that still cannot be
  moved when the spool closes are lost: counted, and reported as ``SINK_FAILED``;
* :meth:`Spool.close` (at ``audit_shutdown``) stops the thread and closes the segment without uploading:
  the next start delivers it. :meth:`Spool.after_fork` lets a forked child start its own segment and thread.

Guarantee: every record that reached :meth:`Spool.append` is uploaded at least once, unless the spool was full
or its directory could not be made again (counted and reported), or closed segments were lost with the disk or
deleted from it.

Why an unlocked ``.open`` segment is always abandoned: a segment is created as ``.new``, flock'ed, and only
then renamed to ``.open``. So no process can ever open an ``.open`` name whose inode its writer does not lock
yet; taking the flock of an ``.open`` segment proves that its writer closed it (it sealed or deleted it first:
the adopter then finds it gone, by name or by link count) or died. Creating it as ``.open`` directly would
leave a window between ``open`` and ``flock`` in which another spool could adopt the new, empty segment and
delete it under its writer, whose records would then be fsynced into a deleted file.

A ``.new`` file stays behind only if its creator died before the rename; it is empty. Another spool deletes it
once it is older than :data:`STALE_NEW_SECONDS`, holding its flock while it does. A writer takes that flock
(waiting) before renaming, so the two never overlap: either the writer renames first and the deleter finds the
name gone, or the deleter deletes first and the writer's rename fails, and it creates another segment.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import gzip
import os
import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from .errors import PartialDelivery
from .reporting import write_stderr
from .threads import start_thread

if TYPE_CHECKING:
    from .conf import AuditSettings
    from .plugin_options import PluginOptions
    from .records import Entry

NEW_SUFFIX = ".new"
OPEN_SUFFIX = ".open"
READY_SUFFIX = ".ready"

# A .new file older than this is a leftover of a creator that died; creating a segment takes microseconds.
STALE_NEW_SECONDS = 60.0

_wall_clock_ns = time.time_ns  # segment names start with it (a name for tests to replace)

SPOOL_OPTION_KEYS = ("segment_max_bytes", "segment_max_age", "spool_max_bytes", "retry_initial", "retry_max")


@dataclass(frozen=True)
class SpoolOptions:
    """Where the spool lives and how it cuts, caps and retries."""

    directory: Path
    segment_max_bytes: int = 8 << 20
    segment_max_age: float = 60.0
    max_bytes: int = 1 << 30
    retry_initial: float = 1.0
    retry_max: float = 300.0
    file_mode: int = 0o640
    dir_mode: int = 0o750

    @classmethod
    def read(cls, options: PluginOptions, settings: AuditSettings) -> SpoolOptions:
        """The spool options of a plugin (keys :data:`SPOOL_OPTION_KEYS`), checked, with their defaults."""
        retry_initial = options.seconds("retry_initial", cls.retry_initial, minimum=0.01)
        return cls(
            directory=settings.LOG_DIR / "spool" / options.plugin,
            segment_max_bytes=options.integer("segment_max_bytes", cls.segment_max_bytes, minimum=1024),
            segment_max_age=options.seconds("segment_max_age", cls.segment_max_age, minimum=0.01),
            max_bytes=options.integer("spool_max_bytes", cls.max_bytes, minimum=1024),
            retry_initial=retry_initial,
            retry_max=cls._read_retry_max(options, retry_initial),
            file_mode=settings.FILE_MODE,
            dir_mode=settings.DIR_MODE,
        )

    @classmethod
    def _read_retry_max(cls, options: PluginOptions, retry_initial: float) -> float:
        """``retry_max``, at least ``retry_initial``; when absent, the default raised to ``retry_initial``."""
        retry_max = options.seconds("retry_max", max(cls.retry_max, retry_initial), minimum=0.01)
        if retry_max < retry_initial:
            problem = f"at least retry_initial ({retry_initial:g}), got {retry_max:g}."
            raise options.error("retry_max", f"must be a number of seconds of {problem}")
        return retry_max


@dataclass(frozen=True)
class Segment:
    """One closed segment as it is uploaded: gzip data and what its records say about themselves."""

    data: bytes
    records: int
    stream_id: str
    first_seq: int
    last_seq: int
    first_timestamp: dt.datetime

    def object_name(self, prefix: str = "") -> str:
        """``[<prefix>/]YYYY/MM/DD/HH/<stream_id>-<first_seq>-<last_seq>.jsonl.gz``, hour of the first record.

        The same segment always gets the same name, and no two segments do: a record belongs to one segment
        and ``(stream_id, seq)`` names one record (records without that envelope are named after their
        segment's file, see :func:`build_segment`). Seqs are zero-padded so that names sort by seq.
        """
        hour = self.first_timestamp.astimezone(dt.timezone.utc).strftime("%Y/%m/%d/%H")
        name = f"{hour}/{self.stream_id}-{self.first_seq:012d}-{self.last_seq:012d}.jsonl.gz"
        prefix = prefix.strip("/")
        return f"{prefix}/{name}" if prefix else name


class Uploader(Protocol):
    """What a remote sink provides to the spool; called on the spool's thread only."""

    def upload(self, name: str, segment: Segment) -> None:
        """Store ``segment.data`` under ``name`` below the remote's base (replacing what has that name).

        ``name`` is :meth:`Segment.object_name` (``YYYY/MM/DD/HH/<stream>-<first>-<last>.jsonl.gz``). Raise
        when the data is not stored; the message is reported as is, so it must name the remote and the cause
        and must not contain a secret.
        """

    def close(self) -> None:
        """Close connections (at shutdown, or after a failure, before the next attempt)."""

    def forget(self) -> None:
        """Drop connections inherited by a forked child without closing them cleanly."""


class SpoolFull(Exception):
    """The batch was refused because the spool reached ``spool_max_bytes``."""


class _LinesLeft(Exception):
    """A write or fsync failed and its lines could not be cut back out: the first ``count`` of them stay."""

    def __init__(self, count: int, error: OSError) -> None:
        super().__init__(str(error))
        self.count, self.error = count, error


class Spool:
    """The spool of one remote sink: :meth:`append` on the sink thread, uploads on a thread of its own."""

    def __init__(self, name: str, options: SpoolOptions, uploader: Uploader) -> None:
        self.name = name
        self.options = options
        self.uploader = uploader
        self.uploaded_segments = 0
        self.uploaded_records = 0
        # The name of the last segment this spool created (kept across forks). It starts above every segment
        # already there, so that this run's segments follow the backlog of the last even if the clock stepped
        # back over the restart.
        self._last_created_ns = _newest_created_ns(options.directory)
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._path: Path | None = None
        self._segment_stream: str | None = None
        self._segment_bytes = 0
        self._segment_records = 0
        self._segment_opened = 0.0
        self._used_bytes: int | None = None
        self._descriptors = _Descriptors()

    # --- writing (sink thread) ------------------------------------------------------------------------------
    def append(self, entries: Sequence[Entry]) -> None:
        """Store ``entries`` durably in the spool; return when they are fsynced. See the module contract.

        Raises :class:`PartialDelivery` when only the first ``delivered`` records are stored (the others are
        not in the spool, and never delivered), and other errors when none is.
        """
        if not entries:
            return
        with self._lock:
            self._ensure_directory()
            self._keep_segment_named()
            self._check_room(entries)
            self._store(entries)
            if self._segment_bytes >= self.options.segment_max_bytes or self._stop.is_set():
                self._seal_stored()
        self.start()

    def _store(self, entries: Sequence[Entry]) -> None:
        """Write and fsync ``entries``, a run of one stream at a time; see :meth:`append` for failures."""
        stored = 0
        for stream_id, lines in _runs_by_stream(entries):
            try:
                self._store_run(stream_id or "", lines)
            except OSError as exc:
                raise PartialDelivery(stored, f"spool write failed: {_describe(exc)}") from exc
            except _LinesLeft as left:
                message = f"spool write failed: {_describe(left.error)}"
                raise PartialDelivery(stored + left.count, message) from left.error
            stored += len(lines)

    def _store_run(self, stream_id: str, lines: list[bytes]) -> None:
        """Write ``lines`` of ``stream_id`` to its segment and fsync them.

        On :class:`OSError`, none of them is in the spool: a failed write or fsync is cut back out of the
        segment. When cutting back fails too, :class:`_LinesLeft` tells how many whole lines stay (they are
        delivered with the segment, which is let go so that nothing is written after a torn line: adopting it
        trims that line).
        """
        if self._fd is not None and stream_id != self._segment_stream:
            self._seal_current()
        if self._fd is None:
            self._open_segment(stream_id)
        assert self._fd is not None
        data = b"".join(line + b"\n" for line in lines)
        view, done = memoryview(data), 0
        try:
            while done < len(data):
                done += os.write(self._fd, view[done:])
            os.fsync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self._segment_bytes)
            except OSError:
                self._let_go_of_segment()
                raise _LinesLeft(data[:done].count(b"\n"), exc) from exc
            raise
        self._segment_bytes += len(data)
        self._segment_records += len(lines)
        if self._used_bytes is not None:
            self._used_bytes += len(data)

    def _open_segment(self, stream_id: str) -> None:
        fd, path = self._new_locked_segment()
        try:
            _fsync_directory(self.options.directory)  # its name must outlive a crash as long as its lines
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            self._descriptors.close(fd)
            raise
        self._fd, self._path, self._segment_stream = fd, path, stream_id
        self._segment_bytes, self._segment_records, self._segment_opened = 0, 0, time.monotonic()
        self._wake.set()  # the uploader recomputes when this segment is due

    def _new_locked_segment(self) -> tuple[int, Path]:
        while True:
            created = self._create_locked_segment()
            if created is not None:
                return created

    def _create_locked_segment(self) -> tuple[int, Path] | None:
        """Create an empty ``.open`` segment whose flock we hold from before it had that name.

        None when a sweep of leftovers deleted the ``.new`` file before we locked it: the caller tries again.
        """
        # Names sort in creation order, even after the wall clock stepped back.
        created_ns = self._last_created_ns = max(_wall_clock_ns(), self._last_created_ns + 1)
        stem = f"{created_ns:020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        creating = self.options.directory / f"{stem}{NEW_SUFFIX}"
        # Read and write: a segment whose name is lost is read back (see _keep_segment_named).
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = self._descriptors.open(creating, flags, self.options.file_mode)
        try:
            os.fchmod(fd, self.options.file_mode)
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a sweep decides about this file
            path = creating.with_suffix(OPEN_SUFFIX)
            os.rename(creating, path)
        except FileNotFoundError:
            self._descriptors.close(fd)
            return None
        except BaseException:
            self._descriptors.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(creating)
            raise
        return fd, path

    def _seal_current(self) -> None:
        """Close the segment being written: fsync, rename to ``.ready``, unlock. The caller holds _lock.

        Raises :class:`OSError` when it cannot; the segment is then still the one being written, its lines
        still held (under its name, or through its descriptor when it lost its name), and sealing it is tried
        again later. An empty segment is simply deleted.
        """
        fd, path = self._fd, self._path
        if fd is None or path is None:
            return
        if self._segment_bytes:
            self._ensure_directory()
            self._keep_segment_named()
            fd, path = self._fd, self._path
            assert fd is not None and path is not None
            os.fsync(fd)
            os.rename(path, path.with_suffix(READY_SUFFIX))
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._let_go_of_segment()
        with contextlib.suppress(OSError):
            _fsync_directory(self.options.directory)  # the lines are fsynced: under either name they go out
        self._wake.set()

    def _seal_stored(self) -> None:
        """Seal the segment after a batch that is stored already: a failure must not fail that batch. The
        upload thread tries again (and reports what fails); when there is none any more, the segment is let go
        at once (see :meth:`_abandon_current`)."""
        try:
            self._seal_current()
        except OSError as exc:
            if self._stop.is_set():
                self._abandon_current(exc)

    def _let_go_of_segment(self) -> None:
        """Forget the segment being written and close its descriptor (releasing its flock)."""
        fd = self._fd
        self._fd = self._path = self._segment_stream = None
        self._segment_bytes = self._segment_records = 0
        if fd is not None:
            self._descriptors.close(fd)

    def _abandon_current(self, exc: OSError) -> None:
        """Let go of a segment that could not be sealed (at :meth:`close`). The caller holds _lock.

        Under its ``.open`` name, its lines are adopted by the next start. A segment that lost its name (its
        directory was removed, and could not be made again) loses them: they are reported lost, as
        ``SINK_FAILED`` of this spool's sink, with the error that kept them from being moved.
        """
        try:
            lost_name = self._segment_lost_name()
        except OSError:
            lost_name = True  # when it cannot be told, the records are counted lost rather than not at all
        lost = self._segment_records if lost_name else 0
        self._let_go_of_segment()
        if lost:
            error = f"spool segment lost with its directory {self.options.directory}: {_describe(exc)}"
            self._report("SINK_FAILED", lost=lost, error=error)

    def _segment_lost_name(self) -> bool:
        """Whether the segment being written no longer has its name (its directory was removed or renamed)."""
        assert self._fd is not None and self._path is not None
        try:
            held = os.fstat(self._fd)
            named = os.stat(self._path, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return True
        return held.st_nlink == 0 or (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino)

    def _keep_segment_named(self) -> None:
        """Make sure the lines of the segment being written are in the spool directory (caller holds _lock).

        When its directory was removed or renamed since it was opened, the segment is held only through its
        descriptor: its lines are copied into a new segment in the directory (made again by the caller), and
        the old file emptied, so that where it still has a name (a renamed directory) it delivers nothing
        twice. Raises :class:`OSError` when that cannot be done; the old segment is then still held.
        """
        if self._fd is None or not self._segment_lost_name():
            return
        content = _read_all(self._fd)[: self._segment_bytes]
        fd, path = self._new_locked_segment()
        try:
            _write_all(fd, content)
            os.fsync(fd)
            _fsync_directory(self.options.directory)
        except BaseException:
            self._descriptors.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        self._descriptors.close(self._fd)
        self._fd, self._path, self._used_bytes = fd, path, None
        self._segment_bytes, self._segment_records = len(content), content.count(b"\n")

    def _ensure_directory(self) -> None:
        directory = self.options.directory
        if not directory.is_dir():
            directory.mkdir(parents=True, mode=self.options.dir_mode, exist_ok=True)
            os.chmod(directory, self.options.dir_mode)

    def _check_room(self, entries: Sequence[Entry]) -> None:
        """Raise :class:`SpoolFull` unless ``entries`` fit under ``spool_max_bytes``. The caller holds _lock.

        The count is cached; before refusing, it is made again from the directory, where uploads (this
        process's or another's) may have made room since.
        """
        incoming = sum(len(entry.line) + 1 for entry in entries)
        if self._used() + incoming <= self.options.max_bytes:
            return
        self._used_bytes = None
        used = self._used()
        if used + incoming > self.options.max_bytes:
            message = (
                f"spool {self.options.directory} is full ({used} bytes, cap spool_max_bytes="
                f"{self.options.max_bytes}): {len(entries)} records refused; the remote is not keeping up"
            )
            raise SpoolFull(message)  # the core counts the batch lost and reports SINK_FAILED

    def _used(self) -> int:
        """The bytes of every segment in the directory, counted once and then kept up to date by this spool's
        own writes and deletions (a pass of the upload thread has it counted again)."""
        if self._used_bytes is None:
            self._used_bytes = sum(size for _path, size in self._segment_files())
        return self._used_bytes

    def _delete_uploaded(self, path: Path, size: int) -> None:
        """Delete the segment ``path`` (``size`` bytes) and take it off the count, at once."""
        with self._lock:
            with contextlib.suppress(FileNotFoundError):  # the directory was removed: it is gone as well
                os.unlink(path)
            if self._used_bytes is not None:
                self._used_bytes = max(self._used_bytes - size, 0)

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the upload thread unless it runs (called on every batch; cheap when running). A thread that
        died (it should not: :meth:`_run` survives every ``Exception``) is replaced."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            if self._thread is thread and not self._stop.is_set():
                self._thread = start_thread(self._run, f"activity-audit-spool:{self.name}")

    def close(self, timeout: float = 2.0) -> None:
        """Stop the upload thread and close the segment; what is not uploaded waits for the next start."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            try:
                self._seal_current()
            except OSError as exc:
                self._abandon_current(exc)
        if thread is None or not thread.is_alive():
            self.uploader.close()

    def after_fork(self) -> None:
        """In a forked child: drop the parent's descriptors and threads; start afresh.

        Every segment descriptor the parent held at the fork is closed here, also one its thread was only
        opening or holding for a moment (adopting, sweeping, uploading, creating): a copy left open would keep
        that segment's flock after the parent closed its own, and no process could upload it while this one
        lives. The parent's locks stay, held through its own descriptors.
        """
        self._descriptors.close_inherited()
        self.uploader.forget()
        self._reset_process_state()

    def wake(self) -> None:
        """Ask the upload thread to look at the spool now instead of at its next due time."""
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        """Counters for health checks and tests."""
        return {
            "directory": str(self.options.directory),
            "backlog_segments": len(self.backlog()),
            "uploaded_segments": self.uploaded_segments,
            "uploaded_records": self.uploaded_records,
        }

    def backlog(self) -> list[Path]:
        """The segment files not yet uploaded, oldest first (``.open`` ones included)."""
        return [path for path, _size in self._segment_files()]

    # --- uploading (spool thread) ---------------------------------------------------------------------------
    def _run(self) -> None:
        """The upload thread: passes over the spool until :meth:`close`; a failed pass is retried later."""
        from .threads import pipeline_thread

        # Logging by boto3 or paramiko on this thread must not re-enter the pipeline.
        pipeline_thread.active = True
        backoff = Backoff(self.options.retry_initial, self.options.retry_max)
        while not self._stop.is_set():
            try:
                self._cut_if_old()
                self._adopt_abandoned()
                self._upload_ready()
            except Exception as exc:
                delay = backoff.next_delay()
                self._failed(exc, delay)
                self._stop.wait(delay)
                continue
            backoff.reset()
            self._wake.wait(self._seconds_until_cut())
            self._wake.clear()

    def _failed(self, exc: Exception, delay: float) -> None:
        """Drop the uploader's connections and report ``UPLOAD_FAILED``.

        Never raises: whatever fails here (the uploader's ``close``, the reporter) must not end the thread, or
        nothing would be uploaded again.
        """
        details: dict[str, Any] = {}
        try:
            self.uploader.close()
        except Exception as close_exc:
            details["close_error"] = _describe(close_exc)
        with contextlib.suppress(OSError):
            details["backlog_segments"] = len(self.backlog())
        self._report("UPLOAD_FAILED", error=_describe(exc), retry_in_seconds=round(delay, 1), **details)

    def _report(self, kind: str, lost: int = 0, error: str = "", **details: Any) -> None:
        """Report a problem of this spool to the pipeline; never raises (stderr gets it if that fails)."""
        from .dispatch import pipeline

        try:
            pipeline.reporter.problem(kind, self.name, lost=lost, error=error, **details)
        except Exception as report_exc:
            write_stderr(
                f"{kind} {self.name}: {lost} lost; {error}; reporting it failed: {_describe(report_exc)}"
            )

    def _seconds_until_cut(self) -> float:
        if self._fd is None:
            return self.options.segment_max_age
        age = time.monotonic() - self._segment_opened
        return max(self.options.segment_max_age - age, 0.01)

    def _cut_if_old(self) -> None:
        with self._lock:
            age = time.monotonic() - self._segment_opened
            if self._fd is not None and age >= self.options.segment_max_age:
                self._seal_current()

    def _adopt_abandoned(self) -> None:
        """Close the ``.open`` segments whose writer is gone (its flock died with it); drop stale ``.new``."""
        self._sweep_stale_new()
        for path, _size in self._segment_files():
            if path.suffix != OPEN_SUFFIX or path == self._path:
                continue
            fd = self._descriptors.claim(path, os.O_RDWR)
            if fd is None:
                continue  # its writer is alive, or another process adopted it
            try:
                data = _read_all(fd)
                whole = data.rfind(b"\n") + 1
                if whole < len(data):
                    os.ftruncate(fd, whole)  # the writer died in the middle of a line it never acknowledged
                    os.fsync(fd)
                try:
                    if whole:
                        os.rename(path, path.with_suffix(READY_SUFFIX))
                    else:
                        os.unlink(path)
                except FileNotFoundError:
                    continue  # another process adopted it between our listing and our lock
                _fsync_directory(self.options.directory)
            finally:
                self._descriptors.close(fd)

    def _sweep_stale_new(self) -> None:
        """Delete the ``.new`` files left by creators that died before renaming them (they are empty)."""
        try:
            names = [name for name in os.listdir(self.options.directory) if name.endswith(NEW_SUFFIX)]
        except FileNotFoundError:
            return
        for name in names:
            path = self.options.directory / name
            if time.time() - _created_at(path).timestamp() < STALE_NEW_SECONDS:
                continue
            fd = self._descriptors.claim(path, os.O_RDONLY)
            if fd is None:
                continue  # its creator holds it (and renames it next), or it is gone
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(
                        path
                    )  # the name is still this inode: its creator cannot rename it while we lock it
            finally:
                self._descriptors.close(fd)

    def _upload_ready(self) -> None:
        """Upload every closed segment, oldest first; stop at the first failure so that order is kept."""
        with self._lock:
            self._used_bytes = None  # recount on the next append: other processes share the directory
        for path, _size in self._segment_files():
            if self._stop.is_set():
                return
            if path.suffix == READY_SUFFIX:
                self._upload_one(path)

    def _upload_one(self, path: Path) -> None:
        fd = self._descriptors.claim(path, os.O_RDONLY)
        if fd is None:
            return  # another process is uploading it, or has uploaded it
        try:
            content = _read_all(fd)
            if not content.strip():
                os.unlink(path)
                return
            segment = build_segment(content, fallback_time=_created_at(path), fallback_name=path.stem)
            self.uploader.upload(segment.object_name(), segment)
            self._delete_uploaded(path, len(content))
            self.uploaded_segments += 1
            self.uploaded_records += segment.records
        finally:
            self._descriptors.close(fd)

    def _segment_files(self) -> list[tuple[Path, int]]:
        """``(path, size)`` of every segment in the directory, oldest first."""
        try:
            names = sorted(os.listdir(self.options.directory))
        except FileNotFoundError:
            return []
        files = []
        for name in names:
            if name.endswith((OPEN_SUFFIX, READY_SUFFIX)):
                path = self.options.directory / name
                try:
                    files.append((path, path.stat().st_size))
                except FileNotFoundError:
                    continue
        return files


# Taken by every fork (os.register_at_fork) and around opening and closing a segment descriptor, so that a
# child never inherits a segment descriptor that its parent has not noted yet, or no longer notes. Reentrant:
# in the child, the forking thread still holds it while the other fork hooks run, and those may write.
_FORK_GUARD = threading.RLock()
os.register_at_fork(
    before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release, after_in_child=_FORK_GUARD.release
)


class _Descriptors:
    """The segment descriptors one spool holds in this process, whatever holds them (the current segment, an
    upload, an adoption, a sweep), so that a forked child can close its copies of all of them.

    A flock belongs to the open file and lasts until its last descriptor closes, the copies in children
    included.
    """

    def __init__(self) -> None:
        self._held: set[int] = set()

    def open(self, path: Path, flags: int, mode: int = 0o600) -> int:
        """``os.open`` the segment file ``path`` (with ``O_CLOEXEC``) and note the descriptor."""
        with _FORK_GUARD:
            fd = os.open(path, flags | os.O_CLOEXEC, mode)
            self._held.add(fd)
        return fd

    def close(self, fd: int) -> None:
        """Close a descriptor :meth:`open` returned."""
        with _FORK_GUARD:
            self._held.discard(fd)
            os.close(fd)

    def claim(self, path: Path, flags: int) -> int | None:
        """Open the segment ``path`` and take its ``flock`` without waiting; None when another process holds
        the lock or the file is gone (even if it went after we opened it). :meth:`close` releases it."""
        try:
            fd = self.open(path, flags | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_nlink:
                return fd
        except BlockingIOError:
            pass
        except BaseException:
            self.close(fd)
            raise
        self.close(fd)
        return None

    def close_inherited(self) -> None:
        """In a forked child: close every descriptor noted when the parent forked (the only thread here is the
        forking one, which may still hold :data:`_FORK_GUARD`)."""
        for fd in self._held:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held.clear()


class Backoff:
    """Exponential backoff with jitter: delay n is uniform in [d/2, d], d = min(initial * 2**n, maximum)."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.initial * 2 ** min(self.failures, 32), self.maximum)
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


def build_segment(content: bytes, fallback_time: dt.datetime, fallback_name: str) -> Segment:
    """Describe a closed segment from its JSON lines: stream, first and last seq, first timestamp, gzip data.

    Records that do not carry the envelope (a custom formatter dropped it) name the segment after its file
    instead: stream ``segment-<fallback_name>`` (the stem of the segment's file name, which no other segment
    has and which a retry keeps), seqs 0, the hour of ``fallback_time`` (when the segment was created). Not
    after its content: two segments holding the same bytes (the same event twice) would replace each other.
    """
    lines = content.splitlines()
    first, last = _envelope(lines[0]), _envelope(lines[-1])
    if first is None or last is None or first[0] != last[0]:
        stream_id, first_seq, last_seq = f"segment-{fallback_name}", 0, 0
        timestamp = fallback_time
    else:
        stream_id, first_seq, last_seq = first[0], first[1], last[1]
        timestamp = first[2] or fallback_time
    return Segment(
        data=gzip.compress(content, compresslevel=6, mtime=0),
        records=len(lines),
        stream_id=stream_id,
        first_seq=first_seq,
        last_seq=last_seq,
        first_timestamp=timestamp,
    )


def _envelope(line: bytes) -> tuple[str, int, dt.datetime | None] | None:
    try:
        record = orjson.loads(line)
        stream_id, seq = record["stream_id"], record["seq"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(stream_id, str) or not isinstance(seq, int):
        return None
    try:
        timestamp: dt.datetime | None = dt.datetime.fromisoformat(record["timestamp"])
    except (KeyError, TypeError, ValueError):
        timestamp = None
    if timestamp is not None and timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=dt.timezone.utc)
    return stream_id, seq, timestamp


def _runs_by_stream(entries: Sequence[Entry]) -> list[tuple[str | None, list[bytes]]]:
    """Consecutive entries grouped by ``stream_id``, in order."""
    runs: list[tuple[str | None, list[bytes]]] = []
    for entry in entries:
        stream_id = entry.record.get("stream_id")
        if not runs or runs[-1][0] != stream_id:
            runs.append((stream_id, []))
        runs[-1][1].append(entry.line)
    return runs


def _created_at(path: Path) -> dt.datetime:
    try:
        nanoseconds = int(path.name.split("-", 1)[0])
    except ValueError:
        nanoseconds = 0
    return dt.datetime.fromtimestamp(nanoseconds / 1e9, dt.timezone.utc)


def _newest_created_ns(directory: Path) -> int:
    """The creation time in the name of the newest segment file in ``directory`` (any suffix), or 0."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    suffixes = (NEW_SUFFIX, OPEN_SUFFIX, READY_SUFFIX)
    stamps = [name.split("-", 1)[0] for name in names if name.endswith(suffixes)]
    return max((int(stamp) for stamp in stamps if stamp.isdigit()), default=0)


def _write_all(fd: int, data: bytes) -> None:
    view, done = memoryview(data), 0
    while done < len(data):
        done += os.write(fd, view[done:])


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"
