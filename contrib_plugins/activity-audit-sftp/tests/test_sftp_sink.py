"""The SFTP sink against a real OpenSSH sshd on loopback: configuration, host key verification, atomic
uploads, an outage, and a SIGKILL while the server is down. Every test counts event_ids."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import traceback
from pathlib import Path
from typing import Any

import pytest
from activity_audit_sftp.plugin import plugin
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from sftp_options import sftp_options

from activity_audit import flush
from activity_audit.conf import MAX_SECONDS, build
from tests.support.remote_archive import (
    audit_settings,
    count_ids,
    emit_marked,
    every_log_record_into_the_trail,
    finish_child,
    pipeline_events,
    records_of_objects,
    start_child,
    wait_until,
)
from tests.support.sshd import SshdServer

SFTP = "ACTIVITY_AUDIT['PLUGINS']['sftp']"
NAME = re.compile(r"^\d{4}/\d{2}/\d{2}/\d{2}/[0-9a-f-]{36}-\d{12}-\d{12}\.jsonl\.gz$")


def remote_files(remote_dir: Path) -> dict[str, bytes]:
    """Every file below ``remote_dir`` on the server: relative path -> bytes."""
    if not remote_dir.exists():
        return {}
    return {
        str(path.relative_to(remote_dir)): path.read_bytes()
        for path in sorted(remote_dir.rglob("*"))
        if path.is_file()
    }


def delivered(remote_dir: Path, ids: list[str]) -> bool:
    return count_ids(records_of_objects(remote_files(remote_dir).values()), ids).complete


def configure(**options: Any) -> None:
    plugin.audit_configure(settings=build({"PLUGINS": {"sftp": options}}, django_settings))


# --- configuration --------------------------------------------------------------------------------------
def test_a_wrong_setting_stops_start_up_naming_it(sshd_server: SshdServer, tmp_path: Path) -> None:
    good = {**sftp_options(sshd_server, "/audit"), "password": "Pa55word-never-shown"}
    garbage_key = tmp_path / "not_a_key"
    garbage_key.write_text("hello\n")
    cases = [
        ({**good, "host": None}, f"{SFTP}['host'] is required."),
        ({**good, "known_hosts": None}, f"{SFTP}['known_hosts'] is required."),
        (
            {**good, "known_hosts": str(tmp_path / "missing")},
            f"{SFTP}['known_hosts'] = '{tmp_path / 'missing'}' is not a file.",
        ),
        (
            {**good, "password": None},
            f"{SFTP}['password'] or {SFTP}['private_key'] is required.",
        ),
        (
            {**good, "private_key": str(garbage_key)},
            f"{SFTP}['private_key'] cannot be loaded as a private key (wrong format or wrong passphrase).",
        ),
        (
            {**good, "private_key": str(tmp_path / "missing")},
            f"{SFTP}['private_key'] is not a file (the value is secret, so not shown).",
        ),
        (
            {**good, "remote_dir": "audit"},
            f"{SFTP}['remote_dir'] must be an absolute path on the server, got 'audit'.",
        ),
        (
            {**good, "password": ["Pa55word-never-shown"]},
            f"{SFTP}['password'] must be a non-empty string, got a secret value.",
        ),
        ({**good, "port": 70000}, f"{SFTP}['port'] must be an integer from 1 to 65535, got 70000."),
        ({**good, "port": 0}, f"{SFTP}['port'] must be an integer from 1 to 65535, got 0."),
        (
            {**good, "timeout": float("inf")},
            f"{SFTP}['timeout'] must be a number of seconds of at least 0.1, got inf.",
        ),
        (
            {**good, "timeout": float("nan")},
            f"{SFTP}['timeout'] must be a number of seconds of at least 0.1, got nan.",
        ),
        (
            {**good, "segment_max_age": 1e10},
            f"{SFTP}['segment_max_age'] must be at most {MAX_SECONDS} seconds (the longest wait Python "
            "supports), got 10000000000.0.",
        ),
    ]
    for options, message in cases:
        with pytest.raises(ImproperlyConfigured) as error:
            configure(**options)
        assert str(error.value) == message
        assert "Pa55word" not in str(error.value)


def test_private_key_text_that_cannot_be_used_stops_start_up_without_showing_it(
    sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_text = sshd_server.private_key_path.read_text()
    body = key_text.splitlines()[1]  # a line of the key's base64 body
    broken = key_text.replace(body, body[:20] + "A" * (len(body) - 20))  # not a key any more
    one_line = "".join(key_text.splitlines()[1:-1])  # the body alone: no "-----BEGIN", no line break
    assert len(one_line.replace("/", "")) > 255
    good = {**sftp_options(sshd_server, "/audit"), "password": None}
    cases = [
        (
            broken,
            f"{SFTP}['private_key'] cannot be loaded as a private key (wrong format or wrong passphrase).",
        ),
        (body, f"{SFTP}['private_key'] is not a file (the value is secret, so not shown)."),  # a path
        (
            one_line.replace("/", ""),  # a path whose one name is longer than the system takes
            f"{SFTP}['private_key'] cannot be used as a path: File name too long "
            "(the value is secret, so not shown).",
        ),
    ]
    for value, message in cases:
        monkeypatch.setenv("AUDIT_TEST_SFTP_KEY", value)
        with pytest.raises(ImproperlyConfigured) as error:
            configure(**{**good, "private_key": {"$env": "AUDIT_TEST_SFTP_KEY"}})
        assert str(error.value) == message
        shown = "".join(traceback.format_exception(error.value))  # the exceptions it was raised from too
        key_lines = [line for line in value.splitlines() if not line.startswith("-----")]
        assert [line for line in key_lines if line[-40:] in shown] == []


# --- delivery ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "credential", ["password", "private_key", "private_key_text", "encrypted_private_key"]
)
def test_normal_operation_delivers_every_record_exactly_once(
    sshd_server: SshdServer, remote_dir: Path, log_dir: Path, tmp_path: Path, credential: str
) -> None:
    options = sftp_options(sshd_server, str(remote_dir))
    if credential == "private_key":
        options = {**options, "password": None, "private_key": str(sshd_server.private_key_path)}
    elif credential == "private_key_text":  # the key itself, as a secret store hands it over
        os.environ["AUDIT_TEST_SFTP_KEY"] = sshd_server.private_key_path.read_text()
        options = {**options, "password": None, "private_key": {"$env": "AUDIT_TEST_SFTP_KEY"}}
    elif credential == "encrypted_private_key":
        encrypted = tmp_path / "id_encrypted"
        encrypted.write_bytes(sshd_server.private_key_path.read_bytes())
        encrypted.chmod(0o600)
        subprocess.run(
            ["ssh-keygen", "-q", "-p", "-P", "", "-N", "open sesame", "-f", str(encrypted)], check=True
        )
        options = {
            **options,
            "password": None,
            "private_key": str(encrypted),
            "private_key_passphrase": "open sesame",
        }
    with override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, sftp=options)):
        ids = emit_marked(250, "normal")
        assert flush(10)
        wait_until(lambda: delivered(remote_dir, ids), 30, "every record on the server")
    files = remote_files(remote_dir)
    count = count_ids(records_of_objects(files.values()), ids)
    assert (count.found, count.missing, count.duplicated) == (250, [], {})
    assert all(NAME.match(name) for name in files), sorted(files)  # no temporary name left behind
    assert {(remote_dir / name).stat().st_mode & 0o777 for name in files} == {0o640}
    ours = [r for r in records_of_objects(files.values()) if r.get("marker") == "normal"]
    assert [r["number"] for r in ours] == list(range(250))
    assert pipeline_events(log_dir, "UPLOAD_FAILED") == []


@pytest.mark.parametrize(
    ("known_hosts", "problem"),
    [("unknown", "is unknown: the server offered"), ("changed", "has CHANGED: the server offered")],
)
def test_an_unknown_or_changed_host_key_sends_nothing(
    sshd_server: SshdServer, remote_dir: Path, log_dir: Path, tmp_path: Path, known_hosts: str, problem: str
) -> None:
    if known_hosts == "unknown":
        path = tmp_path / "known_hosts"  # knows the same key, for another port: not this server
        path.write_text(sshd_server.known_hosts_path.read_text().replace(f":{sshd_server.port} ", ":2222 "))
    else:
        path = sshd_server.wrong_known_hosts_path
    options = sftp_options(sshd_server, str(remote_dir), known_hosts=str(path))
    mark = sshd_server.log_mark()
    with override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, sftp=options)):
        emit_marked(3, "refused")
        assert flush(10)
        wait_until(lambda: pipeline_events(log_dir, "UPLOAD_FAILED"), 30, "an UPLOAD_FAILED record")
        assert plugin.spool is not None and plugin.spool.backlog()  # kept for when the key is fixed
    [event] = pipeline_events(log_dir, "UPLOAD_FAILED")
    host = f"[{sshd_server.host}]:{sshd_server.port}"
    assert event["source"] == "sftp"
    assert event["error"].startswith(f"HostKeyRejected: host key of {host} ({path}) {problem} ssh-ed25519 ")
    assert sshd_server.host_key_fingerprint in event["error"] and "nothing was sent" in event["error"]
    assert sshd_server.auth_attempts(mark) == []  # no credential left this process
    assert not remote_dir.exists()


def test_outage_then_recovery_delivers_the_backlog_in_order(
    sshd_server: SshdServer, remote_dir: Path, log_dir: Path
) -> None:
    options = sftp_options(sshd_server, str(remote_dir))
    try:
        with override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, sftp=options)):
            before = emit_marked(100, "before")
            wait_until(lambda: delivered(remote_dir, before), 30, "the first records on the server")
            sshd_server.stop()
            during = emit_marked(200, "during")
            assert flush(10)
            wait_until(lambda: pipeline_events(log_dir, "UPLOAD_FAILED"), 30, "an UPLOAD_FAILED record")
            assert plugin.spool is not None and plugin.spool.backlog()
            sshd_server.start()
            wait_until(lambda: delivered(remote_dir, during), 60, "the backlog on the server")
    finally:
        sshd_server.start()
    records = records_of_objects(remote_files(remote_dir).values())
    count = count_ids(records, before + during)
    assert (count.found, count.missing, count.duplicated) == (300, [], {})
    assert [r["number"] for r in records if r.get("marker") == "during"] == list(range(200))
    [warning] = pipeline_events(log_dir, "UPLOAD_FAILED")  # one report per REPORT_INTERVAL, not one per retry
    assert warning["source"] == "sftp" and f"{sshd_server.host}:{sshd_server.port}" in warning["error"]


def test_sigkill_while_the_server_is_down_loses_nothing(
    sshd_server: SshdServer, remote_dir: Path, tmp_path: Path
) -> None:
    log_dir = tmp_path / "shared_log_dir"
    log_dir.mkdir()
    plugins = {"sftp": {**sftp_options(sshd_server, str(remote_dir)), "retry_max": 0.3}}
    sshd_server.stop()
    try:
        killed = start_child(plugins, log_dir, 150, "killed", mode="hold")
        os.kill(killed.process.pid, signal.SIGKILL)
        killed.process.wait(10)
        spooled = list((log_dir / "spool" / "sftp").iterdir())
        assert spooled and all(path.stat().st_mode & 0o777 == 0o640 for path in spooled)
    finally:
        sshd_server.start()
    restarted = start_child(plugins, log_dir, 20, "restarted", mode="drain")
    finish_child(restarted)
    count = count_ids(records_of_objects(remote_files(remote_dir).values()), killed.ids + restarted.ids)
    assert (count.found, count.missing, count.duplicated) == (170, [], {})


def test_paramiko_s_own_thread_logs_nothing_into_the_trail(
    sshd_server: SshdServer, remote_dir: Path, log_dir: Path
) -> None:
    """The transport thread paramiko starts logs the connection and the authentication: those records stay
    out of app.log, which the sink itself uploads."""
    options = sftp_options(sshd_server, str(remote_dir))
    with (
        every_log_record_into_the_trail(),
        override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, sftp=options)),
    ):
        ids = emit_marked(20, "quiet")
        logging.getLogger("tests.sftp").debug("configured")
        assert flush(10)
        wait_until(lambda: delivered(remote_dir, ids), 30, "every record on the server")
        assert flush(10)
    records = [json.loads(line) for line in (log_dir / "app.log").read_text().splitlines()]
    assert [record["message"] for record in records if record["name"] == "tests.sftp"] == ["configured"]
    assert [record["name"] for record in records if "paramiko" in record["name"]] == []
