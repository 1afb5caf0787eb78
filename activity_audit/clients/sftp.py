"""Audited SFTP on paramiko: verified host keys, atomic uploads, one ``audit.request`` record per operation.

::

    with SFTPClient("sftp.example", 22, "reports", password=secret, service_name="bank",
                    known_hosts="/etc/myapp/known_hosts") as sftp:
        sftp.upload("/tmp/report.csv", "inbox/report.csv")   # atomic: a temporary name, then posix-rename
        names = sftp.list("inbox")

Every operation (``connect``, ``upload``, ``download``, ``list``, ``remove``) gives a record with
``protocol: "sftp"``, ``operation``, ``host``, ``port``, ``username``, ``remote_path``, ``bytes`` (moved so
far, also when the operation failed), ``execution_time`` (seconds), and ``error_message`` (``null`` on
success). An operation interrupted by ``KeyboardInterrupt`` (any ``BaseException``) is recorded with
``error_message: "KeyboardInterrupt"``, the connection is closed, and the exception goes on unchanged; so is
an operation that failed with the connection (a timeout, an SSH or SFTP protocol error): the next operation
opens a new one. Passwords, private keys and passphrases never appear in a record, a message or ``repr``.

Host keys are checked against ``known_hosts`` (read as OpenSSH reads it: see :mod:`.ssh`) right after the
key exchange, before authentication: an unknown host raises :class:`UnknownHostKeyError`, a key that none of
the host's lines lists :class:`ChangedHostKeyError`, a key an ``@revoked`` line names
:class:`RevokedHostKeyError`. Each names the host and the offered key's ``SHA256:`` fingerprint, and the
connection is closed without sending the username or any credential. There is no "accept new keys" mode.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import posixpath
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Any, TypeVar

from .outbound import auditing_enabled, describe_error, record_call

try:
    import paramiko
except ImportError as exc:  # pragma: no cover - exercised in a test that hides paramiko
    from .outbound import missing_extra

    raise missing_extra("paramiko", "sftp", "activity_audit.SFTPClient", exc) from exc

from .ssh import (
    HostKeyCheck,
    KnownHosts,
    KnownKeys,
    authenticate,
    blob_fingerprint,
    create_file,
    host_entry_name,
    load_private_key,
    prefer_known_key_types,
    session_is_usable,
)

__all__ = [
    "ChangedHostKeyError",
    "HostKeyVerificationError",
    "RevokedHostKeyError",
    "SFTPClient",
    "UnknownHostKeyError",
    "key_fingerprint",
]

PROTOCOL = "sftp"
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
NAME_MAX = 255  # bytes in one file name, on Linux and most SFTP servers' file systems
CHUNK = 32768  # bytes read from the local file and sent in one SFTP write request (paramiko's largest)
CLEANUP_TIMEOUT = 5.0  # seconds, at most, for each wait of the connection that removes a temporary file

_T = TypeVar("_T")
LocalFile = str | os.PathLike[str] | IO[bytes]
RemotePath = str | PurePosixPath


class HostKeyVerificationError(paramiko.SSHException):
    """The server's host key is not the one ``known_hosts`` vouches for; nothing was sent to it."""

    def __init__(self, message: str, host: str, key_type: str, fingerprint: str) -> None:
        super().__init__(message)
        self.host = host
        self.key_type = key_type
        self.fingerprint = fingerprint


class UnknownHostKeyError(HostKeyVerificationError):
    """``known_hosts`` has no key for this host."""


class ChangedHostKeyError(HostKeyVerificationError):
    """``known_hosts`` has keys for this host, and the server offered another one."""


class RevokedHostKeyError(HostKeyVerificationError):
    """An ``@revoked`` line of ``known_hosts`` names the key the server offered."""


