"""Built-in ``sink``: JSON-lines files in ``LOG_DIR``, one file per channel.

``audit.log`` (AUDIT records and the pipeline's own events), ``api.log`` (API records), ``app.log`` (container
logs routed by the ``LOGGING`` helpers), and ``<channel>.log`` for any other channel a handler names.

Contract:

* the directory, and any missing parent of it, is created with ``DIR_MODE`` (0750) and files with
  ``FILE_MODE`` (0640), whatever the umask; a symlink in place of a log file is refused;
* at start-up (``audit_configure``) ``audit.log``, ``api.log`` and an existing ``app.log`` are opened, so a
  file that cannot be written (a directory in its place, no permission) stops start-up naming ``LOG_DIR`` and
  the file (a missing ``app.log`` is created on first use: a project that routes no logs there gets none);
* each batch is appended to each file with ``O_APPEND`` under an exclusive ``flock``, so several processes
  (gunicorn workers) can share the files without tearing or interleaving lines;
* a failed write (disk full, quota, I/O error) is cut back to the last whole line before the lock is released,
  so no torn line is ever left behind, and exactly the records that did not make it are reported lost;
* a file that ends inside a line (its writer was killed mid-write: SIGKILL, the OOM killer) gets a newline
  before the next batch, so that fragment stays one unreadable line and no record is glued to it;
* closing the files at exit waits at most ``CLOSE_TIMEOUT`` seconds for a write under way on another thread
  (one waiting for the ``flock`` of a process frozen mid-write): past that, the files are left for the OS to
  close, and stderr says so;
* a batch is written file by file, and a file that fails costs only its own records: the others are still
  written, and the sink reports exactly how many records were stored (``PartialDelivery``);
* a file renamed or removed by a rotation tool is reopened on the next batch; if ``LOG_DIR`` itself was
  removed or renamed, it is created again (with ``DIR_MODE``);
* with ``FSYNC_INTERVAL`` seconds set (default 1), data is fsynced at most that long after it was written;
  a failed fsync is reported as a loss of the whole batch, because the kernel may have dropped the pages.

Guarantee: on a graceful stop nothing is lost; on a crash of the process nothing that reached ``sink`` is
lost; on a crash of the machine, at most ``FSYNC_INTERVAL`` seconds of records.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..conf import AuditSettings
from ..errors import PartialDelivery
from ..markers import hookimpl
from ..records import CHANNEL_API, CHANNEL_APP, CHANNEL_AUDIT, Entry
from ..reporting import write_stderr

STANDARD_CHANNELS = (CHANNEL_AUDIT, CHANNEL_API, CHANNEL_APP)
_SAFE_CHANNEL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$")
# Seconds closing the files waits for a write under way on another thread. The pipeline has already waited
# for its sinks until its own deadline (SHUTDOWN_TIMEOUT), and counted what a hung one still held as lost.
CLOSE_TIMEOUT = 1.0
_OPEN_FLAGS = os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW


def file_name(channel: str) -> str:
    """The file a channel is written to: ``<channel>.log``; an unsafe channel name goes to ``app.log``."""
    stem = channel.removesuffix(".log")
    return f"{stem}.log" if _SAFE_CHANNEL.match(stem) else f"{CHANNEL_APP}.log"


def make_directories(directory: Path, mode: int) -> None:
    """Create ``directory`` and each missing parent with exactly ``mode``, whatever the umask.

    Directories that exist already are left as they are; one created meanwhile by another process is fine.
    """
    missing: list[Path] = []
    for path in (directory, *directory.parents):
        if path.exists():
            break
        missing.append(path)
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            if not path.is_dir():
                raise
            continue
        os.chmod(path, mode)  # mkdir applies the umask


class _WriteFailed(Exception):
    def __init__(self, written_records: int, cause: OSError) -> None:
        super().__init__(str(cause))
        self.written_records = written_records
        self.cause = cause


@dataclass
class _OpenFile:
    path: Path
    fd: int
    inode: tuple[int, int]
    dirty: bool = False
    # Whether ``fd`` is a regular file that can be read too (``pread`` of the last byte); not when the file
    # grants this process write permission only, nor for a FIFO or a device.
    readable: bool = True
    # The file's size right after this process's last append, which ended a line there; -1 when unknown.
    known_end: int = -1


class FileSink:
    """The state behind the module's hook functions: open files by channel, fsync bookkeeping."""

    def __init__(self) -> None:
        self.directory: Path | None = None
        self.file_mode = 0o640
        self.dir_mode = 0o750
        self.fsync_interval: float | None = 1.0
        self._files: dict[str, _OpenFile] = {}
        self._last_fsync = time.monotonic()
        # Held while files are opened, written, synced or closed: the sink thread writes, but so does a
        # thread whose record came after shutdown (delivered on that thread), while another closes the files
        # at ``audit_shutdown``. Without it such a write could go to a descriptor closed, or already reused
        # for an unrelated file. Reentrant: a write syncs.
        self._lock = threading.RLock()
        # The file and the number of records of the write under way, for a close that cannot wait for it.
        self._in_flight: tuple[Path, int] | None = None

    def configure(self, settings: AuditSettings) -> None:
        with self._lock:
            self._configure(settings)

    def _configure(self, settings: AuditSettings) -> None:
        self.close()
        self.directory = settings.LOG_DIR
        self.file_mode, self.dir_mode = settings.FILE_MODE, settings.DIR_MODE
        self.fsync_interval = settings.FSYNC_INTERVAL
        if not settings.ENABLED:
            return  # auditing off: nothing is written, not even an empty directory (created when enabled)
        self._prepare_directory()
        for channel in STANDARD_CHANNELS:
            if channel == CHANNEL_APP and not os.path.lexists(self.directory / file_name(channel)):
                continue
            try:
                self._open(channel)
            except OSError as exc:
                raise ImproperlyConfigured(
                    f"ACTIVITY_AUDIT['LOG_DIR'] = '{self.directory}': cannot open {file_name(channel)} for "
                    f"writing ({exc.strerror or exc})."
                ) from exc

    def _prepare_directory(self) -> None:
        directory = self.directory
        assert directory is not None
        try:
            if directory.exists() and not directory.is_dir():
                raise ImproperlyConfigured(
                    f"ACTIVITY_AUDIT['LOG_DIR'] = '{directory}' exists and is not a directory."
                )
            make_directories(directory, self.dir_mode)
        except OSError as exc:
            raise ImproperlyConfigured(
                f"ACTIVITY_AUDIT['LOG_DIR'] = '{directory}' cannot be created ({exc.strerror or exc})."
            ) from exc
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ImproperlyConfigured(
                f"ACTIVITY_AUDIT['LOG_DIR'] = '{directory}' is not writable by this process."
            )

    def write(self, entries: Sequence[Entry]) -> None:
        """Append each record to its channel's file.

        Raises :class:`PartialDelivery` with the number of records stored when any file failed: a file
        that fails costs only its own records, the other files of the batch are still written.
        """
        with self._lock:
            self._write(entries)

    def _write(self, entries: Sequence[Entry]) -> None:
        by_channel: dict[str, list[bytes]] = {}
        for entry in entries:
            by_channel.setdefault(entry.channel, []).append(entry.line)
        written = 0
        failures: list[tuple[str, OSError]] = []
        for channel, lines in by_channel.items():
            try:
                target = self._file_for(channel)
                self._in_flight = (target.path, len(lines))
                _append(target, lines)
            except _WriteFailed as failure:
                written += failure.written_records
                failures.append((channel, failure.cause))
            except OSError as exc:
                failures.append((channel, exc))
            else:
                written += len(lines)
            finally:
                self._in_flight = None
        self._maybe_fsync(written)
        if failures:
            reason = "; ".join(f"{file_name(channel)}: {exc}" for channel, exc in failures)
            raise PartialDelivery(written, reason) from failures[0][1]

    def _file_for(self, channel: str) -> _OpenFile:
        current = self._files.get(channel)
        if current is not None:
            try:
                stat = os.stat(current.path, follow_symlinks=False)
                if (stat.st_dev, stat.st_ino) == current.inode:
                    return current
            except FileNotFoundError:
                pass
            self._close_one(channel)  # rotated or removed: start a new file at the path
        return self._open(channel)

    def _open(self, channel: str) -> _OpenFile:
        assert self.directory is not None, "file sink used before audit_configure"
        path = self.directory / file_name(channel)
        try:
            fd, readable = self._open_fd(path)
        except FileNotFoundError:
            if self.directory.exists():
                raise
            make_directories(self.directory, self.dir_mode)  # removed or renamed while running
            fd, readable = self._open_fd(path)
        try:
            stat = os.fstat(fd)
            if stat.st_mode & 0o777 != self.file_mode and stat.st_uid == os.geteuid():
                os.fchmod(fd, self.file_mode)  # the umask narrowed it, or an older file is wider
        except OSError:
            os.close(fd)
            raise
        opened = _OpenFile(path=path, fd=fd, inode=(stat.st_dev, stat.st_ino), readable=readable)
        self._files[channel] = opened
        return opened

    def _open_fd(self, path: Path) -> tuple[int, bool]:
        """Open ``path`` for appending, and for reading too when it is a regular file that allows it; returns
        the descriptor and whether it can be read. Raises :class:`OSError` when it cannot be opened for
        writing."""
        try:
            fd = os.open(path, os.O_RDWR | _OPEN_FLAGS, self.file_mode)
        except PermissionError:
            return os.open(path, os.O_WRONLY | _OPEN_FLAGS, self.file_mode), False
        if S_ISREG(os.fstat(fd).st_mode):
            return fd, True
        os.close(fd)  # a FIFO or a device: open it for writing only, as before, and as its reader expects
        return os.open(path, os.O_WRONLY | _OPEN_FLAGS, self.file_mode), False

    def _maybe_fsync(self, written: int) -> None:
        interval = self.fsync_interval
        if interval is None or time.monotonic() - self._last_fsync < interval:
            return
        self.sync(written)

    def sync(self, written: int = 0) -> None:
        """fsync every file written since the last sync."""
        with self._lock:
            self._sync(written)

    def _sync(self, written: int) -> None:
        self._last_fsync = time.monotonic()
        for opened in list(self._files.values()):
            if opened.dirty:
                opened.dirty = False
                try:
                    os.fsync(opened.fd)
                except OSError as exc:
                    raise PartialDelivery(0, f"fsync of {opened.path} failed: {exc}") from exc

    def _close_one(self, channel: str) -> None:
        opened = self._files.pop(channel, None)
        if opened is not None:
            with contextlib.suppress(OSError):
                os.close(opened.fd)

    def close(self, timeout: float | None = CLOSE_TIMEOUT) -> bool:
        """fsync (unless ``FSYNC_INTERVAL`` is ``None``) and close every file; True when done.

        Waits at most ``timeout`` seconds (``None``: as long as it takes) for a write under way on another
        thread. When that write does not end in time (it waits for the ``flock`` of another process, frozen
        mid-write by SIGSTOP or ``docker pause``), the files are left open for the OS to close at exit
        (closing them under the writer could send its records into whatever file reuses the descriptor),
        stderr names the write, and False is returned.
        """
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            self._report_close_abandoned(timeout)
            return False
        try:
            for channel in list(self._files):
                opened = self._files[channel]
                if opened.dirty and self.fsync_interval is not None:
                    with contextlib.suppress(OSError):
                        os.fsync(opened.fd)
                self._close_one(channel)
        finally:
            self._lock.release()
        return True

    def _report_close_abandoned(self, timeout: float | None) -> None:
        in_flight = self._in_flight
        what = (
            f"a write of {in_flight[1]} record(s) to {in_flight[0]} is still under way"
            if in_flight is not None
            else "a write is still under way"
        )
        write_stderr(
            f"file sink: closing the log files gave up after {timeout:g}s: {what} (waiting for the lock "
            "another process holds?); the files are left open for the OS to close"
        )

    def forget(self) -> None:
        """Drop descriptors inherited through fork (they share the parent's file offset and locks)."""
        self._lock = threading.RLock()  # another thread of the parent may have held it at the fork
        for channel in list(self._files):
            self._close_one(channel)


