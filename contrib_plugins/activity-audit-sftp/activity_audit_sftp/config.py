"""The options of ``ACTIVITY_AUDIT["PLUGINS"]["sftp"]``, checked at start-up.

``host``, ``username``, ``remote_dir`` (absolute) and ``known_hosts`` (an OpenSSH known_hosts file, read as
OpenSSH reads it by :mod:`activity_audit.clients.ssh`, again for each connection: host key verification cannot
be turned off) are required; ``port`` (22); ``password`` and/or ``private_key`` (an OpenSSH or PEM private
key: the path of its file, or the key text itself, ``-----BEGIN ...``, as a secret store holds it; see
:func:`activity_audit.clients.ssh.load_private_key`) with ``private_key_passphrase``; ``timeout`` (seconds,
default 30); and the spool's options (:data:`activity_audit.spool.SPOOL_OPTION_KEYS`). Files are parsed now,
so a wrong path or an unreadable key stops start-up with the setting's name. ``password``, ``private_key``
and ``private_key_passphrase`` are secret: their values never appear in a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from activity_audit.plugin_options import PluginOptions

OPTION_KEYS = (
    "host",
    "port",
    "username",
    "password",
    "private_key",
    "private_key_passphrase",
    "remote_dir",
    "known_hosts",
    "timeout",
)
SECRET_KEYS = ("password", "private_key", "private_key_passphrase")

if TYPE_CHECKING:
    import paramiko


@dataclass(frozen=True, repr=False)
class SftpConfig:
    """Checked SFTP options. ``repr`` is withheld: the object holds credentials."""

    host: str
    port: int
    username: str
    password: str | None
    private_key: paramiko.PKey | None
    remote_dir: str
    known_hosts_path: Path
    timeout: float

    @classmethod
    def read(cls, options: PluginOptions) -> SftpConfig:
        remote_dir = options.required_text("remote_dir")
        if not remote_dir.startswith("/"):
            raise options.error("remote_dir", f"must be an absolute path on the server, got {remote_dir!r}.")
        password = options.text("password")
        private_key = _private_key(options)
        if password is None and private_key is None:
            raise options.error(
                "password", "or ACTIVITY_AUDIT['PLUGINS']['sftp']['private_key'] is required."
            )
        known_hosts_path = options.readable_file("known_hosts", required=True)
        assert known_hosts_path is not None
        _check_known_hosts(options, known_hosts_path)
        return cls(
            host=options.required_text("host"),
            port=options.integer("port", 22, minimum=1, maximum=65535),
            username=options.required_text("username"),
            password=password,
            private_key=private_key,
            remote_dir=remote_dir.rstrip("/") or "/",
            known_hosts_path=known_hosts_path,
            timeout=options.seconds("timeout", 30.0, minimum=0.1),
        )

    @property
    def host_entry(self) -> str:
        """The host as known_hosts names it: ``host``, or ``[host]:port`` on another port than 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def where(self) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}"


def _private_key(options: PluginOptions) -> paramiko.PKey | None:
    """The key that ``private_key`` gives, loaded now: the key text (see
    :func:`activity_audit.clients.ssh.is_key_text`) or the path of its file; None without the option.

    Errors name the setting, never the key text nor its path (the option is secret).
    """
    from activity_audit.clients.ssh import is_key_text

    source = options.text_or_readable_file("private_key", is_key_text)
    return None if source is None else _load_key(options, source)


def _load_key(options: PluginOptions, source: str | Path) -> paramiko.PKey:
    import paramiko

    from activity_audit.clients.ssh import load_private_key

    try:
        return load_private_key(source, options.text("private_key_passphrase"))
    except paramiko.PasswordRequiredException as exc:
        raise options.error(
            "private_key", "is encrypted: set ACTIVITY_AUDIT['PLUGINS']['sftp']['private_key_passphrase']."
        ) from exc
    except (paramiko.SSHException, OSError, ValueError) as exc:
        raise options.error(
            "private_key", "cannot be loaded as a private key (wrong format or wrong passphrase)."
        ) from exc


def _check_known_hosts(options: PluginOptions, path: Path) -> None:
    """Refuse a file that cannot be read, or that has lines but not one usable host key line."""
    from activity_audit.clients.ssh import KnownHosts

    try:
        known_hosts = KnownHosts.read(path)
    except OSError as exc:
        raise options.error("known_hosts", f"= '{path}' cannot be read: {exc}") from exc
    if known_hosts.skipped and not known_hosts.lines:
        raise options.error("known_hosts", f"= '{path}' is not a known_hosts file: no line holds a host key.")