def key_fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:<base64>`` fingerprint of a public key (what ``ssh-keygen -lf`` prints)."""
    return blob_fingerprint(key.asbytes())


class _Progress:
    """What an operation did so far: for its record, and for cleaning up after it failed.

    ``leftovers`` are the remote files it created and has not yet removed or renamed. ``exchanging`` is False
    only while an upload reads its local file, between SFTP exchanges: an interruption then leaves the
    SFTP stream in step, so the connection can still be used to clean up.
    """

    __slots__ = ("bytes", "details", "exchanging", "leftovers")

    def __init__(self) -> None:
        self.bytes: int | None = None
        self.details: dict[str, Any] = {}
        self.exchanging = True
        self.leftovers: list[str] = []

    def transferred(self, done: int, _total: int) -> None:
        self.bytes = done


class SFTPClient:
    """An SFTP connection whose operations are audited under ``service_name``.

    Authenticate with ``password``, with ``private_key`` (an OpenSSH/PEM private key: the path of its file,
    the key text itself (``-----BEGIN ...``, as read from a secret store), or a loaded ``paramiko.PKey``;
    ``private_key_passphrase`` if it is encrypted; see :func:`~.ssh.load_private_key`), or both (the key is
    tried first; a key that cannot be loaded is then passed over, see :meth:`_usable_private_key`).
    ``known_hosts`` defaults to ``~/.ssh/known_hosts``. Relative remote paths are joined to ``base_dir``
    with POSIX rules (``base_dir="/inbox"``: ``"a/b.csv"`` -> ``"/inbox/a/b.csv"``; an absolute path is
    kept as it is). ``timeout`` (seconds) bounds connecting, authenticating and every wait for the server.

    The connection opens on :meth:`connect`, on entering ``with``, or on the first operation, and is opened
    again on the next operation after it dropped, after the server closed the SFTP session (sshd's
    ``ChannelTimeout``), and after an operation failed with the connection (see :meth:`_recover`).
    Operations are serialised: one client may be shared by threads.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str | None = None,
        service_name: str = "sftp",
        known_hosts: str | os.PathLike[str] | None = None,
        *,
        private_key: str | os.PathLike[str] | paramiko.PKey | None = None,
        private_key_passphrase: str | None = None,
        base_dir: str = "",
        timeout: float = 30.0,
    ) -> None:
        if password is None and private_key is None:
            raise ValueError("SFTPClient needs a password or a private_key")
        self.host = host
        self.port = port
        self.username = username
        self.service_name = service_name
        self.known_hosts = Path(known_hosts if known_hosts is not None else DEFAULT_KNOWN_HOSTS).expanduser()
        self.base_dir = base_dir
        self.timeout = timeout
        self.__password = password
        self.__private_key = private_key
        self.__passphrase = private_key_passphrase
        self._lock = threading.RLock()
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def __repr__(self) -> str:
        return (
            f"<SFTPClient {self.service_name!r} {self.username}@{self.host}:{self.port}"
            f"{' connected' if self.is_connected() else ''}>"
        )

    # --- connection -------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the connection now (verify the host key, authenticate, start SFTP), if it is not open."""
        with self._lock:
            self._connection()

    def is_connected(self) -> bool:
        """Whether the next operation can use the open connection: the SSH transport is up, and the server
        has neither closed nor ended the SFTP session's channel (as sshd's ``ChannelTimeout`` does, or the
        end of its sftp-server, while the transport stays up)."""
        return session_is_usable(self._transport, self._sftp)

    def close(self) -> None:
        """Close the connection; the next operation opens a new one."""
        with self._lock:
            sftp, transport, self._sftp, self._transport = self._sftp, self._transport, None, None
            with contextlib.suppress(Exception):
                if sftp is not None:
                    sftp.close()
            with contextlib.suppress(Exception):
                if transport is not None:
                    transport.close()

    def __enter__(self) -> SFTPClient:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- operations -------------------------------------------------------------------------------------

    def remote_path(self, path: RemotePath) -> str:
        """``path`` joined to ``base_dir`` with POSIX rules (what the records show as ``remote_path``)."""
        text = str(path)
        if not text:
            raise ValueError("an empty remote path")
        return posixpath.join(self.base_dir, text) if self.base_dir else text

    def upload(self, local: LocalFile, remote_path: RemotePath) -> int:
        """Copy ``local`` (a path or a binary file object) to ``remote_path``; returns the bytes sent.

        The data goes to a temporary name in the target directory (``.<name>.<random>.part``, ``<name>``
        shortened when the whole would exceed 255 bytes) that is then renamed over ``remote_path`` with
        ``posix-rename``: readers see the old file or the whole new one, never a part. The temporary file is
        created with the permission bits of the file it replaces (less the server's umask, and set to them
        exactly before the rename when the server allows it), so a private file never becomes readable to
        more users, not even while it is written; a new file gets what a plain put gives it. On failure the
        temporary file is removed, over a new connection when the failure left the old one unusable (see
        :meth:`_recover`).
        """
        target = self.remote_path(remote_path)
        directory, name = posixpath.split(target)
        if not name:
            raise ValueError(f"remote path {target!r} names a directory, not a file")
        temporary = posixpath.join(directory, temporary_name(name))

        def transfer(sftp: paramiko.SFTPClient, progress: _Progress) -> int:
            progress.bytes = 0
            mode = _permissions_of(sftp, target)
            with _readable(local) as source:
                progress.leftovers.append(temporary)
                _send(source, create_file(sftp, temporary, mode), progress)
            _settle(sftp, temporary, mode, progress)
            sftp.posix_rename(temporary, target)
            progress.leftovers.remove(temporary)
            return progress.bytes

        return self._operation("upload", target, transfer)

    def download(self, remote_path: RemotePath, local: LocalFile) -> int:
        """Copy ``remote_path`` to ``local`` (a path or a binary file object); returns the bytes received.

        A local path is written through a temporary file in its directory and renamed into place, so a
        failed download leaves no partial file under that name. The file gets the mode it had, or, when it
        is new, the mode ``open()`` would give it (``0o666`` less the umask).
        """
        source = self.remote_path(remote_path)

        def transfer(sftp: paramiko.SFTPClient, progress: _Progress) -> int:
            progress.bytes = 0
            with _writable(local) as target:
                sftp.getfo(source, target, callback=progress.transferred)
            return progress.bytes

        return self._operation("download", source, transfer)

    def list(self, remote_dir: RemotePath | None = None) -> builtins.list[str]:
        """The names in ``remote_dir`` (default: ``base_dir``), without ``.`` and ``..``, sorted."""
        directory = self.remote_path(remote_dir) if remote_dir is not None else self.base_dir or "."

        def read(sftp: paramiko.SFTPClient, progress: _Progress) -> builtins.list[str]:
            names = sorted(sftp.listdir(directory))
            progress.details["entries"] = len(names)
            return names

        return self._operation("list", directory, read)

    def remove(self, remote_path: RemotePath) -> None:
        """Delete the file ``remote_path``."""
        target = self.remote_path(remote_path)

        def delete(sftp: paramiko.SFTPClient, progress: _Progress) -> None:
            sftp.remove(target)

        self._operation("remove", target, delete)

    # --- internals ------------------------------------------------------------------------------------

    def _operation(
        self, operation: str, remote_path: str, action: Callable[[paramiko.SFTPClient, _Progress], _T]
    ) -> _T:
        """Run ``action`` on an open connection and record it, whatever the outcome."""
        with self._lock:
            progress = _Progress()
            started = time.perf_counter()
            try:
                result = action(self._connection(), progress)
            except BaseException as exc:  # KeyboardInterrupt, SystemExit too: recorded, then raised
                self._record(operation, remote_path, progress, time.perf_counter() - started, exc)
                self._recover(exc, progress)
                raise
            self._record(operation, remote_path, progress, time.perf_counter() - started, None)
            return result

    def _connection(self, timeout: float | None = None) -> paramiko.SFTPClient:
        """The open SFTP session; (re)connects, with its own ``connect`` record, when there is none (see
        :meth:`is_connected`). ``timeout`` bounds each wait of a new connection (default ``self.timeout``)."""
        if self._sftp is not None and self.is_connected():
            return self._sftp
        self.close()
        progress = _Progress()
        started = time.perf_counter()
        try:
            self._transport, self._sftp = self._open(progress, self.timeout if timeout is None else timeout)
        except BaseException as exc:  # _open closed what it opened
            self._record("connect", None, progress, time.perf_counter() - started, exc)
            raise
        self._record("connect", None, progress, time.perf_counter() - started, None)
        return self._sftp

    def _recover(self, error: BaseException, progress: _Progress) -> None:
        """Leave the client fit for the next operation after ``error`` ended one, and remove the files it
        left (``progress.leftovers``).

        When the SFTP stream is still in step (the server refused a request, the local file failed) the
        files are removed on the same connection, which is then kept, unless the caller was interrupted
        (``KeyboardInterrupt`` ...). Otherwise (see :func:`_cuts_exchange`, or the server closed the session)
        a request may be half sent or a reply half read: the connection is closed, the next operation opens
        a new one, and the files are removed over a connection of their own (:meth:`_discard`).
        """
        in_step = not _cuts_exchange(error, progress) and self.is_connected()
        if in_step and self._sftp is not None:
            self._remove_each(self._sftp, progress.leftovers)
        if not in_step or not isinstance(error, Exception):
            self.close()
        if not in_step:
            self._discard(progress.leftovers)

    def _remove_each(self, sftp: paramiko.SFTPClient, paths: builtins.list[str]) -> None:
        """Remove each of ``paths`` that can be: one already gone, or that the server refuses to remove, is
        passed over (its name says what it is). Interrupted, it closes the connection before going on."""
        try:
            for path in paths:
                with contextlib.suppress(Exception):
                    sftp.remove(path)
        except BaseException:
            self.close()
            raise

    def _discard(self, paths: builtins.list[str]) -> None:
        """Remove ``paths`` over a new connection (recorded as any other) whose every wait is bounded by
        :data:`CLEANUP_TIMEOUT`, then close it. Never raises an ``Exception``: what cannot be removed
        stays."""
        if not paths:
            return
        try:
            with contextlib.suppress(Exception):
                self._remove_each(self._connection(min(self.timeout, CLEANUP_TIMEOUT)), paths)
        finally:
            self.close()

    def _open(self, progress: _Progress, timeout: float) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
        known = KnownHosts.read(self.known_hosts).keys_for(self.host, self.port)
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            transport = paramiko.Transport(sock)
        except BaseException:
            sock.close()
            raise
        try:
            transport.banner_timeout = transport.auth_timeout = timeout
            prefer_known_key_types(transport, known.key_types())
            transport.start_client(timeout=timeout)
            offered = transport.get_remote_server_key()
            progress.details["host_key_fingerprint"] = key_fingerprint(offered)
            self._verify_host_key(offered, known)
            progress.details["auth_method"] = self._authenticate(transport, progress)
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:
                raise paramiko.SSHException("the server refused to start the sftp subsystem")
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(timeout)
            return transport, sftp
        except BaseException:
            transport.close()
            raise

    def _verify_host_key(self, offered: paramiko.PKey, known: KnownKeys) -> None:
        name, key_type, fingerprint = (
            host_entry_name(self.host, self.port),
            offered.get_name(),
            key_fingerprint(offered),
        )
        check = known.check(offered)
        if check is HostKeyCheck.ACCEPTED:
            return
        if check is HostKeyCheck.REVOKED:
            raise RevokedHostKeyError(
                f"SFTP host key of {name} is revoked in {self.known_hosts}: the server offered the "
                f"{key_type} key {fingerprint}, which an @revoked line names. "
                "Nothing was sent to the server.",
                name,
                key_type,
                fingerprint,
            )
        if check is HostKeyCheck.UNKNOWN:
            raise UnknownHostKeyError(
                f"SFTP host {name} is not in {self.known_hosts}: it offered the {key_type} key "
                f"{fingerprint}. Confirm that fingerprint with the server's operator, then add the key to "
                f"known_hosts (e.g. from `ssh-keyscan -p {self.port} {self.host}`). "
                "Nothing was sent to the server.",
                name,
                key_type,
                fingerprint,
            )
        raise ChangedHostKeyError(
            f"SFTP host key of {name} does not match {self.known_hosts}: the server offered the "
            f"{key_type} key {fingerprint}, known_hosts has {known.describe()}. The key changed, or someone "
            "is intercepting the connection. Nothing was sent to the server.",
            name,
            key_type,
            fingerprint,
        )

    def _authenticate(self, transport: paramiko.Transport, progress: _Progress) -> str:
        """Authenticate with the key, then the password; returns the method that worked."""
        return authenticate(transport, self.username, self._usable_private_key(progress), self.__password)

    def _usable_private_key(self, progress: _Progress) -> paramiko.PKey | None:
        """The private key to offer, None without one.

        A key that cannot be loaded (missing file, wrong passphrase, not a key) is an error when there is no
        password; with a password it is passed over, as OpenSSH passes over an unusable identity, and the
        connect record says why in ``key_error``. Neither names the key text nor the passphrase.
        """
        key = self.__private_key
        if key is None or isinstance(key, paramiko.PKey):
            return key
        try:
            return load_private_key(key, self.__passphrase)
        except (paramiko.SSHException, OSError) as exc:
            if self.__password is None:
                raise
            progress.details["key_error"] = describe_error(exc)
            return None

    def _record(
        self,
        operation: str,
        remote_path: str | None,
        progress: _Progress,
        execution_time: float,
        error: BaseException | None,
    ) -> None:
        if not auditing_enabled():
            return
        record_call(
            self.service_name,
            PROTOCOL,
            execution_time,
            describe_error(error) if error is not None else None,
            operation=operation,
            host=self.host,
            port=self.port,
            username=self.username,
            remote_path=remote_path,
            bytes=progress.bytes,
            **progress.details,
        )