def _append(target: _OpenFile, lines: list[bytes]) -> None:
    """Append ``lines``, each ended by a newline, to ``target`` under its exclusive ``flock``.

    A file that ends inside a line first gets a newline (see :func:`_ends_inside_a_line`). Raises
    :class:`_WriteFailed` when a write fails, after cutting the file back to its last whole line.
    """
    data = b"\n".join(lines) + b"\n"
    fcntl.flock(target.fd, fcntl.LOCK_EX)
    try:
        size = os.lseek(target.fd, 0, os.SEEK_END) if target.readable else -1
        start = 1 if _ends_inside_a_line(target, size) else 0
        if start:
            data = b"\n" + data
        target.known_end = -1  # until the write below has ended a line
        _write_all(target, data, start)
        if size >= 0:
            target.known_end = size + len(data)
    finally:
        target.dirty = True
        fcntl.flock(target.fd, fcntl.LOCK_UN)


def _ends_inside_a_line(target: _OpenFile, size: int) -> bool:
    """Whether the locked file, ``size`` bytes long, ends inside a line: the fragment a writer killed
    mid-write (SIGKILL, the OOM killer) left behind, which the next record would otherwise be glued to.

    Reads the last byte only when ``size`` is not where this process's last append ended a line, so a
    process that writes the file alone pays no read. False for an empty file, and for one that cannot be
    read (``size`` -1).
    """
    if size <= 0 or size == target.known_end:
        return False
    try:
        return os.pread(target.fd, 1, size - 1) != b"\n"
    except OSError:
        return True  # cannot tell: a blank line costs nothing, a record glued to a fragment is lost


