"""The uploader's SFTP session against the real sshd: a session the server ended is opened again, a failed
upload leaves the next one a new connection, and a segment is never readable to more users than the file it
becomes, not even while it is written."""

from __future__ import annotations

import datetime as dt
import os
import signal
import stat
from pathlib import Path
from typing import Any

import paramiko
import pytest
from activity_audit_sftp.config import SftpConfig
from activity_audit_sftp.uploader import FILE_MODE, SftpUploader

from activity_audit.spool import Segment
from tests.support.remote_archive import wait_until
from tests.support.sshd import SshdServer, _descendants


def uploader_for(server: SshdServer, remote_dir: Path) -> SftpUploader:
    return SftpUploader(
        SftpConfig(
            host=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            private_key=None,
            remote_dir=str(remote_dir),
            known_hosts_path=server.known_hosts_path,
            timeout=5.0,
        )
    )


def segment(data: bytes) -> Segment:
    return Segment(data, 1, "stream", 1, 1, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))


def sftp_server_process(server: SshdServer, before: set[int]) -> int:
    """The process serving the SFTP session opened since ``before`` (sshd names it ``...@internal-sftp``)."""
    for pid in set(_descendants(int(server.pid_path.read_text()))) - before:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        if title.endswith("@internal-sftp"):
            return pid
    raise AssertionError("no internal-sftp process")


def test_a_session_the_server_ended_is_opened_again(sshd_server: SshdServer, remote_dir: Path) -> None:
    uploader = uploader_for(sshd_server, remote_dir)
    before = set(_descendants(int(sshd_server.pid_path.read_text())))
    uploader.upload("a.jsonl.gz", segment(b"first"))
    os.kill(sftp_server_process(sshd_server, before), signal.SIGKILL)  # the SSH connection stays
    channel = uploader._sftp.get_channel() if uploader._sftp is not None else None
    wait_until(lambda: channel is not None and channel.eof_received, 5, "the end of the SFTP session")

    uploader.upload("b.jsonl.gz", segment(b"second"))  # no failure: a new session is opened first
    uploader.close()

    assert (remote_dir / "a.jsonl.gz").read_bytes() == b"first"
    assert (remote_dir / "b.jsonl.gz").read_bytes() == b"second"


def test_a_segment_is_written_with_its_final_mode_from_the_start(
    sshd_server: SshdServer, remote_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    write = paramiko.SFTPFile.write

    def watching_write(remote: Any, data: Any) -> None:
        seen.extend(stat.S_IMODE(path.stat().st_mode) for path in remote_dir.glob(".*.tmp"))
        write(remote, data)

    monkeypatch.setattr(paramiko.SFTPFile, "write", watching_write)
    uploader = uploader_for(sshd_server, remote_dir)
    uploader.upload("c.jsonl.gz", segment(b"third"))
    uploader.close()

    assert seen == [FILE_MODE]  # never the server's default (0644 under umask 022) while it was written
    assert stat.S_IMODE((remote_dir / "c.jsonl.gz").stat().st_mode) == FILE_MODE
