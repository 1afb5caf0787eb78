"""SSH steps shared by :class:`~activity_audit.clients.sftp.SFTPClient` and the ``sftp`` sink plugin.

known_hosts is read here, not by ``paramiko.HostKeys``, so that it is read as OpenSSH reads it (``sshd(8)``,
"SSH_KNOWN_HOSTS FILE FORMAT"):

* a host field is a comma-separated list of patterns (``*`` and ``?`` wildcards, ``!`` negation, compared
  without case) or one hashed name (``|1|<salt>|<hmac>``); a server on another port than 22 is named
  ``[host]:port``;
* **every** line that names the host counts: the host is accepted when any of its keys matches, so the old and
  the new key can be listed together while a key is rotated;
* ``@revoked`` lines name keys that are refused even when another line lists them; ``@cert-authority`` lines
  (host certificates, not supported here) are passed over, as is any line that cannot be read (bad base64, a
  key blob of another type than its line says, a marker we do not know): one odd line never makes the file
  unusable;
* keys are compared as their public key blobs, so a key type paramiko does not know is still listed in error
  messages, and never breaks reading.

It also says whether an open SFTP session can still be used (:func:`session_is_usable`), and creates files
with a mode (:func:`create_file`), which paramiko's ``open`` cannot.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import enum
import hashlib
import hmac
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

REVOKED_MARKER = "@revoked"
KEY_TEXT_PREFIX = "-----BEGIN"
OPENSSH_KEY_HEADER = b"-----BEGIN OPENSSH PRIVATE KEY-----"
CERT_SUFFIX = "-cert.pub"
HASHED_PREFIX = "|1|"


def host_entry_name(host: str, port: int) -> str:
    """The host as known_hosts names it: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def blob_fingerprint(blob: bytes) -> str:
    """OpenSSH's ``SHA256:<base64>`` fingerprint of a public key blob (what ``ssh-keygen -lf`` prints)."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class KnownKey:
    """One public key from known_hosts."""

    key_type: str
    blob: bytes

    @property
    def fingerprint(self) -> str:
        return blob_fingerprint(self.blob)

    def __str__(self) -> str:
        return f"{self.key_type} {self.fingerprint}"


class HostKeyCheck(enum.Enum):
    """How an offered host key compares with what known_hosts holds for the host."""

    ACCEPTED = "accepted"
    UNKNOWN = "unknown"  # no line names the host
    CHANGED = "changed"  # lines name the host, none with this key
    REVOKED = "revoked"  # an @revoked line names this key for the host


@dataclass(frozen=True)
class KnownKeys:
    """The keys known_hosts holds for one host: those that vouch for it and those revoked for it."""

    accepted: tuple[KnownKey, ...] = ()
    revoked: tuple[KnownKey, ...] = ()

    def check(self, offered: paramiko.PKey) -> HostKeyCheck:
        blob = offered.asbytes()
        if any(key.blob == blob for key in self.revoked):
            return HostKeyCheck.REVOKED
        if not self.accepted:
            return HostKeyCheck.UNKNOWN
        if any(key.blob == blob for key in self.accepted):
            return HostKeyCheck.ACCEPTED
        return HostKeyCheck.CHANGED

    def key_types(self) -> set[str]:
        return {key.key_type for key in self.accepted}

    def describe(self) -> str:
        """``"ssh-ed25519 SHA256:..., ssh-rsa SHA256:..."``: the accepted keys, in file order."""
        return ", ".join(str(key) for key in self.accepted)


@dataclass(frozen=True)
class KnownHostLine:
    """One usable known_hosts line: who it names, its key, and whether the key is revoked."""

    hosts: str
    key: KnownKey
    revoked: bool

    def names(self, host_name: str) -> bool:
        """Whether the host field names ``host_name`` (as :func:`host_entry_name` writes it), compared without
        case: OpenSSH lower-cases the host name before it looks it up, hashed names included."""
        host_name = host_name.lower()
        if self.hosts.startswith(HASHED_PREFIX):
            return _hashed_name_matches(self.hosts, host_name)
        return _pattern_list_matches(self.hosts, host_name)


@dataclass(frozen=True)
class KnownHosts:
    """A known_hosts file as read: its usable lines, and how many lines were passed over."""

    path: Path
    lines: tuple[KnownHostLine, ...]
    skipped: int

    @classmethod
    def read(cls, path: str | Path) -> KnownHosts:
        """Read ``path``; a missing file holds no keys. Raises ``OSError`` if it exists but cannot be read."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return cls(path, (), 0)
        lines, skipped = [], 0
        for raw in text.splitlines():
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            line = _parse_line(stripped)
            if line is None:
                skipped += 1
            else:
                lines.append(line)
        return cls(path, tuple(lines), skipped)

    def keys_for(self, host: str, port: int) -> KnownKeys:
        """Every key listed for ``host`` on ``port``, in file order."""
        name = host_entry_name(host, port)
        matching = [line for line in self.lines if line.names(name)]
        return KnownKeys(
            accepted=tuple(line.key for line in matching if not line.revoked),
            revoked=tuple(line.key for line in matching if line.revoked),
        )


