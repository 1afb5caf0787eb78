"""The SFTP sink's connection against real OpenSSH servers: known_hosts read as OpenSSH reads it (several
lines for a host, RSA keys, marker lines, revoked keys) and the password tried after a refused key. Every
delivery test counts event_ids on the server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import paramiko
import pytest
from activity_audit_sftp.plugin import plugin
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from sftp_options import sftp_options
from test_sftp_sink import SFTP, configure, remote_files

from activity_audit import flush
from tests.support.remote_archive import (
    audit_settings,
    count_ids,
    emit_marked,
    pipeline_events,
    records_of_objects,
    wait_until,
)
from tests.support.sshd import SshdServer, rsa_sshd_server  # noqa: F401 - the fixture


def line_of(known_hosts: Path) -> str:
    [line] = known_hosts.read_text().splitlines()
    return line


def key_of(known_hosts: Path) -> str:
    return line_of(known_hosts).split(" ", 1)[1]


def deliver(server: SshdServer, remote_dir: Path, log_dir: Path, count: int, **options: Any) -> None:
    """Emit ``count`` records through the sink and check that each one is on the server exactly once."""
    settings = audit_settings(log_dir, sftp=sftp_options(server, str(remote_dir), **options))
    with override_settings(ACTIVITY_AUDIT=settings):
        ids = emit_marked(count, "delivered")
        assert flush(10)
        wait_until(
            lambda: count_ids(records_of_objects(remote_files(remote_dir).values()), ids).complete,
            30,
            "every record on the server",
        )
    found = count_ids(records_of_objects(remote_files(remote_dir).values()), ids)
    assert (found.found, found.missing, found.duplicated) == (count, [], {})
    assert pipeline_events(log_dir, "UPLOAD_FAILED") == []


@pytest.mark.parametrize(
    "lines",
    [
        lambda server: [line_of(server.wrong_known_hosts_path), line_of(server.known_hosts_path)],
        lambda server: [
            f"@cert-authority *.corp.example {key_of(server.wrong_known_hosts_path)}",
            f"@revoked * {key_of(server.wrong_known_hosts_path)}",
            "not a known_hosts line",
            line_of(server.known_hosts_path),
        ],
    ],
    ids=["second-line-matches", "marker-lines"],
)
def test_the_host_is_accepted_when_any_known_hosts_line_for_it_matches(
    sshd_server: SshdServer, remote_dir: Path, log_dir: Path, tmp_path: Path, lines: Any
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("\n".join(lines(sshd_server)) + "\n")
    deliver(sshd_server, remote_dir, log_dir, 40, known_hosts=str(known_hosts))


@pytest.mark.parametrize("listing", ["rsa-only", "rsa-and-ed25519"])
def test_a_server_known_by_its_rsa_key(
    rsa_sshd_server: SshdServer,  # noqa: F811 - the imported fixture
    log_dir: Path,
    tmp_path: Path,
    listing: str,
) -> None:
    known_hosts = tmp_path / "known_hosts"
    lines = [line_of(rsa_sshd_server.known_hosts_path)]
    if listing == "rsa-and-ed25519":  # as ssh-keyscan lists a host: one line per key type
        lines.insert(0, line_of(rsa_sshd_server.wrong_known_hosts_path))
    known_hosts.write_text("\n".join(lines) + "\n")
    remote_dir = rsa_sshd_server.root_dir / f"audit-{uuid.uuid4().hex[:8]}"
    deliver(rsa_sshd_server, remote_dir, log_dir, 30, known_hosts=str(known_hosts))


def test_a_revoked_key_sends_nothing(
    sshd_server: SshdServer, remote_dir: Path, log_dir: Path, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"{line_of(sshd_server.known_hosts_path)}\n@revoked * {key_of(sshd_server.known_hosts_path)}\n"
    )
    options = sftp_options(sshd_server, str(remote_dir), known_hosts=str(known_hosts))
    mark = sshd_server.log_mark()
    with override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, sftp=options)):
        emit_marked(3, "refused")
        assert flush(10)
        wait_until(lambda: pipeline_events(log_dir, "UPLOAD_FAILED"), 30, "an UPLOAD_FAILED record")
        assert plugin.spool is not None and plugin.spool.backlog()
    [event] = pipeline_events(log_dir, "UPLOAD_FAILED")
    host = f"[{sshd_server.host}]:{sshd_server.port}"
    assert event["error"] == (
        f"HostKeyRejected: host key of {host} ({known_hosts}) is REVOKED: the server offered ssh-ed25519 "
        f"{sshd_server.host_key_fingerprint}, which an @revoked line of known_hosts names; nothing was sent."
    )
    assert sshd_server.auth_attempts(mark) == []
    assert not remote_dir.exists()


def test_the_password_is_tried_when_the_key_is_refused(
    sshd_server: SshdServer, remote_dir: Path, log_dir: Path, tmp_path: Path
) -> None:
    unauthorised = tmp_path / "unauthorised_key"
    paramiko.ECDSAKey.generate().write_private_key_file(str(unauthorised))
    mark = sshd_server.log_mark()
    deliver(sshd_server, remote_dir, log_dir, 25, private_key=str(unauthorised))
    log = sshd_server.read_log(mark)
    assert "Failed publickey" in log and "Accepted password" in log


def test_a_known_hosts_file_without_a_single_key_line_stops_start_up(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    garbage = tmp_path / "known_hosts"
    garbage.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n")
    with pytest.raises(ImproperlyConfigured) as error:
        configure(**sftp_options(sshd_server, "/audit", known_hosts=str(garbage)))
    assert str(error.value) == (
        f"{SFTP}['known_hosts'] = '{garbage}' is not a known_hosts file: no line holds a host key."
    )