def _cuts_exchange(error: BaseException, progress: _Progress) -> bool:
    """Whether ``error`` may have left the SFTP stream between the halves of a request or a reply, after
    which the connection is unusable ("Garbage packet received", or a wait for a reply that never comes).

    True for an error of the connection itself (:func:`_is_connection_error`), and for an interruption
    (``KeyboardInterrupt``, any ``BaseException``) that came while the client was talking to the server;
    False for anything raised while an upload read its local file (``progress.exchanging`` is False).
    """
    if not progress.exchanging:
        return False
    return not isinstance(error, Exception) or _is_connection_error(error)


def _is_connection_error(error: Exception) -> bool:
    """A timeout, an SSH or SFTP protocol error, the end of the channel: the connection failed, not the
    request. A server's status reply (``FileNotFoundError``, ``PermissionError``, ``OSError("Failure")``,
    paramiko's ``SFTPError(errno, text)``) leaves the stream in step."""
    if isinstance(error, paramiko.SFTPError):
        return not (error.args and isinstance(error.args[0], int))
    return isinstance(error, (TimeoutError, EOFError, ConnectionError, paramiko.SSHException))


def _permissions_of(sftp: paramiko.SFTPClient, path: str) -> int | None:
    """The permission bits of the file at ``path`` (without setuid, setgid and sticky), None when there is
    none or the server does not tell."""
    try:
        mode = sftp.stat(path).st_mode
    except FileNotFoundError:
        return None
    return None if mode is None else stat.S_IMODE(mode) & 0o777