def prefer_known_key_types(transport: paramiko.Transport, key_types: set[str]) -> None:
    """Ask the server for a host key of a type known_hosts has, as OpenSSH does (call before the handshake).

    Only the order changes: types paramiko does not offer are ignored, and every algorithm stays allowed.
    """
    options = transport.get_security_options()
    wanted = {key_family(key_type) for key_type in key_types}
    current = builtins.list(options.key_types)
    preferred = [algorithm for algorithm in current if key_family(algorithm) in wanted]
    options.key_types = preferred + [algorithm for algorithm in current if algorithm not in preferred]


def key_family(algorithm: str) -> str:
    """The known_hosts key type a host key algorithm belongs to (``rsa-sha2-512`` -> ``ssh-rsa``)."""
    return "ssh-rsa" if algorithm.startswith("rsa-sha2-") else algorithm


def authenticate(
    transport: paramiko.Transport, username: str, private_key: paramiko.PKey | None, password: str | None
) -> str:
    """Authenticate with the key, then with the password if the server refused the key; returns the method.

    Raises ``paramiko.AuthenticationException`` when every method given was refused.
    """
    if private_key is not None:
        try:
            transport.auth_publickey(username, private_key)
            return "publickey"
        except paramiko.AuthenticationException:
            if password is None:
                raise
    if password is None:
        raise ValueError("authenticate needs a private key or a password")
    transport.auth_password(username, password)
    return "password"


def is_key_text(value: str) -> bool:
    """True when ``value`` is key material, not a path: it starts with ``-----BEGIN`` or spans lines."""
    return value.lstrip().startswith(KEY_TEXT_PREFIX) or "\n" in value


def load_private_key(source: str | os.PathLike[str], passphrase: str | None = None) -> paramiko.PKey:
    """The private key in ``source``: key text (see :func:`is_key_text`) or the path of a key file.

    OpenSSH (``-----BEGIN OPENSSH PRIVATE KEY-----``: RSA, ECDSA, Ed25519) and PEM (PKCS#1 ``RSA``, ``EC``,
    PKCS#8) keys, encrypted or not; ``passphrase`` is a ``str`` (encoded as UTF-8) and is ignored for a key
    that is not encrypted, as OpenSSH ignores it. A key file's ``<path>-cert.pub`` is loaded with it, as
    ``paramiko.PKey.from_path`` does.

    Raises ``paramiko.PasswordRequiredException`` (encrypted, no passphrase), ``paramiko.SSHException``
    (wrong passphrase, or not a key), ``OSError`` (a path that cannot be read: the subclass and ``errno`` the
    system gave, e.g. ``FileNotFoundError``). No message ever holds the key text, the passphrase or the
    path: a value taken for a path may be key text in another encoding (base64 of the key file).
    """
    if isinstance(source, str) and is_key_text(source):
        return _private_key_from_bytes(source.strip().encode("utf-8"), passphrase)
    path = Path(source).expanduser()
    try:
        data = path.read_bytes()
        certificate = Path(f"{path}{CERT_SUFFIX}")
        with_certificate = certificate.exists()
    except OSError as exc:
        raise _unreadable_key_file(exc) from None
    key = _private_key_from_bytes(data, passphrase)
    if with_certificate:
        try:
            key.load_certificate(str(certificate))
        except OSError as exc:
            raise _unreadable_key_file(exc) from None
    return key


def _unreadable_key_file(exc: OSError) -> OSError:
    """``exc`` (a file that cannot be read) told without its file name, which is the secret setting's value.

    ``OSError(errno, text)`` gives the subclass the system's own error would have (``FileNotFoundError``...).
    """
    message = (
        f"private_key is neither key text (starting with {KEY_TEXT_PREFIX}, or of several lines) nor a file "
        f"that can be read: {exc.strerror or type(exc).__name__} (the value is secret, so not shown)"
    )
    return OSError(exc.errno, message) if exc.errno is not None else OSError(message)


def _private_key_from_bytes(data: bytes, passphrase: str | None) -> paramiko.PKey:
    """Decrypt and parse ``data`` with ``cryptography``, then build the matching paramiko key."""
    secret = passphrase.encode("utf-8") if passphrase is not None else None
    try:
        loaded = _load_with_cryptography(data, secret)
    except Exception as exc:
        raise _key_error(exc, secret is not None) from None
    if isinstance(loaded, rsa.RSAPrivateKey):
        return paramiko.RSAKey(key=loaded)
    if isinstance(loaded, ec.EllipticCurvePrivateKey):
        return paramiko.ECDSAKey(vals=(loaded, loaded.public_key()))
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        return _ed25519_key(loaded)
    kind = type(loaded).__name__
    raise paramiko.SSHException(f"private_key holds a {kind}, not an RSA, ECDSA or Ed25519 key")


