"""SFTPClient against a real OpenSSH sshd on loopback: records, atomic uploads, host key checks, secrets."""

from __future__ import annotations

import importlib
import io
import os
import pwd
import stat
import sys
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import paramiko
import pytest

from activity_audit import audit_context
from activity_audit.clients.sftp import (
    ChangedHostKeyError,
    RevokedHostKeyError,
    SFTPClient,
    UnknownHostKeyError,
    temporary_name,
)
from tests.support.remote_archive import wait_until
from tests.support.sftp_records import sftp_record as expected

if TYPE_CHECKING:
    from tests.support.sshd import SshdServer

pytest_plugins = ["tests.support.sshd"]  # the sshd_server and rsa_sshd_server fixtures

VOLATILE = ("timestamp", "event_id", "stream_id", "seq", "execution_time")
CHUNK = 32768  # paramiko's putfo reads the source in pieces of this size

pytestmark = pytest.mark.usefixtures("as_tests_actor")


@pytest.fixture
def as_tests_actor() -> Any:
    with audit_context(actor="system:tests"):
        yield


@pytest.fixture
def remote_dir(sshd_server: SshdServer) -> Path:
    """A fresh directory on the server side, writable by the SFTP user."""
    path = sshd_server.root_dir / uuid.uuid4().hex[:12]  # no run of 13 digits: never taken for a card number
    path.mkdir()
    user = pwd.getpwnam(sshd_server.username)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def client(server: SshdServer, base_dir: Path | str = "", **options: Any) -> SFTPClient:
    options.setdefault("password", server.password)
    options.setdefault("known_hosts", server.known_hosts_path)
    return SFTPClient(
        server.host, server.port, server.username, service_name="bank", base_dir=str(base_dir), **options
    )


def stable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for record in records:
        assert isinstance(record["execution_time"], float) and record["execution_time"] >= 0
    return [{k: v for k, v in record.items() if k not in VOLATILE} for record in records]


def connected(server: SshdServer, auth_method: str = "password") -> dict[str, Any]:
    return expected(
        server,
        "connect",
        None,
        None,
        host_key_fingerprint=server.host_key_fingerprint,
        auth_method=auth_method,
    )


def connect_failed(server: SshdServer, error_message: str) -> dict[str, Any]:
    """A connection that failed once the server had shown its host key; no ``auth`` succeeded."""
    return expected(
        server, "connect", None, None, error_message, host_key_fingerprint=server.host_key_fingerprint
    )


def all_lines(audit_records: Any) -> bytes:
    return b"\n".join(entry.line for entry in audit_records.entries)


