"""Upload spool segments to an SFTP server with paramiko: verified host key, then an atomic upload.

* The server's host key is checked against ``known_hosts`` (re-read for each connection, as OpenSSH reads it:
  :mod:`activity_audit.clients.ssh`) before anything else happens: an unknown, changed or revoked key raises
  :class:`HostKeyRejected` naming the host and the offered SHA-256 fingerprint, and no credential and no data
  is sent. There is no way to accept a key automatically.
* Authentication uses the private key, then the password if the server refused the key (when both are set).
* Each segment is written to a hidden temporary name in its final directory, made 0640, then renamed over
  the final name with the ``posix-rename`` extension, so a reader never sees a partial file and a retried
  upload replaces itself.
* Every wait for the server is bounded by ``timeout``, the start of the SFTP session included (see
  :func:`open_sftp`): a server that stops answering is a failed upload, retried by the spool.
* One connection is kept between uploads and dropped after any failure; messages never hold credentials.
"""

from __future__ import annotations

import contextlib
import posixpath
import socket
import threading
import uuid
from typing import Any

import paramiko

from activity_audit.clients.ssh import (
    HostKeyCheck,
    KnownHosts,
    KnownKeys,
    authenticate,
    blob_fingerprint,
    create_file,
    prefer_known_key_types,
    session_is_usable,
)
from activity_audit.spool import Segment
from activity_audit.threads import PIPELINE_WORK_LOGGER

from .config import SftpConfig

FILE_MODE = 0o640


class SftpUploadError(Exception):
    """An upload that did not complete; the message names the server and the cause."""


class HostKeyRejected(SftpUploadError):
    """The server's host key is not the one ``known_hosts`` holds for it."""


def fingerprint(key: paramiko.PKey) -> str:
    """The OpenSSH ``SHA256:...`` fingerprint of a public key."""
    return blob_fingerprint(key.asbytes())


def open_sftp(transport: paramiko.Transport, timeout: float) -> paramiko.SFTPClient:
    """An SFTP session on a new channel of the authenticated ``transport``; no wait lasts over ``timeout``.

    ``paramiko.SFTPClient.from_transport`` sets no timeout: a server that accepts the ``sftp`` subsystem and
    never answers the SFTP version exchange (a wedged sftp-server) would hold the calling thread forever.
    Here the channel's timeout is set before the exchange, and the subsystem request, whose answer paramiko
    awaits without a timeout, is given up by closing ``transport``. Raises ``TimeoutError`` (an ``OSError``)
    saying which step got no answer, or ``paramiko.SSHException`` (channel or subsystem refused).
    """
    channel = transport.open_session(timeout=timeout)
    channel.settimeout(timeout)
    _invoke_sftp_subsystem(transport, channel, timeout)
    try:
        return paramiko.SFTPClient(channel)
    except TimeoutError:
        raise TimeoutError(
            f"the server accepted the sftp subsystem but did not answer the SFTP version exchange within "
            f"{timeout:g} s"
        ) from None


def _invoke_sftp_subsystem(transport: paramiko.Transport, channel: paramiko.Channel, timeout: float) -> None:
    """Request the ``sftp`` subsystem on ``channel``; with no answer within ``timeout``, close ``transport``
    (which wakes paramiko's wait) and raise ``TimeoutError``."""
    expired = threading.Event()

    def give_up() -> None:
        expired.set()
        transport.close()

    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        channel.invoke_subsystem("sftp")
    except Exception:  # what the closed transport says (SSHException, EOFError ...), or a refusal
        if expired.is_set():
            raise TimeoutError(
                f"the server did not answer the sftp subsystem request within {timeout:g} s"
            ) from None
        raise
    finally:
        watchdog.cancel()