def _write_all(target: _OpenFile, data: bytes, start: int) -> None:
    """Write ``data``, whose records begin at offset ``start``, to the locked ``target``.

    On a failed write the file is cut back to its last whole line, and :class:`_WriteFailed` says how many
    records were stored.
    """
    view = memoryview(data)
    written = 0
    while written < len(data):
        try:
            written += os.write(target.fd, view[written:])
        except InterruptedError:
            continue
        except OSError as exc:
            whole = data.rfind(b"\n", 0, written) + 1
            end = os.fstat(target.fd).st_size - (written - whole)
            if written > whole:  # cut the torn tail so the file ends on a line boundary
                os.ftruncate(target.fd, end)
            if whole:
                target.known_end = end
            raise _WriteFailed(data.count(b"\n", start, whole), exc) from exc


file_sink = FileSink()


@hookimpl
def audit_configure(settings: AuditSettings) -> None:
    file_sink.configure(settings)


@hookimpl
def sink(records: Sequence[Entry]) -> None:
    file_sink.write(records)


@hookimpl
def audit_shutdown() -> None:
    file_sink.close()


@hookimpl
def audit_after_fork() -> None:
    file_sink.forget()


def open_files() -> dict[str, Any]:
    """Paths of the files open now, by channel (for ``manage.py audit`` and tests)."""
    return {channel: str(opened.path) for channel, opened in file_sink._files.items()}