def wait_for_disconnect(server: SshdServer, since: int) -> str:
    """The sshd log since ``since``, once sshd has logged the end of the connection made after it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = server.read_log(since)
        if "Connection closed by" in log or "Connection reset by" in log or "Disconnected from" in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"sshd never logged the end of the connection:\n{server.read_log(since)}")


def test_upload_download_list_remove_are_each_recorded(
    sshd_server: SshdServer, remote_dir: Path, tmp_path: Path, audit_records: Any
) -> None:
    source = tmp_path / "report.csv"
    source.write_bytes(b"id,amount\n1,10\n" * 5000)  # 75_000 bytes: several SFTP writes
    size = source.stat().st_size
    target = str(remote_dir / "report.csv")

    with client(sshd_server, base_dir=remote_dir) as sftp:
        assert sftp.upload(source, "report.csv") == size
        assert (remote_dir / "report.csv").read_bytes() == source.read_bytes()
        assert sftp.download(PurePosixPath("report.csv"), tmp_path / "copy.csv") == size
        assert sftp.list() == ["report.csv"]
        sftp.remove("report.csv")
    assert (tmp_path / "copy.csv").read_bytes() == source.read_bytes()
    assert not (remote_dir / "report.csv").exists()

    assert stable(audit_records.of("audit.request")) == [
        connected(sshd_server),
        expected(sshd_server, "upload", target, size),
        expected(sshd_server, "download", target, size),
        expected(sshd_server, "list", str(remote_dir), None, entries=1),
        expected(sshd_server, "remove", target, None),
    ]


def test_key_authentication_from_a_path_and_from_a_loaded_key(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any
) -> None:
    loaded = paramiko.Ed25519Key.from_private_key_file(str(sshd_server.private_key_path))
    for key in (sshd_server.private_key_path, loaded):
        with client(sshd_server, base_dir=remote_dir, password=None, private_key=key) as sftp:
            sftp.upload(io.BytesIO(b"signed"), "by-key.txt")

    assert (remote_dir / "by-key.txt").read_bytes() == b"signed"
    target = str(remote_dir / "by-key.txt")
    assert (
        stable(audit_records.of("audit.request"))
        == [
            connected(sshd_server, auth_method="publickey"),
            expected(sshd_server, "upload", target, 6),
        ]
        * 2
    )


def test_secrets_never_reach_a_record(sshd_server: SshdServer, remote_dir: Path, audit_records: Any) -> None:
    key_text = sshd_server.private_key_path.read_text()
    key_lines = [line for line in key_text.splitlines() if line and not line.startswith("-----")]
    with client(sshd_server, base_dir=remote_dir, private_key=sshd_server.private_key_path) as sftp:
        sftp.list()
        assert sshd_server.password not in repr(sftp)
    with pytest.raises(paramiko.AuthenticationException):
        client(sshd_server, password="wrong-" + sshd_server.password).connect()

    lines = all_lines(audit_records)
    assert [(r["operation"], r["error_message"]) for r in audit_records.of("audit.request")] == [
        ("connect", None),
        ("list", None),
        ("connect", "AuthenticationException: Authentication failed."),
    ]
    assert sshd_server.password.encode() not in lines
    assert not [line for line in key_lines if line.encode() in lines]


def test_wrong_password_is_recorded_and_raised(sshd_server: SshdServer, audit_records: Any) -> None:
    mark = sshd_server.log_mark()
    with pytest.raises(paramiko.AuthenticationException):
        client(sshd_server, password="not-the-password").connect()

    assert stable(audit_records.of("audit.request")) == [
        connect_failed(sshd_server, "AuthenticationException: Authentication failed.")
    ]
    wait_for_disconnect(sshd_server, mark)
    # The control for the host key tests below: a real attempt does show in the log.
    assert any("Failed password" in line for line in sshd_server.auth_attempts(mark))


class FailingSource(io.RawIOBase):
    """Gives ``chunks`` pieces of data, then fails like a disk or a network share would.

    Before failing it looks at the server side, so the test sees what a reader of the directory saw
    in the middle of the upload.
    """

    def __init__(self, chunks: int, directory: Path, final_name: str) -> None:
        self.chunks = chunks
        self.directory = directory
        self.final_name = final_name
        self.seen_midway: tuple[list[str], bytes] | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.chunks == 0:
            self.seen_midway = (
                sorted(os.listdir(self.directory)),
                (self.directory / self.final_name).read_bytes(),
            )
            raise OSError("source volume went away")
        self.chunks -= 1
        return b"n" * CHUNK


def test_failed_upload_leaves_the_old_file_and_no_temporary_file(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any
) -> None:
    (remote_dir / "ledger.txt").write_bytes(b"old ledger")
    source = FailingSource(3, remote_dir, "ledger.txt")

    with (
        client(sshd_server, base_dir=remote_dir) as sftp,
        pytest.raises(OSError, match="source volume went away"),
    ):
        sftp.upload(source, "ledger.txt")

    assert source.seen_midway is not None
    names_midway, final_midway = source.seen_midway
    assert final_midway == b"old ledger"
    assert len(names_midway) == 2 and names_midway[1] == "ledger.txt"
    assert names_midway[0].startswith(".ledger.txt.") and names_midway[0].endswith(".part")
    assert sorted(os.listdir(remote_dir)) == ["ledger.txt"]
    assert (remote_dir / "ledger.txt").read_bytes() == b"old ledger"
    assert stable(audit_records.of("audit.request")) == [
        connected(sshd_server),
        expected(
            sshd_server,
            "upload",
            str(remote_dir / "ledger.txt"),
            3 * CHUNK,
            "OSError: source volume went away",
        ),
    ]


def test_successful_upload_replaces_the_file_whole(sshd_server: SshdServer, remote_dir: Path) -> None:
    (remote_dir / "ledger.txt").write_bytes(b"old ledger")

    with client(sshd_server, base_dir=remote_dir) as sftp:
        sftp.upload(io.BytesIO(b"new ledger, longer than the old one"), "ledger.txt")

    assert os.listdir(remote_dir) == ["ledger.txt"]
    assert (remote_dir / "ledger.txt").read_bytes() == b"new ledger, longer than the old one"


def test_failed_download_leaves_no_local_file(
    sshd_server: SshdServer, remote_dir: Path, tmp_path: Path, audit_records: Any
) -> None:
    with client(sshd_server, base_dir=remote_dir) as sftp, pytest.raises(FileNotFoundError):
        sftp.download("missing.csv", tmp_path / "missing.csv")

    assert os.listdir(tmp_path) == []
    assert stable(audit_records.of("audit.request"))[1] == expected(
        sshd_server,
        "download",
        str(remote_dir / "missing.csv"),
        0,
        "FileNotFoundError: [Errno 2] No such file",
    )


def test_unknown_host_key_is_refused_before_authentication(
    sshd_server: SshdServer, remote_dir: Path, tmp_path: Path, audit_records: Any
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    mark = sshd_server.log_mark()
    sftp = client(sshd_server, base_dir=remote_dir, known_hosts=empty)

    with pytest.raises(UnknownHostKeyError) as refused:
        sftp.upload(io.BytesIO(b"payload"), "never.txt")

    name = f"[127.0.0.1]:{sshd_server.port}"
    offered = sshd_server.host_key_fingerprint
    assert str(refused.value).startswith(
        f"SFTP host {name} is not in {empty}: it offered the ssh-ed25519 key {offered}."
    )
    assert str(refused.value).endswith("Nothing was sent to the server.")
    assert (refused.value.host, refused.value.fingerprint) == (name, sshd_server.host_key_fingerprint)
    wait_for_disconnect(sshd_server, mark)
    assert sshd_server.auth_attempts(mark) == []
    assert os.listdir(remote_dir) == []
    assert stable(audit_records.of("audit.request")) == [
        connect_failed(sshd_server, f"UnknownHostKeyError: {refused.value}"),
        expected(
            sshd_server,
            "upload",
            str(remote_dir / "never.txt"),
            None,
            f"UnknownHostKeyError: {refused.value}",
        ),
    ]


def test_changed_host_key_is_refused_before_authentication(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any
) -> None:
    mark = sshd_server.log_mark()
    sftp = client(
        sshd_server,
        base_dir=remote_dir,
        known_hosts=sshd_server.wrong_known_hosts_path,
        private_key=sshd_server.private_key_path,
    )

    with pytest.raises(ChangedHostKeyError) as refused:
        sftp.connect()

    message = str(refused.value)
    assert (
        f"SFTP host key of [127.0.0.1]:{sshd_server.port} does not match {sshd_server.wrong_known_hosts_path}"
        in message
    )
    assert f"the server offered the ssh-ed25519 key {sshd_server.host_key_fingerprint}" in message
    wrong = paramiko.HostKeys(str(sshd_server.wrong_known_hosts_path)).lookup(
        f"[127.0.0.1]:{sshd_server.port}"
    )
    assert wrong is not None
    from activity_audit.clients.sftp import key_fingerprint

    assert f"known_hosts has ssh-ed25519 {key_fingerprint(wrong['ssh-ed25519'])}" in message
    wait_for_disconnect(sshd_server, mark)
    assert sshd_server.auth_attempts(mark) == []
    assert [r["error_message"] for r in audit_records.of("audit.request")] == [
        f"ChangedHostKeyError: {message}"
    ]


def host_line(known_hosts: Path) -> str:
    """The one line of a known_hosts file the test server wrote."""
    [line] = known_hosts.read_text().splitlines()
    return line


def key_of(known_hosts: Path) -> str:
    """``<type> <base64>`` of that line."""
    return host_line(known_hosts).split(" ", 1)[1]


@pytest.mark.parametrize(
    "lines",
    [
        # a key rotation: the old key is still listed, first
        lambda server: [host_line(server.wrong_known_hosts_path), host_line(server.known_hosts_path)],
        # markers paramiko cannot read, a line that is not a key, a revocation of another key
        lambda server: [
            f"@cert-authority *.corp.example {key_of(server.wrong_known_hosts_path)}",
            f"@revoked * {key_of(server.wrong_known_hosts_path)}",
            "@future-marker somehost ssh-ed25519 AAAA",
            f"[127.0.0.1]:{server.port} ssh-ed25519 not-base64!",
            "# a comment",
            host_line(server.known_hosts_path),
        ],
        # a hashed name, and a wildcard pattern after a negated one that does not apply
        lambda server: [
            f"{paramiko.HostKeys.hash_host(f'[127.0.0.1]:{server.port}')} {key_of(server.known_hosts_path)}",
        ],
        lambda server: [f"!other.example,[127.0.0.?]:{server.port} {key_of(server.known_hosts_path)}"],
    ],
    ids=["second-line-matches", "markers-and-bad-lines", "hashed", "wildcard"],
)
def test_the_host_is_accepted_when_any_known_hosts_line_for_it_matches(
    sshd_server: SshdServer, remote_dir: Path, tmp_path: Path, audit_records: Any, lines: Any
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("\n".join(lines(sshd_server)) + "\n")

    with client(sshd_server, base_dir=remote_dir, known_hosts=known_hosts) as sftp:
        assert sftp.list() == []

    assert stable(audit_records.of("audit.request")) == [
        connected(sshd_server),
        expected(sshd_server, "list", str(remote_dir), None, entries=0),
    ]


def test_a_negated_pattern_keeps_a_line_from_vouching_for_the_host(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"*,![127.0.0.1]:{sshd_server.port} {key_of(sshd_server.known_hosts_path)}\n")
    with pytest.raises(UnknownHostKeyError):
        client(sshd_server, known_hosts=known_hosts).connect()


def test_a_revoked_key_is_refused_even_when_another_line_lists_it(
    sshd_server: SshdServer, tmp_path: Path, audit_records: Any
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"{host_line(sshd_server.known_hosts_path)}\n@revoked * {key_of(sshd_server.known_hosts_path)}\n"
    )
    mark = sshd_server.log_mark()

    with pytest.raises(RevokedHostKeyError) as refused:
        client(sshd_server, known_hosts=known_hosts).connect()

    name = f"[127.0.0.1]:{sshd_server.port}"
    assert str(refused.value) == (
        f"SFTP host key of {name} is revoked in {known_hosts}: the server offered the ssh-ed25519 key "
        f"{sshd_server.host_key_fingerprint}, which an @revoked line names. Nothing was sent to the server."
    )
    wait_for_disconnect(sshd_server, mark)
    assert sshd_server.auth_attempts(mark) == []
    assert stable(audit_records.of("audit.request")) == [
        connect_failed(sshd_server, f"RevokedHostKeyError: {refused.value}")
    ]


def test_a_host_known_by_its_rsa_key_is_accepted(
    rsa_sshd_server: SshdServer, tmp_path: Path, audit_records: Any
) -> None:
    known_hosts = tmp_path / "known_hosts"  # ssh-keyscan's listing: an ed25519 line that is not this server's
    known_hosts.write_text(
        f"{host_line(rsa_sshd_server.wrong_known_hosts_path)}\n{host_line(rsa_sshd_server.known_hosts_path)}\n"
    )
    assert [line.split()[1] for line in known_hosts.read_text().splitlines()] == ["ssh-ed25519", "ssh-rsa"]

    with client(rsa_sshd_server, known_hosts=known_hosts) as sftp:
        sftp.list()

    [connect, _list] = stable(audit_records.of("audit.request"))
    assert connect == connected(rsa_sshd_server)


def test_the_key_is_tried_then_the_password(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any
) -> None:
    unknown_key = paramiko.ECDSAKey.generate()  # not in the server's authorized_keys
    mark = sshd_server.log_mark()

    with client(sshd_server, base_dir=remote_dir, private_key=unknown_key) as sftp:
        sftp.upload(io.BytesIO(b"by password"), "fallback.txt")

    assert (remote_dir / "fallback.txt").read_bytes() == b"by password"
    log = sshd_server.read_log(mark)
    assert "Failed publickey" in log and "Accepted password" in log
    assert stable(audit_records.of("audit.request"))[0] == connected(sshd_server, auth_method="password")


def test_download_to_a_path_gets_the_mode_open_would_give_it(
    sshd_server: SshdServer, remote_dir: Path, tmp_path: Path
) -> None:
    (remote_dir / "data.txt").write_bytes(b"new content")
    existing = tmp_path / "existing.txt"
    existing.write_bytes(b"old")
    existing.chmod(0o604)
    previous = os.umask(0o027)
    try:
        with client(sshd_server, base_dir=remote_dir) as sftp:
            sftp.download("data.txt", existing)
            sftp.download("data.txt", tmp_path / "new.txt")
    finally:
        os.umask(previous)

    assert existing.read_bytes() == (tmp_path / "new.txt").read_bytes() == b"new content"
    assert stat.S_IMODE(existing.stat().st_mode) == 0o604  # replacing a file keeps its mode
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640  # 0o666 less the umask
    assert sorted(os.listdir(tmp_path)) == ["existing.txt", "new.txt"]


def test_upload_under_a_long_but_legal_name(
    sshd_server: SshdServer, remote_dir: Path, audit_records: Any
) -> None:
    names = ["n" * 232 + ".csv", "n" * 240 + ".csv", "n" * 251 + ".csv", "é" * 125 + ".csv"]  # 236-255 bytes
    with client(sshd_server, base_dir=remote_dir) as sftp:
        for number, name in enumerate(names):
            assert sftp.upload(io.BytesIO(b"%d" % number), name) == 1

    assert sorted(os.listdir(remote_dir)) == sorted(names)  # no temporary name left behind
    assert [(remote_dir / name).read_bytes() for name in names] == [b"0", b"1", b"2", b"3"]
    assert [r["error_message"] for r in audit_records.of("audit.request")] == [None] * 5


@pytest.mark.parametrize("name", ["a.csv", "n" * 236, "n" * 300, "é" * 200, "日本" * 60 + ".csv"])
def test_temporary_names_fit_in_a_file_name(name: str) -> None:
    temporary = temporary_name(name)
    assert len(temporary.encode()) <= 255
    assert temporary.startswith(".") and temporary.endswith(".part")
    kept = temporary[1:].rsplit(".", 2)[0]
    assert name.startswith(kept) and (kept == name or len(name.encode()) > 236)


def test_reconnects_after_an_outage(sshd_server: SshdServer, remote_dir: Path, audit_records: Any) -> None:
    sftp = client(sshd_server, base_dir=remote_dir)
    sftp.upload(io.BytesIO(b"one"), "one.txt")
    sshd_server.stop()
    try:
        wait_until(lambda: not sftp.is_connected(), 10, "the client to see the connection drop")
        with pytest.raises(ConnectionRefusedError):
            sftp.upload(io.BytesIO(b"two"), "two.txt")
    finally:
        sshd_server.start()
    sftp.upload(io.BytesIO(b"three"), "three.txt")
    sftp.close()

    assert sorted(os.listdir(remote_dir)) == ["one.txt", "three.txt"]
    records = stable(audit_records.of("audit.request"))
    outcomes = [(r["operation"], r["remote_path"], r["error_message"] is None) for r in records]
    assert outcomes == [
        ("connect", None, True),
        ("upload", str(remote_dir / "one.txt"), True),
        ("connect", None, False),
        ("upload", str(remote_dir / "two.txt"), False),
        ("connect", None, True),
        ("upload", str(remote_dir / "three.txt"), True),
    ]
    assert records[2]["error_message"].startswith("ConnectionRefusedError: ")


@pytest.mark.parametrize(
    ("base_dir", "path", "joined"),
    [
        ("", "report.csv", "report.csv"),
        ("/inbox", "report.csv", "/inbox/report.csv"),
        ("/inbox/", "2026/11/report.csv", "/inbox/2026/11/report.csv"),
        ("inbox", "report.csv", "inbox/report.csv"),
        ("/inbox", "/archive/report.csv", "/archive/report.csv"),
        ("/inbox", PurePosixPath("a b/ré.csv"), "/inbox/a b/ré.csv"),
    ],
)
def test_remote_paths_are_joined_with_posix_rules(base_dir: str, path: Any, joined: str) -> None:
    sftp = SFTPClient("127.0.0.1", 22, "someone", password="x", known_hosts="/nonexistent", base_dir=base_dir)
    assert sftp.remote_path(path) == joined


def test_invalid_arguments_fail_before_connecting(sshd_server: SshdServer, audit_records: Any) -> None:
    with pytest.raises(ValueError, match="needs a password or a private_key"):
        SFTPClient("127.0.0.1", 22, "someone")
    sftp = client(sshd_server)
    with pytest.raises(ValueError, match="empty remote path"):
        sftp.remove("")
    with pytest.raises(ValueError, match="names a directory"):
        sftp.upload(io.BytesIO(b""), "inbox/")
    assert audit_records.of("audit.request") == []


def test_public_name_imports_lazily() -> None:
    from activity_audit import SFTPClient as LazySFTPClient

    assert LazySFTPClient is SFTPClient


def test_missing_paramiko_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paramiko", None)
    monkeypatch.delitem(sys.modules, "activity_audit.clients.sftp")

    with pytest.raises(ImportError, match=r'pip install "activity-audit\[sftp\]"'):
        importlib.import_module("activity_audit.clients.sftp")
