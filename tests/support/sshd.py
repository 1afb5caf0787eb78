"""A real OpenSSH ``sshd`` on a free loopback port, for SFTP tests.

``start_sshd(workdir)`` starts Debian's ``/usr/sbin/sshd`` in the foreground with a configuration of its own:
a fresh ed25519 host key, ``internal-sftp`` as the only thing a session can run, password and public key
authentication for one dedicated system user (``audit-sftp-test``), no PAM, ``StrictModes no``, and the pid
file, configuration and log (``LogLevel DEBUG1``, so every authentication attempt is visible) in ``workdir``.

The user is created once with ``useradd`` (no login shell, no privileges). Its password is random, made on
first use and kept in a root-only file, so that concurrent test runs on the same machine agree on it.
``sshd`` reads ``authorized_keys`` and serves files as that user, so those live in a world-traversable
directory of their own (``/tmp/audit-sshd-*``), removed by :meth:`SshdServer.close`.

Use the session-scoped ``sshd_server`` fixture from a test module with::

    pytest_plugins = ["tests.support.sshd"]

(or import ``sshd_server`` into the module), or call :func:`start_sshd` for a server of your own.

When ``sshd`` cannot run, the fixture errors (it never skips): these tests exist to talk to the real thing.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
TEST_USER = "audit-sftp-test"
HOST = "127.0.0.1"

_STATE_DIR = Path("/var/lib/activity-audit-tests")
_PASSWORD_FILE = _STATE_DIR / "sftp-test-password"
_PRIVSEP_DIR = Path("/run/sshd")
_START_TIMEOUT = 15.0


class SshdError(RuntimeError):
    """sshd could not be prepared or started; the message carries its log."""


@dataclass
class SshdServer:
    """A running (or stopped) sshd. ``stop()`` and ``start()`` simulate an outage on the same port."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    private_key_path: Path
    known_hosts_path: Path
    wrong_known_hosts_path: Path
    host_key_fingerprint: str
    root_dir: Path
    workdir: Path
    config_path: Path
    log_path: Path
    pid_path: Path
    public_dir: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start sshd (again) on ``self.port``; returns once it listens, raises :class:`SshdError` if not."""
        if self.is_running():
            return
        self.pid_path.unlink(missing_ok=True)
        process = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.config_path), "-E", str(self.log_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise SshdError(
                    f"sshd exited with status {process.returncode} on port {self.port}:\n{stderr}\n"
                    f"{self.read_log()[-4000:]}"
                )
            # sshd writes its pid file only after it has bound its listening socket.
            if _read_pid(self.pid_path) == process.pid:
                self._process = process
                return
            time.sleep(0.02)
        _terminate(process)
        raise SshdError(f"sshd did not start listening on port {self.port}:\n{self.read_log()[-4000:]}")

    def stop(self) -> None:
        """Terminate sshd and every session it holds: new connections are refused, open ones drop."""
        process, self._process = self._process, None
        if process is None:
            return
        for pid in _descendants(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        _terminate(process)

    def close(self) -> None:
        """Stop and remove the server-side directory (``root_dir`` and ``authorized_keys``)."""
        self.stop()
        shutil.rmtree(self.public_dir, ignore_errors=True)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_mark(self) -> int:
        """The current size of the log; pass it to :meth:`read_log` to see only what happened since."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def read_log(self, since: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def auth_attempts(self, since: int = 0) -> list[str]:
        """Log lines showing a client asking to authenticate (any method, even ``none``)."""
        markers = ("userauth-request", "Accepted ", "Failed ", "Invalid user")
        return [line for line in self.read_log(since).splitlines() if any(m in line for m in markers)]


