"""SFTPClient operations interrupted by KeyboardInterrupt (any BaseException), against a real OpenSSH sshd.

The operation is recorded as failed with the bytes moved so far, the exception goes on unchanged, the
temporary upload file is removed, and the connection is closed: the next operation opens a new one.
"""

from __future__ import annotations

import io
import os
import pwd
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from activity_audit import audit_context
from activity_audit.clients.sftp import SFTPClient
from tests.support.sftp_records import sftp_record as record

if TYPE_CHECKING:
    from tests.support.sshd import SshdServer

pytest_plugins = ["tests.support.sshd"]  # the sshd_server fixture

VOLATILE = ("timestamp", "event_id", "stream_id", "seq", "execution_time")
CHUNK = 32768  # paramiko's putfo and getfo move data in pieces of this size

pytestmark = pytest.mark.usefixtures("as_tests_actor")


@pytest.fixture
def as_tests_actor() -> Iterator[None]:
    with audit_context(actor="system:tests"):
        yield


@pytest.fixture
def remote_dir(sshd_server: SshdServer) -> Path:
    path = sshd_server.root_dir / uuid.uuid4().hex[:12]  # no run of 13 digits: never taken for a card number
    path.mkdir()
    user = pwd.getpwnam(sshd_server.username)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


class InterruptedReader(io.RawIOBase):
    """Gives two chunks, then raises KeyboardInterrupt (Ctrl-C while paramiko reads the local file)."""

    def __init__(self) -> None:
        self.left = 2

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self.left:
            raise KeyboardInterrupt
        self.left -= 1
        return b"z" * CHUNK


class InterruptedWriter(io.RawIOBase):
    """Takes two chunks, then raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.left = 2

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if not self.left:
            raise KeyboardInterrupt
        self.left -= 1
        return len(data)


def client(server: SshdServer, base_dir: Path) -> SFTPClient:
    return SFTPClient(
        server.host,
        server.port,
        server.username,
        password=server.password,
        service_name="bank",
        known_hosts=server.known_hosts_path,
        base_dir=str(base_dir),
    )


def connected(server: SshdServer) -> dict[str, Any]:
    return record(
        server,
        "connect",
        None,
        None,
        host_key_fingerprint=server.host_key_fingerprint,
        auth_method="password",
    )


def records(audit_records: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in audit_records.of("audit.request")]


def test_an_upload_interrupted_is_recorded_with_the_bytes_sent_then_raised(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any
) -> None:
    sftp = client(sshd_server, remote_dir)
    with pytest.raises(KeyboardInterrupt):
        sftp.upload(InterruptedReader(), "k.bin")

    assert not sftp.is_connected()
    assert os.listdir(remote_dir) == []  # the temporary file was removed
    assert sftp.list() == []  # a new connection
    sftp.close()
    target = f"{remote_dir}/k.bin"
    assert records(audit_records) == [
        connected(sshd_server),
        record(sshd_server, "upload", target, 2 * CHUNK, "KeyboardInterrupt"),
        connected(sshd_server),
        record(sshd_server, "list", str(remote_dir), None, entries=0),
    ]


def test_a_download_interrupted_is_recorded_with_the_bytes_received_then_raised(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any
) -> None:
    (remote_dir / "big.bin").write_bytes(b"q" * (5 * CHUNK))
    with client(sshd_server, remote_dir) as sftp, pytest.raises(KeyboardInterrupt):
        sftp.download("big.bin", InterruptedWriter())

    assert records(audit_records) == [
        connected(sshd_server),
        record(sshd_server, "download", f"{remote_dir}/big.bin", 2 * CHUNK, "KeyboardInterrupt"),
    ]