def _send(source: IO[bytes], remote: paramiko.SFTPFile, progress: _Progress) -> None:
    """Write ``source`` to ``remote`` (pipelined, :data:`CHUNK` bytes at a time), then close it, counting
    the bytes written in ``progress``.

    On failure ``remote`` is closed when the stream is in step (:func:`_cuts_exchange`); otherwise it is
    left to die with the connection, which the caller closes: closing it would wait on the cut stream.
    """
    remote.set_pipelined(True)
    try:
        while data := _read_local(source, progress):
            remote.write(data)
            progress.bytes = (progress.bytes or 0) + len(data)
        remote.close()
    except BaseException as exc:
        remote.set_pipelined(False)  # closing it no longer waits for the replies to every write
        if not _cuts_exchange(exc, progress):
            # Closing is an exchange: an interruption in it may cut the stream.
            was_exchanging, progress.exchanging = progress.exchanging, True
            with contextlib.suppress(Exception):
                remote.close()
            progress.exchanging = was_exchanging
        raise


def _read_local(source: IO[bytes], progress: _Progress) -> bytes:
    """The next :data:`CHUNK` of ``source``, read while ``progress.exchanging`` is False."""
    progress.exchanging = False
    data = source.read(CHUNK)
    progress.exchanging = True
    return data


