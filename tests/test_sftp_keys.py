"""SFTPClient private keys against a real OpenSSH sshd: encrypted keys, key text, and what errors may say.

Encrypted keys (OpenSSH and PEM RSA formats, made with ``ssh-keygen -N``) authenticate with
``private_key_passphrase``; a key given as text (``-----BEGIN ...``, as read from an environment variable) is
loaded from memory; a key that cannot be loaded is an error naming neither the key nor the passphrase, or,
with a password, is passed over (``key_error`` in the connect record). Exact records.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
import pytest

from activity_audit import audit_context
from activity_audit.clients.sftp import SFTPClient
from tests.support.sftp_records import sftp_record

if TYPE_CHECKING:
    from tests.support.sshd import SshdServer

pytest_plugins = ["tests.support.sshd"]  # the sshd_server fixture

VOLATILE = ("timestamp", "event_id", "stream_id", "seq", "execution_time")
PASSPHRASE = "correct-horse-PASS-42"
WRONG_PASSPHRASE = "wrong-PASS-phrase-17"
WRONG_MESSAGE = (
    "SSHException: private_key could not be decrypted with private_key_passphrase "
    "(the passphrase is wrong, or the key is corrupt)"
)

pytestmark = pytest.mark.usefixtures("as_tests_actor")


@pytest.fixture
def as_tests_actor() -> Iterator[None]:
    with audit_context(actor="system:tests"):
        yield


def keygen(path: Path, *options: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", *options, "-N", PASSPHRASE, "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture
def authorize(sshd_server: SshdServer) -> Iterator[Any]:
    """``authorize(key_path)``: the server accepts that key too, until the test ends."""
    authorized_keys = sshd_server.public_dir / "authorized_keys"
    original = authorized_keys.read_text()

    def add(key: Path) -> None:
        with authorized_keys.open("a") as out:
            out.write(key.with_name(key.name + ".pub").read_text())

    try:
        yield add
    finally:
        authorized_keys.write_text(original)


@pytest.fixture(params=["openssh-ed25519", "pem-rsa"])
def encrypted_key(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "pem-rsa":
        key = keygen(tmp_path / "id_rsa", "-t", "rsa", "-b", "2048", "-m", "PEM")
        assert key.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n")
    else:
        key = keygen(tmp_path / "id_ed25519", "-t", "ed25519")
        assert key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    return key


def client(server: SshdServer, **options: Any) -> SFTPClient:
    options.setdefault("known_hosts", server.known_hosts_path)
    return SFTPClient(server.host, server.port, server.username, service_name="bank", **options)


def record(server: SshdServer, operation: str, error: str | None = None, **details: Any) -> dict[str, Any]:
    return sftp_record(server, operation, None if operation == "connect" else ".", None, error, **details)


def records(audit_records: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in audit_records.of("audit.request")]


def all_lines(audit_records: Any) -> str:
    return "\n".join(entry.line.decode() for entry in audit_records.entries)


def key_lines(key: Path) -> list[str]:
    return [line for line in key.read_text().splitlines() if line and not line.startswith("-----")]


def assert_nothing_secret(text: str, key: Path, *secrets: str) -> None:
    for secret in (*secrets, *(line for line in key_lines(key) if len(line) >= 16)):
        assert secret not in text


def test_an_encrypted_key_file_authenticates_with_its_passphrase(
    sshd_server: SshdServer, encrypted_key: Path, authorize: Any, audit_records: Any
) -> None:
    authorize(encrypted_key)
    with client(sshd_server, private_key=encrypted_key, private_key_passphrase=PASSPHRASE) as sftp:
        sftp.list()

    fingerprint = sshd_server.host_key_fingerprint
    assert records(audit_records) == [
        record(sshd_server, "connect", host_key_fingerprint=fingerprint, auth_method="publickey"),
        record(sshd_server, "list", entries=len(list(sshd_server.root_dir.iterdir()))),
    ]
    assert_nothing_secret(all_lines(audit_records), encrypted_key, PASSPHRASE)


def test_an_encrypted_key_given_as_text_authenticates_from_memory(
    sshd_server: SshdServer, encrypted_key: Path, authorize: Any, audit_records: Any
) -> None:
    authorize(encrypted_key)
    key_text = encrypted_key.read_text()  # as os.environ["SFTP_KEY"] would hold it
    encrypted_key.unlink()  # nothing is read from a file
    with client(sshd_server, private_key=key_text, private_key_passphrase=PASSPHRASE) as sftp:
        sftp.list()

    assert [(r["operation"], r.get("auth_method"), r["error_message"]) for r in records(audit_records)] == [
        ("connect", "publickey", None),
        ("list", None, None),
    ]


def test_an_unencrypted_key_given_as_text_authenticates(sshd_server: SshdServer, audit_records: Any) -> None:
    key_text = sshd_server.private_key_path.read_text()
    with client(sshd_server, private_key=key_text) as sftp:
        sftp.list()

    assert records(audit_records)[0] == record(
        sshd_server, "connect", host_key_fingerprint=sshd_server.host_key_fingerprint, auth_method="publickey"
    )


def test_key_text_that_is_no_key_is_an_error_that_does_not_quote_it(
    sshd_server: SshdServer, audit_records: Any
) -> None:
    real = sshd_server.private_key_path.read_text().splitlines()
    broken = "\n".join([real[0], *(line[::-1] for line in real[1:-1]), real[-1]])  # base64 of nothing

    with pytest.raises(paramiko.SSHException) as raised:
        client(sshd_server, private_key=broken).connect()

    message = "private_key could not be read: it is not an OpenSSH or PEM private key"
    assert str(raised.value) == message
    assert records(audit_records) == [
        record(
            sshd_server,
            "connect",
            f"SSHException: {message}",
            host_key_fingerprint=sshd_server.host_key_fingerprint,
        )
    ]
    assert_nothing_secret(all_lines(audit_records), sshd_server.private_key_path, *broken.splitlines()[1:-1])


def test_a_wrong_passphrase_is_an_error_naming_neither_key_nor_passphrase(
    sshd_server: SshdServer, encrypted_key: Path, audit_records: Any
) -> None:
    for private_key in (encrypted_key, encrypted_key.read_text()):
        with pytest.raises(paramiko.SSHException) as raised:
            client(sshd_server, private_key=private_key, private_key_passphrase=WRONG_PASSPHRASE).connect()
        assert f"{type(raised.value).__name__}: {raised.value}" == WRONG_MESSAGE
        assert_nothing_secret(str(raised.value), encrypted_key, WRONG_PASSPHRASE, PASSPHRASE)

    failed = record(
        sshd_server, "connect", WRONG_MESSAGE, host_key_fingerprint=sshd_server.host_key_fingerprint
    )
    assert records(audit_records) == [failed, failed]
    assert_nothing_secret(all_lines(audit_records), encrypted_key, WRONG_PASSPHRASE, PASSPHRASE)


def test_an_encrypted_key_without_passphrase_asks_for_one(
    sshd_server: SshdServer, encrypted_key: Path, audit_records: Any
) -> None:
    with pytest.raises(paramiko.PasswordRequiredException) as raised:
        client(sshd_server, private_key=encrypted_key).connect()

    assert str(raised.value) == "private_key is encrypted: give private_key_passphrase to decrypt it"


def test_with_a_password_a_key_that_cannot_be_decrypted_is_passed_over(
    sshd_server: SshdServer, encrypted_key: Path, authorize: Any, audit_records: Any
) -> None:
    authorize(encrypted_key)
    with client(
        sshd_server,
        password=sshd_server.password,
        private_key=encrypted_key,
        private_key_passphrase=WRONG_PASSPHRASE,
    ) as sftp:
        sftp.list()

    assert records(audit_records)[0] == record(
        sshd_server,
        "connect",
        host_key_fingerprint=sshd_server.host_key_fingerprint,
        key_error=WRONG_MESSAGE,
        auth_method="password",
    )


def test_with_a_password_an_encrypted_key_the_server_refuses_falls_back_to_it(
    sshd_server: SshdServer, encrypted_key: Path, audit_records: Any
) -> None:
    since = sshd_server.log_mark()
    with client(
        sshd_server,
        password=sshd_server.password,
        private_key=encrypted_key,
        private_key_passphrase=PASSPHRASE,
    ) as sftp:
        sftp.list()

    assert records(audit_records)[0] == record(
        sshd_server, "connect", host_key_fingerprint=sshd_server.host_key_fingerprint, auth_method="password"
    )
    assert any("publickey" in line for line in sshd_server.auth_attempts(since))  # the key was offered first
