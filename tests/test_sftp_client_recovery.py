"""SFTPClient against a real OpenSSH sshd on loopback, when something goes wrong:

- a host name in capitals and a hashed known_hosts line: OpenSSH compares names lower-cased;
- a private key given in a form that is taken for a path: no error quotes the value;
- an SFTP session the server ended while keeping the SSH connection: the next operation opens a new one;
- a timeout in the middle of a transfer: the connection is closed, the next operation opens a new one,
  and an upload's temporary file is removed over a connection of its own;
- the mode of an uploaded file: written privately, then given the mode of the file it replaces;
- an interruption in the middle of a request: handled as a timeout, without a wait on the cut stream.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import pwd
import signal
import stat
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
import pytest

from activity_audit import audit_context
from activity_audit.clients.sftp import SFTPClient
from tests.support.remote_archive import wait_until
from tests.support.sftp_records import sftp_record as record

if TYPE_CHECKING:
    from tests.support.sshd import SshdServer

pytest_plugins = ["tests.support.sshd"]  # the sshd_server fixture

VOLATILE = ("timestamp", "event_id", "stream_id", "seq", "execution_time")
CHUNK = 32768  # SFTPClient sends, and paramiko's getfo receives, data in pieces of this size

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


# --- 2. a private key taken for a path ----------------------------------------------------------------

NOT_SHOWN = (
    "private_key is neither key text (starting with -----BEGIN, or of several lines) nor a file that can be "
    "read: {reason} (the value is secret, so not shown)"
)


def test_a_one_line_key_taken_for_a_path_is_never_quoted(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any
) -> None:
    encoded = base64.b64encode(sshd_server.private_key_path.read_bytes()).decode()  # a secret store's form
    message = "[Errno 36] " + NOT_SHOWN.format(reason="File name too long")

    with pytest.raises(OSError) as refused:
        client(sshd_server, password=None, private_key=encoded).connect()
    with client(sshd_server, remote_dir, private_key=encoded) as sftp:  # with a password: passed over
        sftp.list()

    assert str(refused.value) == message
    assert refused.value.errno == 36
    shown = "".join(traceback.format_exception(refused.value))
    lines = b"\n".join(entry.line for entry in audit_records.entries).decode()
    assert [part for part in (encoded[:40], encoded[100:140], encoded[-40:]) if part in shown + lines] == []
    assert stable(audit_records) == [
        record(
            sshd_server,
            "connect",
            None,
            None,
            f"OSError: {message}",
            host_key_fingerprint=sshd_server.host_key_fingerprint,
        ),
        connected(sshd_server, key_error=f"OSError: {message}"),
        record(sshd_server, "list", str(remote_dir), None, entries=0),
    ]


def test_a_missing_key_file_keeps_its_error_class_but_not_its_path(
    sshd_server: SshdServer, tmp_path: Path, audit_records: Any
) -> None:
    path = tmp_path / "secret-name-of-the-key"
    with pytest.raises(FileNotFoundError) as refused:
        client(sshd_server, password=None, private_key=path).connect()

    assert str(refused.value) == "[Errno 2] " + NOT_SHOWN.format(reason="No such file or directory")
    assert [r["error_message"] for r in audit_records.of("audit.request")] == [
        f"FileNotFoundError: {refused.value}"
    ]


# --- 3. a session the server closed -------------------------------------------------------------------


def session_processes(server: SshdServer, connect: Callable[[], None]) -> dict[str, int]:
    """The sshd processes that serve the connection ``connect`` opens, by their title's end (``[priv]``,
    ``@notty``: the SSH connection, ``@internal-sftp``: the SFTP session)."""
    from tests.support.sshd import _descendants

    listener = int(server.pid_path.read_text())
    before = set(_descendants(listener))
    connect()
    titles = {pid: title_of(pid) for pid in set(_descendants(listener)) - before}
    return {title.rsplit(" ", 1)[-1].split("@")[-1]: pid for pid, title in titles.items() if title}


def title_of(pid: int) -> str:
    """The process title sshd gave ``pid``; empty once it has ended."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode().strip()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def idle_closing_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """An sshd that closes a session channel idle for one second (``ChannelTimeout``), keeping the SSH
    connection open."""
    from tests.support.sshd import start_sshd  # imported here: pytest_plugins loads the module (rewritten)

    server = start_sshd(tmp_path_factory.mktemp("sshd-channel-timeout"))
    try:
        server.stop()
        server.config_path.write_text(server.config_path.read_text() + "ChannelTimeout session:*=1\n")
        server.start()
        yield server
    finally:
        server.close()


def test_an_sftp_session_the_server_ended_is_opened_again(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any
) -> None:
    sftp = client(sshd_server, remote_dir)
    session = session_processes(sshd_server, sftp.connect)
    os.kill(session["internal-sftp"], signal.SIGKILL)  # the sftp-server ends; the SSH connection stays

    wait_until(lambda: not sftp.is_connected(), 5, "the client to see the SFTP session end")
    os.kill(session["notty"], 0)  # still there: only the channel was closed
    assert sftp.list() == []
    sftp.close()

    assert stable(audit_records) == [
        connected(sshd_server),
        connected(sshd_server),
        record(sshd_server, "list", str(remote_dir), None, entries=0),
    ]


def test_an_sftp_channel_closed_by_channel_timeout_is_opened_again(
    idle_closing_sshd: SshdServer, audit_records: Any
) -> None:
    directory = make_remote_dir(idle_closing_sshd)
    sftp = client(idle_closing_sshd, directory)
    sftp.upload(io.BytesIO(b"one"), "one.txt")

    wait_until(lambda: not sftp.is_connected(), 5, "the client to see sshd close the idle SFTP channel")
    assert sftp.list() == ["one.txt"]
    sftp.close()

    assert stable(audit_records) == [
        connected(idle_closing_sshd),
        record(idle_closing_sshd, "upload", str(directory / "one.txt"), 3),
        connected(idle_closing_sshd),
        record(idle_closing_sshd, "list", str(directory), None, entries=1),
    ]


# --- 4. a timeout in the middle of a transfer ---------------------------------------------------------


@contextlib.contextmanager
def stopped_later(pids: list[int]) -> Iterator[Callable[[], None]]:
    """A function that stops ``pids`` (SIGSTOP: the server stops answering); they go on at the end."""

    def stop() -> None:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)

    try:
        yield stop
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


class StallingWriter(io.RawIOBase):
    """The local file of a download: its first write stops the server, and it counts what it received."""

    def __init__(self, stop_server: Callable[[], None]) -> None:
        self.stop_server: Callable[[], None] | None = stop_server
        self.received = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.stop_server is not None:
            self.stop_server()
            self.stop_server = None
        self.received += len(data)
        return len(data)


def test_a_download_that_timed_out_leaves_the_next_operation_a_new_connection(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any
) -> None:
    (remote_dir / "big.bin").write_bytes(b"b" * (8 << 20))  # more than paramiko's 2 MB channel window
    sftp = client(sshd_server, remote_dir, timeout=1)
    session = session_processes(sshd_server, sftp.connect)
    with stopped_later(list(session.values())) as stop:
        writer = StallingWriter(stop)
        with pytest.raises(TimeoutError):
            sftp.download("big.bin", writer)
        assert not sftp.is_connected()  # a reply may be half read: dropped while the server still hangs

    assert sftp.list() == ["big.bin"]
    sftp.close()
    assert 0 < writer.received < 8 << 20
    assert stable(audit_records) == [
        connected(sshd_server),
        record(sshd_server, "download", str(remote_dir / "big.bin"), writer.received, "TimeoutError"),
        connected(sshd_server),
        record(sshd_server, "list", str(remote_dir), None, entries=1),
    ]


class StallingSource(io.RawIOBase):
    """The local file of an upload: endless chunks, the server stopped after the second one."""

    def __init__(self, stop_server: Callable[[], None]) -> None:
        self.stop_server = stop_server
        self.chunks = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.chunks += 1
        if self.chunks == 2:
            self.stop_server()
        return b"u" * CHUNK


def test_an_upload_that_timed_out_has_its_temporary_file_removed_over_a_new_connection(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any
) -> None:
    (remote_dir / "ledger.txt").write_bytes(b"old ledger")
    sftp = client(sshd_server, remote_dir, timeout=1)
    session = session_processes(sshd_server, sftp.connect)
    with stopped_later(list(session.values())) as stop:
        source = StallingSource(stop)
        with pytest.raises(TimeoutError):
            sftp.upload(source, "ledger.txt")
        assert sorted(os.listdir(remote_dir)) == ["ledger.txt"]  # removed while the old session still hangs
        assert not sftp.is_connected()

    assert (remote_dir / "ledger.txt").read_bytes() == b"old ledger"
    sent = (source.chunks - 1) * CHUNK  # the last chunk read was being sent when the wait ran out
    assert stable(audit_records) == [
        connected(sshd_server),
        record(sshd_server, "upload", str(remote_dir / "ledger.txt"), sent, "TimeoutError"),
        connected(sshd_server),  # the connection that removed the temporary file
    ]


# --- 5. the mode of an uploaded file ------------------------------------------------------------------


def umask_of(pid: int) -> int:
    [line] = [
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Umask:")
    ]
    return int(line.split()[1], 8)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class ModeWatchingSource(io.RawIOBase):
    """Two chunks; at the second read it notes the mode of the temporary file on the server side."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.chunks = 0
        self.temporary_modes: list[int] = []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.chunks += 1
        if self.chunks == 2:
            self.temporary_modes = [mode_of(path) for path in self.directory.glob(".*.part")]
        return b"m" * CHUNK if self.chunks <= 2 else b""