def _load_with_cryptography(data: bytes, secret: bytes | None) -> object:
    """The key object; a passphrase given for a key that is not encrypted is dropped (TypeError says so)."""
    load = (
        serialization.load_ssh_private_key
        if data.lstrip().startswith(OPENSSH_KEY_HEADER)
        else serialization.load_pem_private_key
    )
    try:
        return load(data, secret)
    except TypeError as exc:
        if secret is None or "not encrypted" not in str(exc):
            raise
    return load(data, None)


def _ed25519_key(loaded: ed25519.Ed25519PrivateKey) -> paramiko.PKey:
    """paramiko's Ed25519Key only reads OpenSSH key text: write the (decrypted) key as that, in memory."""
    text = loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode("ascii")
    return paramiko.Ed25519Key.from_private_key(io.StringIO(text))


def _key_error(exc: Exception, with_passphrase: bool) -> paramiko.SSHException:
    """A message of our own for a key that did not load (the library's could one day quote its input);
    ``exc`` only tells which one."""
    if isinstance(exc, TypeError) and not with_passphrase:
        return paramiko.PasswordRequiredException(
            "private_key is encrypted: give private_key_passphrase to decrypt it"
        )
    if with_passphrase:
        return paramiko.SSHException(
            "private_key could not be decrypted with private_key_passphrase "
            "(the passphrase is wrong, or the key is corrupt)"
        )
    return paramiko.SSHException("private_key could not be read: it is not an OpenSSH or PEM private key")


def _parse_line(line: str) -> KnownHostLine | None:
    fields = line.split()
    revoked = fields[0] == REVOKED_MARKER
    if fields[0].startswith("@"):
        if not revoked:
            return None  # @cert-authority, or a marker we do not know
        fields = fields[1:]
    if len(fields) < 3:
        return None
    hosts, key_type, encoded = fields[:3]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    if _blob_type(blob) != key_type:
        return None
    return KnownHostLine(hosts, KnownKey(key_type, blob), revoked)


def _blob_type(blob: bytes) -> str | None:
    """The key type a public key blob starts with (an SSH string: 4-byte length, then the name)."""
    if len(blob) < 4:
        return None
    length = int.from_bytes(blob[:4], "big")
    name = blob[4 : 4 + length]
    return name.decode("ascii", "replace") if len(name) == length else None


def _hashed_name_matches(field: str, host_name: str) -> bool:
    """``|1|<base64 salt>|<base64 HMAC-SHA1(salt, host_name)>``, OpenSSH's ``HashKnownHosts`` form."""
    parts = field[len(HASHED_PREFIX) :].split("|")
    if len(parts) != 2:
        return False
    try:
        salt, digest = base64.b64decode(parts[0]), base64.b64decode(parts[1])
    except (binascii.Error, ValueError):
        return False
    expected = hmac.new(salt, host_name.encode("utf-8"), hashlib.sha1).digest()
    return hmac.compare_digest(expected, digest)


def _pattern_list_matches(patterns: str, host_name: str) -> bool:
    """OpenSSH's rule: a matching negated pattern rejects the line, else any matching pattern accepts it."""
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if _wildcard(pattern[1:] if negated else pattern).fullmatch(host_name):
            if negated:
                return False
            matched = True
    return matched


def _wildcard(pattern: str) -> re.Pattern[str]:
    """``*`` (any run) and ``?`` (one character); nothing else is special."""
    parts = (".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern.lower())
    return re.compile("".join(parts), re.DOTALL)


def session_is_usable(transport: paramiko.Transport | None, sftp: paramiko.SFTPClient | None) -> bool:
    """Whether the next request can go over ``sftp``: the SSH transport is up, and the server has neither
    closed nor ended the SFTP session's channel (as sshd's ``ChannelTimeout`` does, or the end of its
    sftp-server, while the transport stays up)."""
    channel = sftp.get_channel() if sftp is not None else None
    return (
        channel is not None
        and not channel.closed
        and not channel.eof_received
        and transport is not None
        and transport.is_active()
    )


def create_file(sftp: paramiko.SFTPClient, path: str, mode: int | None) -> paramiko.SFTPFile:
    """Create ``path``, which must not exist, and open it for writing: with ``mode`` (the server applies its
    umask), or, when None, with the mode the server gives a new file, as a plain put does.

    The mode travels in the OPEN request itself: a chmod after paramiko's ``open``, which sends none, would
    leave a moment when other users could open the file and read what is written to it. paramiko sends
    attributes only through ``_request``.
    """
    if mode is None:
        return sftp.open(path, "wx")
    attributes = paramiko.SFTPAttributes()
    attributes.st_mode = mode
    flags = paramiko.sftp.SFTP_FLAG_WRITE | paramiko.sftp.SFTP_FLAG_CREATE | paramiko.sftp.SFTP_FLAG_EXCL
    kind, reply = cast(Any, sftp)._request(paramiko.sftp.CMD_OPEN, path, flags, attributes)
    if kind != paramiko.sftp.CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    return paramiko.SFTPFile(sftp, reply.get_binary(), "wb")
