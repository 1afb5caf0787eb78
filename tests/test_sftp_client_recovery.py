"""SFTPClient against a real OpenSSH sshd on loopback, when something goes wrong:

- a host name in capitals and a hashed known_hosts line: OpenSSH compares names lower-cased;
"""

from __future__ import annotations

import os
import pwd
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
import pytest

from activity_audit import audit_context
from activity_audit.clients.sftp import SFTPClient
from tests.support.sftp_records import sftp_record as record

if TYPE_CHECKING:
    from tests.support.sshd import SshdServer

pytest_plugins = ["tests.support.sshd"]  # the sshd_server fixture

VOLATILE = ("timestamp", "event_id", "stream_id", "seq", "execution_time")

pytestmark = pytest.mark.usefixtures("as_tests_actor")


@pytest.fixture
def as_tests_actor() -> Iterator[None]:
    with audit_context(actor="system:tests"):
        yield


def make_remote_dir(server: SshdServer) -> Path:
    """A fresh directory on the server side, writable by the SFTP user."""
    path = server.root_dir / uuid.uuid4().hex[:12]  # no run of 13 digits: never taken for a card number
    path.mkdir()
    user = pwd.getpwnam(server.username)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


@pytest.fixture
def remote_dir(sshd_server: SshdServer) -> Path:
    return make_remote_dir(sshd_server)


def client(server: SshdServer, base_dir: Path | str = "", **options: Any) -> SFTPClient:
    options.setdefault("password", server.password)
    options.setdefault("known_hosts", server.known_hosts_path)
    return SFTPClient(
        server.host, server.port, server.username, service_name="bank", base_dir=str(base_dir), **options
    )


def connected(server: SshdServer, **details: Any) -> dict[str, Any]:
    details.setdefault("auth_method", "password")
    return record(server, "connect", None, None, host_key_fingerprint=server.host_key_fingerprint, **details)


def stable(audit_records: Any) -> list[dict[str, Any]]:
    records = audit_records.of("audit.request")
    for entry in records:
        assert isinstance(entry["execution_time"], float) and entry["execution_time"] >= 0
    return [{k: v for k, v in entry.items() if k not in VOLATILE} for entry in records]


# --- 1. a host name in capitals, a hashed known_hosts --------------------------------------------------


def test_a_host_name_in_capitals_matches_its_hashed_known_hosts_line(
    sshd_server: SshdServer, remote_dir: Path, tmp_path: Path, audit_records: Any
) -> None:
    [line] = sshd_server.known_hosts_path.read_text().splitlines()
    hashed = paramiko.HostKeys.hash_host(f"[localhost]:{sshd_server.port}")  # as ssh-keygen -H writes it
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"{hashed} {line.split(' ', 1)[1]}\n")

    sftp = SFTPClient(  # OpenSSH looks the name up lower-cased, so it finds the line
        "LocalHost",
        sshd_server.port,
        sshd_server.username,
        password=sshd_server.password,
        service_name="bank",
        known_hosts=known_hosts,
        base_dir=str(remote_dir),
    )
    with sftp:
        assert sftp.list() == []

    assert stable(audit_records) == [
        {**connected(sshd_server), "host": "LocalHost"},
        {**record(sshd_server, "list", str(remote_dir), None, entries=0), "host": "LocalHost"},
    ]
