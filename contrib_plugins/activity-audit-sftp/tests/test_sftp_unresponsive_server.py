"""A server that authenticates and then stops answering must not hold the upload thread: every wait of the
SFTP session's start is bounded by ``timeout``, and the failure is reported (UPLOAD_FAILED) and retried. A
connection that died is dropped whole, its socket included, even when closing its SFTP session fails.

The servers are paramiko's, in this process: OpenSSH cannot be told to wedge at these points.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import pytest
from activity_audit_sftp.config import SftpConfig
from activity_audit_sftp.plugin import plugin
from activity_audit_sftp.uploader import SftpUploader
from django.test import override_settings

from activity_audit import flush
from tests.support.remote_archive import audit_settings, emit_marked, pipeline_events, wait_until

SEGMENT = r"/srv/audit/\d{4}/\d{2}/\d{2}/\d{2}/[0-9a-f-]{36}-\d{12}-\d{12}\.jsonl\.gz"
NO_ANSWER = {
    "init": "the server accepted the sftp subsystem but did not answer the SFTP version exchange within 1 s",
    "subsystem": "the server did not answer the sftp subsystem request within 1 s",
}


class WedgedServer(paramiko.ServerInterface):
    """Takes any password and opens a session; ``wedge`` says where it then stops answering: ``"init"``
    accepts the sftp subsystem and never answers on the channel, ``"subsystem"`` never answers the request."""

    def __init__(self, wedge: str, release: threading.Event) -> None:
        self.wedge, self.release = wedge, release

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        if self.wedge == "subsystem":
            self.release.wait(60)  # the server's transport thread hangs here: no answer is sent
        return True


@dataclass
class Wedged:
    """A wedged server listening on loopback; ``transports`` are the connections clients made to it."""

    wedge: str
    port: int
    known_hosts: Path
    listener: socket.socket
    host_key: paramiko.PKey
    release: threading.Event = field(default_factory=threading.Event)
    transports: list[paramiko.Transport] = field(default_factory=list)

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # the listener is closed
            transport = paramiko.Transport(connection)
            transport.add_server_key(self.host_key)
            transport.start_server(server=WedgedServer(self.wedge, self.release))
            self.transports.append(transport)


@pytest.fixture(params=sorted(NO_ANSWER))
def wedged(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Wedged]:
    host_key = paramiko.ECDSAKey.generate()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")
    server = Wedged(request.param, port, known_hosts, listener, host_key)
    threading.Thread(target=server.serve, daemon=True).start()
    yield server
    server.release.set()
    listener.close()
    for transport in server.transports:
        transport.close()


def test_a_server_that_stops_answering_is_reported_and_retried(wedged: Wedged, log_dir: Path) -> None:
    options = {
        "host": "127.0.0.1",
        "port": wedged.port,
        "username": "audit",
        "password": "any",
        "remote_dir": "/srv/audit",
        "known_hosts": str(wedged.known_hosts),
        "timeout": 1,
        "segment_max_age": 0.1,
        "retry_initial": 0.1,
        "retry_max": 0.5,
    }
    with override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, sftp=options)):
        emit_marked(3, "wedged")
        assert flush(10)
        wait_until(lambda: pipeline_events(log_dir, "UPLOAD_FAILED"), 10, "an UPLOAD_FAILED record")
        wait_until(lambda: len(wedged.transports) >= 2, 10, "a second attempt")  # retried, not stuck
        assert plugin.spool is not None and plugin.spool.backlog()  # kept for when the server answers
        thread = plugin.spool._thread
        assert thread is not None and thread.is_alive()
    [event] = pipeline_events(log_dir, "UPLOAD_FAILED")
    assert event["source"] == "sftp"
    where = f"sftp://audit@127.0.0.1:{wedged.port}"
    assert re.fullmatch(
        rf"SftpUploadError: upload of {SEGMENT} to {re.escape(where)} failed: TimeoutError: "
        + re.escape(NO_ANSWER[wedged.wedge]),
        event["error"],
    ), event["error"]


class DeadSession:
    def close(self) -> None:
        raise EOFError  # what paramiko raises when the channel's CLOSE cannot be written any more


class Transport:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_the_transport_is_closed_when_closing_the_session_raises(tmp_path: Path) -> None:
    config = SftpConfig(
        host="127.0.0.1",
        port=22,
        username="audit",
        password="any",
        private_key=None,
        remote_dir="/srv/audit",
        known_hosts_path=tmp_path / "known_hosts",
        timeout=1.0,
    )
    uploader = SftpUploader(config)
    transport = Transport()
    uploader._sftp, uploader._transport = DeadSession(), transport
    with pytest.raises(EOFError):
        uploader.close()
    assert transport.closed
    assert (uploader._sftp, uploader._transport) == (None, None)  # the next upload connects again