def test_an_upload_is_written_privately_and_keeps_the_mode_of_the_file_it_replaces(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any
) -> None:
    user = pwd.getpwnam(sshd_server.username)
    for name, mode in (("private.csv", 0o600), ("shared.csv", 0o640)):
        (remote_dir / name).write_bytes(b"old")
        os.chown(remote_dir / name, user.pw_uid, user.pw_gid)
        (remote_dir / name).chmod(mode)
    source = ModeWatchingSource(remote_dir)
    sftp = client(sshd_server, remote_dir)
    umask = umask_of(session_processes(sshd_server, sftp.connect)["internal-sftp"])  # read while it runs

    sftp.upload(source, "private.csv")
    sftp.upload(io.BytesIO(b"shared"), "shared.csv")
    sftp.upload(io.BytesIO(b"new"), "new.csv")
    sftp.close()

    assert source.temporary_modes == [0o600]  # nobody else could open it while it was written
    assert mode_of(remote_dir / "private.csv") == 0o600
    assert mode_of(remote_dir / "shared.csv") == 0o640
    # What a plain put gives a new file: sftp-server creates it 0666, less the umask of its process.
    assert mode_of(remote_dir / "new.csv") == 0o666 & ~umask
    assert sorted(os.listdir(remote_dir)) == ["new.csv", "private.csv", "shared.csv"]
    assert (remote_dir / "private.csv").read_bytes() == b"m" * 2 * CHUNK
    assert stable(audit_records) == [
        connected(sshd_server),
        record(sshd_server, "upload", str(remote_dir / "private.csv"), 2 * CHUNK),
        record(sshd_server, "upload", str(remote_dir / "shared.csv"), 6),
        record(sshd_server, "upload", str(remote_dir / "new.csv"), 3),
    ]


