"""known_hosts read as OpenSSH reads it (:mod:`activity_audit.clients.ssh`), without a server."""

from __future__ import annotations

import socket
from pathlib import Path

import paramiko
import pytest

from activity_audit.clients.ssh import HostKeyCheck, KnownHosts, prefer_known_key_types

KEY = paramiko.ECDSAKey.generate()
OTHER = paramiko.ECDSAKey.generate()


def entry(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def read(tmp_path: Path, *lines: str) -> KnownHosts:
    path = tmp_path / "known_hosts"
    path.write_text("\n".join(lines) + "\n")
    return KnownHosts.read(path)


@pytest.mark.parametrize(
    ("hosts", "host", "port", "names"),
    [
        ("sftp.example", "sftp.example", 22, True),
        ("SFTP.Example", "sftp.example", 22, True),
        ("sftp.example", "sftp.example", 2222, False),
        ("[sftp.example]:2222", "sftp.example", 2222, True),
        ("other.example,sftp.example", "sftp.example", 22, True),
        ("*.example", "sftp.example", 22, True),
        ("sftp.exampl?", "sftp.example", 22, True),
        ("*.example,!sftp.example", "sftp.example", 22, False),
        ("[sftp.example]:*", "sftp.example", 2222, True),
        ("sftp.[e]xample", "sftp.example", 22, False),  # brackets are not a character class
        (paramiko.HostKeys.hash_host("[sftp.example]:2222"), "sftp.example", 2222, True),
        (paramiko.HostKeys.hash_host("sftp.example"), "sftp.example", 2222, False),
    ],
)
def test_host_patterns(tmp_path: Path, hosts: str, host: str, port: int, names: bool) -> None:
    keys = read(tmp_path, f"{hosts} {entry(KEY)}").keys_for(host, port)
    assert keys.check(KEY) is (HostKeyCheck.ACCEPTED if names else HostKeyCheck.UNKNOWN)


def test_any_line_vouches_and_revocation_wins(tmp_path: Path) -> None:
    known = read(tmp_path, f"h {entry(OTHER)}", f"h {entry(KEY)}")
    assert known.keys_for("h", 22).check(KEY) is HostKeyCheck.ACCEPTED
    first, second = (line.key.fingerprint for line in known.lines)
    assert known.keys_for("h", 22).describe() == f"ecdsa-sha2-nistp256 {first}, ecdsa-sha2-nistp256 {second}"
    known = read(tmp_path, f"h {entry(KEY)}", f"@revoked * {entry(KEY)}")
    assert known.keys_for("h", 22).check(KEY) is HostKeyCheck.REVOKED
    assert known.keys_for("h", 22).check(OTHER) is HostKeyCheck.CHANGED


def test_lines_that_cannot_be_used_are_counted_and_passed_over(tmp_path: Path) -> None:
    known = read(
        tmp_path,
        "# comment",
        "",
        f"@cert-authority *.example {entry(OTHER)}",
        f"@unknown h {entry(OTHER)}",
        "h ssh-ed25519 !!!",
        f"h ssh-ed25519 {KEY.get_base64()}",  # the blob is an ECDSA key
        "h",
        f"h {entry(KEY)}",
    )
    assert ([line.hosts for line in known.lines], known.skipped) == (["h"], 5)
    assert KnownHosts.read(tmp_path / "missing").lines == ()


def test_preferring_known_types_never_rejects_a_type() -> None:
    left, right = socket.socketpair()  # a transport that is never started
    transport = paramiko.Transport(left)
    try:
        before = set(transport.get_security_options().key_types)
        prefer_known_key_types(transport, {"ssh-rsa", "sk-ssh-ed25519@openssh.com"})
        preferred = list(transport.get_security_options().key_types)
    finally:
        transport.close()
        right.close()
    assert {name for name in preferred[:2]} == {"rsa-sha2-512", "rsa-sha2-256"}
    assert set(preferred) == before