def start_sshd(workdir: Path) -> SshdServer:
    """Prepare a configuration in ``workdir`` and start sshd on a free loopback port."""
    _require_tools()
    workdir.mkdir(parents=True, exist_ok=True)
    password = _ensure_test_user()
    user = pwd.getpwnam(TEST_USER)

    host_key = workdir / "ssh_host_ed25519_key"
    other_host_key = workdir / "other_host_ed25519_key"
    client_key = workdir / "client_ed25519_key"
    for key in (host_key, other_host_key, client_key):
        _keygen(key)

    public_dir = Path(tempfile.mkdtemp(prefix="audit-sshd-"))
    public_dir.chmod(0o755)
    root_dir = public_dir / "sftp-root"
    root_dir.mkdir()
    os.chown(root_dir, user.pw_uid, user.pw_gid)
    root_dir.chmod(0o755)
    authorized_keys = public_dir / "authorized_keys"
    authorized_keys.write_text(_public_line(client_key) + "\n")
    os.chown(authorized_keys, user.pw_uid, user.pw_gid)
    authorized_keys.chmod(0o600)

    last_error: SshdError | None = None
    for _attempt in range(5):
        port = _free_port()
        server = SshdServer(
            host=HOST,
            port=port,
            username=TEST_USER,
            password=password,
            private_key_path=client_key,
            known_hosts_path=workdir / "known_hosts",
            wrong_known_hosts_path=workdir / "wrong_known_hosts",
            host_key_fingerprint=_fingerprint(host_key),
            root_dir=root_dir,
            workdir=workdir,
            config_path=workdir / "sshd_config",
            log_path=workdir / "sshd.log",
            pid_path=workdir / "sshd.pid",
            public_dir=public_dir,
        )
        server.config_path.write_text(_config(server, host_key, authorized_keys))
        server.known_hosts_path.write_text(f"[{HOST}]:{port} {_public_line(host_key)}\n")
        server.wrong_known_hosts_path.write_text(f"[{HOST}]:{port} {_public_line(other_host_key)}\n")
        try:
            server.start()
        except SshdError as error:
            last_error = error
            if "Address already in use" in str(error):
                continue  # another process took the port between probing and binding
            break
        return server
    shutil.rmtree(public_dir, ignore_errors=True)
    raise last_error if last_error else SshdError("sshd did not start")


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """A running sshd for the whole session. Tests that stop it must start it again."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.close()


def start_rsa_sshd(workdir: Path) -> SshdServer:
    """Like :func:`start_sshd`, but the server's only host key is RSA; ``known_hosts_path`` lists it as
    ``ssh-rsa`` (as ``ssh-keyscan`` writes it), and ``wrong_known_hosts_path`` still holds an ed25519 key."""
    server = start_sshd(workdir)
    server.stop()
    rsa_key = workdir / "ssh_host_rsa_key"
    for existing in (rsa_key, rsa_key.with_name(rsa_key.name + ".pub")):
        existing.unlink(missing_ok=True)
    _run(SSH_KEYGEN, "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", rsa_key.name, "-f", str(rsa_key))
    lines = server.config_path.read_text().splitlines()
    server.config_path.write_text(
        "\n".join(f"HostKey {rsa_key}" if line.startswith("HostKey ") else line for line in lines) + "\n"
    )
    server.known_hosts_path.write_text(f"[{HOST}]:{server.port} {_public_line(rsa_key)}\n")
    server.host_key_fingerprint = _fingerprint(rsa_key)
    server.start()
    return server


@pytest.fixture(scope="session")
def rsa_sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """A running sshd whose host key is RSA, for the whole session (see :func:`start_rsa_sshd`)."""
    server = start_rsa_sshd(tmp_path_factory.mktemp("rsa-sshd"))
    try:
        yield server
    finally:
        server.close()


def _config(server: SshdServer, host_key: Path, authorized_keys: Path) -> str:
    return "\n".join(
        [
            f"Port {server.port}",
            f"ListenAddress {HOST}",
            f"HostKey {host_key}",
            f"PidFile {server.pid_path}",
            f"AuthorizedKeysFile {authorized_keys}",
            f"AllowUsers {TEST_USER}",
            "AddressFamily inet",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin no",
            "PasswordAuthentication yes",
            "PermitEmptyPasswords no",
            "PubkeyAuthentication yes",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "AllowStreamLocalForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
            "PermitUserRC no",
            "UseDNS no",
            "MaxStartups 50",
            "MaxSessions 50",
            "LogLevel DEBUG1",
            "Subsystem sftp internal-sftp",
            f"ForceCommand internal-sftp -d {server.root_dir}",
            "",
        ]
    )


def _require_tools() -> None:
    for tool in (SSHD, SSH_KEYGEN, "/usr/sbin/useradd", "/usr/sbin/chpasswd"):
        if not os.access(tool, os.X_OK):
            raise SshdError(f"{tool} is missing: apt-get install openssh-server passwd")
    if os.geteuid() != 0:
        raise SshdError("sshd must start as root to switch to the test user; run the SFTP tests as root")
    _PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)


def _ensure_test_user() -> str:
    """Create ``audit-sftp-test`` if missing and return its password (the same for every run)."""
    _STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    with (_STATE_DIR / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            _run(
                "useradd",
                "--system",
                "--shell",
                "/usr/sbin/nologin",
                "--home-dir",
                f"/var/lib/{TEST_USER}",
                "--create-home",
                "--comment",
                "activity_audit SFTP tests",
                TEST_USER,
            )
        if not _PASSWORD_FILE.exists():
            fd = os.open(_PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24))
        password = _PASSWORD_FILE.read_text().strip()
        # Idempotent: the same value every run, so concurrent runs never lock each other out.
        _run("chpasswd", stdin=f"{TEST_USER}:{password}\n")
    return password


def _keygen(path: Path) -> None:
    for existing in (path, path.with_name(path.name + ".pub")):
        existing.unlink(missing_ok=True)
    _run(SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path))


def _public_line(private_key: Path) -> str:
    """``ssh-ed25519 AAAA...`` (type and key, no comment)."""
    key_type, blob = private_key.with_name(private_key.name + ".pub").read_text().split()[:2]
    return f"{key_type} {blob}"


def _fingerprint(private_key: Path) -> str:
    blob = base64.b64decode(_public_line(private_key).split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (sshd's per-connection monitors and their children), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces; the parent pid is two fields after it.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    if process.stderr:
        process.stderr.close()


def _run(*command: str, stdin: str | None = None) -> None:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SshdError(f"{command[0]} failed ({result.returncode}): {result.stderr.strip()}")