class SftpUploader:
    """The :class:`~activity_audit.spool.Uploader` of the ``sftp`` plugin."""

    def __init__(self, config: SftpConfig) -> None:
        self.config = config
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def upload(self, name: str, segment: Segment) -> None:
        config = self.config
        path = posixpath.join(config.remote_dir, name)
        try:
            sftp = self._session()
            directory = posixpath.dirname(path)
            self._make_dirs(sftp, directory)
            temporary = posixpath.join(directory, f".{posixpath.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                self._write(sftp, temporary, segment.data)
                sftp.posix_rename(temporary, path)
            except BaseException:
                self._remove_quietly(sftp, temporary)
                raise
        except SftpUploadError:
            self.close()  # the next attempt starts from a new connection
            raise
        except paramiko.AuthenticationException as exc:
            raise SftpUploadError(
                f"{config.where}: authentication as '{config.username}' failed; "
                "check the password or private_key"
            ) from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.close()  # the session may be out of step or gone: the next attempt starts from a new one
            raise SftpUploadError(
                f"upload of {path} to {config.where} failed: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _write(sftp: paramiko.SFTPClient, temporary: str, data: bytes) -> None:
        """Write ``data`` to the new file ``temporary``, created with :data:`FILE_MODE` (never readable to
        more users than the uploaded segment will be, not even while it is written), and check that the
        server holds every byte."""
        with create_file(sftp, temporary, FILE_MODE) as remote:
            remote.set_pipelined(True)
            remote.write(data)
        held = sftp.stat(temporary).st_size
        if held != len(data):
            raise OSError(f"the server holds {held} bytes of the {len(data)} sent to {temporary}")

    def _session(self) -> paramiko.SFTPClient:
        if self._sftp is not None and session_is_usable(self._transport, self._sftp):
            return self._sftp
        self.close()
        config = self.config
        sock = socket.create_connection((config.host, config.port), timeout=config.timeout)
        transport = paramiko.Transport(sock)
        # Its thread logs the connection and authentication: records kept out of the trail it uploads.
        transport.set_log_channel(f"{PIPELINE_WORK_LOGGER}.paramiko")
        try:
            transport.banner_timeout = transport.auth_timeout = config.timeout
            known = KnownHosts.read(config.known_hosts_path).keys_for(config.host, config.port)
            prefer_known_key_types(transport, known.key_types())  # ask for a key we can check
            transport.start_client(timeout=config.timeout)
            self._verify_host_key(transport.get_remote_server_key(), known)
            authenticate(transport, config.username, config.private_key, config.password)
            sftp = open_sftp(transport, config.timeout)
        except BaseException:
            transport.close()
            raise
        self._transport, self._sftp = transport, sftp
        return sftp

    def _verify_host_key(self, offered: paramiko.PKey, known: KnownKeys) -> None:
        config = self.config
        where = f"{config.host_entry} ({config.known_hosts_path})"
        offered_key = f"{offered.get_name()} {fingerprint(offered)}"
        check = known.check(offered)
        if check is HostKeyCheck.UNKNOWN:
            raise HostKeyRejected(
                f"host key of {where} is unknown: the server offered {offered_key}; nothing was sent."
                " Add the key to known_hosts after checking it out of band."
            )
        if check is HostKeyCheck.REVOKED:
            raise HostKeyRejected(
                f"host key of {where} is REVOKED: the server offered {offered_key}, which an @revoked line of"
                " known_hosts names; nothing was sent."
            )
        if check is HostKeyCheck.CHANGED:
            raise HostKeyRejected(
                f"host key of {where} has CHANGED: the server offered {offered_key}, "
                "which known_hosts does not hold for it; nothing was sent (possible man-in-the-middle)."
            )

    @staticmethod
    def _make_dirs(sftp: paramiko.SFTPClient, directory: str) -> None:
        missing = []
        while directory not in ("", "/"):
            try:
                sftp.stat(directory)
                break
            except FileNotFoundError:
                missing.append(directory)
                directory = posixpath.dirname(directory)
        for path in reversed(missing):
            try:
                sftp.mkdir(path, mode=0o750)
            except OSError:
                sftp.stat(path)  # created meanwhile by another process: fine; otherwise raise

    @staticmethod
    def _remove_quietly(sftp: Any, path: str) -> None:
        with contextlib.suppress(Exception):  # the connection may be gone; a stray temporary file is harmless
            sftp.remove(path)

    def close(self) -> None:
        """Drop the connection; the transport (and its socket) is closed even when closing the SFTP session
        raises (a connection that died under it), and that error is raised after."""
        sftp, transport = self._sftp, self._transport
        self._sftp = self._transport = None
        try:
            if sftp is not None:
                sftp.close()
        finally:
            if transport is not None:
                transport.close()

    def forget(self) -> None:
        self._sftp = self._transport = None  # the parent's connection: leave it to the parent