def test_an_upload_to_a_server_that_refuses_to_change_modes_keeps_fewer_bits_and_succeeds(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = pwd.getpwnam(sshd_server.username)
    (remote_dir / "open.csv").write_bytes(b"old")
    os.chown(remote_dir / "open.csv", user.pw_uid, user.pw_gid)
    (remote_dir / "open.csv").chmod(0o666)  # bits the server's umask takes away from a file it creates

    def refuse(sftp: paramiko.SFTPClient, path: str, mode: int) -> None:
        raise PermissionError(13, "setstat refused")  # as some SFTP front ends of object stores answer

    monkeypatch.setattr(paramiko.SFTPClient, "chmod", refuse)
    sftp = client(sshd_server, remote_dir)
    umask = umask_of(session_processes(sshd_server, sftp.connect)["internal-sftp"])
    sftp.upload(io.BytesIO(b"new"), "open.csv")
    sftp.close()

    assert umask & 0o666  # otherwise nothing had to change
    assert (remote_dir / "open.csv").read_bytes() == b"new"
    assert mode_of(remote_dir / "open.csv") == 0o666 & ~umask  # fewer bits, never more
    assert stable(audit_records) == [
        connected(sshd_server),
        record(sshd_server, "upload", str(remote_dir / "open.csv"), 3),
    ]


# --- 6. an interruption in the middle of a request ----------------------------------------------------


@pytest.fixture
def cut_next_send(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """A function that makes the next ``Channel.send`` send half of its data, then raise KeyboardInterrupt:
    a Ctrl-C that lands inside an SFTP request, as when the user gives up on a stalled upload."""
    armed = False
    original = paramiko.Channel.send

    def send(channel: paramiko.Channel, data: bytes) -> int:
        nonlocal armed
        if not armed:
            return original(channel, data)
        armed = False
        original(channel, data[: len(data) // 2])
        raise KeyboardInterrupt

    def arm() -> None:
        nonlocal armed
        armed = True

    monkeypatch.setattr(paramiko.Channel, "send", send)
    return arm


class ArmingSource(io.RawIOBase):
    """Endless chunks; its third read arms ``arm``, so the request that sends that chunk is cut."""

    def __init__(self, arm: Callable[[], None]) -> None:
        self.arm = arm
        self.chunks = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.chunks += 1
        if self.chunks == 3:
            self.arm()
        return b"k" * CHUNK


def test_an_upload_interrupted_inside_a_request_has_its_temporary_file_removed_over_a_new_connection(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any, cut_next_send: Callable[[], None]
) -> None:
    (remote_dir / "ledger.txt").write_bytes(b"old ledger")
    sftp = client(sshd_server, remote_dir, timeout=3)
    sftp.connect()

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sftp.upload(ArmingSource(cut_next_send), "ledger.txt")
    held = time.monotonic() - started

    assert held < 3  # not held for a wait on the cut stream (the old code waited 2 x timeout)
    assert not sftp.is_connected()
    assert sorted(os.listdir(remote_dir)) == ["ledger.txt"]
    assert (remote_dir / "ledger.txt").read_bytes() == b"old ledger"
    assert stable(audit_records) == [
        connected(sshd_server),
        record(sshd_server, "upload", str(remote_dir / "ledger.txt"), 2 * CHUNK, "KeyboardInterrupt"),
        connected(sshd_server),  # the connection that removed the temporary file
    ]