def _settle(sftp: paramiko.SFTPClient, temporary: str, mode: int | None, progress: _Progress) -> None:
    """Check that ``temporary`` holds every byte sent, as paramiko's put does when asked to confirm; then
    give it exactly ``mode``, the permission bits of the file it replaces, when the server's umask took
    some away. A server that refuses the change leaves the file with fewer bits than ``mode``, never
    more: the upload goes on."""
    held = sftp.stat(temporary)
    if held.st_size != progress.bytes:
        raise OSError(f"the server holds {held.st_size} bytes of the {progress.bytes} sent to {temporary}")
    if mode is not None and held.st_mode is not None and stat.S_IMODE(held.st_mode) != mode:
        with contextlib.suppress(OSError, paramiko.SFTPError):
            sftp.chmod(temporary, mode)


def temporary_name(name: str, suffix: str = ".part") -> str:
    """``.<name>.<12 hex>.part``, with ``<name>`` cut (at a character) to fit in :data:`NAME_MAX` bytes."""
    tail = f".{secrets.token_hex(6)}{suffix}"
    room = NAME_MAX - len(tail.encode()) - 1
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > room:
        name = encoded[:room].decode("utf-8", "ignore")
    return f".{name}{tail}"


@contextlib.contextmanager
def _readable(local: LocalFile) -> Iterator[IO[bytes]]:
    if isinstance(local, (str, os.PathLike)):
        with open(local, "rb") as handle:
            yield handle
    else:
        yield local


@contextlib.contextmanager
def _writable(local: LocalFile) -> Iterator[IO[bytes]]:
    if not isinstance(local, (str, os.PathLike)):
        yield local
        return
    final = Path(local)
    temporary = final.parent / temporary_name(final.name)
    # Created as open() would create the file (0o666 less the umask, default ACLs applied), not 0600.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    handle = open(os.open(temporary, flags, 0o666), "wb")  # noqa: SIM115 - renamed into place, or removed
    try:
        with handle:
            with contextlib.suppress(FileNotFoundError):
                os.fchmod(
                    handle.fileno(), stat.S_IMODE(os.stat(final).st_mode)
                )  # a replaced file keeps its mode
            yield handle
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
