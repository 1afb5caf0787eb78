"""Run the child-process project (:mod:`tests.proc`) and read back what it wrote.

Every wait here has a timeout: a child that hangs fails the test instead of blocking the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests

from activity_audit.verify import VerifyReport, verify_lines

ROOT = Path(__file__).resolve().parents[2]
MARKER = "tests.proc"  # ``name`` of the records the child project emits
LOG_FILES = ("audit.log", "api.log", "app.log")
_REPORT = re.compile(r"^activity_audit: (\w+) (\S+): (\d+) time\(s\), (\d+) record\(s\) lost")


def child_env(log_dir: Path, **options: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.proc.settings",
        AUDIT_PROC_LOG_DIR=str(log_dir),
        AUDIT_PROC_OPTIONS=json.dumps(options),
        PYTHONPATH=str(ROOT),
    )
    return env


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.startswith("RESULT ")]
        assert len(lines) == 1, f"expected one RESULT line\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        return json.loads(lines[0].removeprefix("RESULT "))  # type: ignore[no-any-return]

    def reports(self, kind: str, source: str) -> list[tuple[int, int]]:
        """(occurrences, lost) of every stderr report of ``kind`` about ``source``, in order."""
        found = []
        for line in self.stderr.splitlines():
            match = _REPORT.match(line)
            if match and match[1] == kind and match[2] == source:
                found.append((int(match[3]), int(match[4])))
        return found


def start_scenario(name: str, log_dir: Path, args: dict[str, Any], **options: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.proc.scenario", name, json.dumps(args)],
        cwd=ROOT,
        env=child_env(log_dir, **options),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a timeout kills whatever it started, too
    )


def finish(process: subprocess.Popen[str], timeout: float = 50.0, stdin: str | None = None) -> Finished:
    """Wait for the child and read its output. A child (or a process it left behind holding its stdout) still
    running after ``timeout`` seconds fails the test, after its whole process group was killed."""
    try:
        stdout, stderr = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        alive = process.poll() is None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=10)
        what = (
            "child did not finish" if alive else "child ended, but a process it started kept its output open"
        )
        raise AssertionError(f"{what} in {timeout}s\nstdout:\n{stdout}\nstderr:\n{stderr}") from None
    return Finished(process.returncode, stdout, stderr)


def run_scenario(
    name: str, log_dir: Path, args: dict[str, Any], timeout: float = 50.0, **options: Any
) -> Finished:
    return finish(start_scenario(name, log_dir, args, **options), timeout)


# --- reading what was written ------------------------------------------------------------------------------


@dataclass
class Written:
    """Every line of the log files, parsed, with the per-stream proof of :mod:`activity_audit.verify`."""

    records: list[dict[str, Any]]
    report: VerifyReport
    raw: bytes
    by_stream: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def marked(self, stream_id: str | None = None) -> list[dict[str, Any]]:
        """The records the child project emitted itself (not the pipeline's own events)."""
        pool = self.records if stream_id is None else self.by_stream.get(stream_id, [])
        return [r for r in pool if r.get("name") == MARKER]

    def origins(self, stream_id: str | None = None) -> Counter[str]:
        return Counter(_origin(r) for r in self.marked(stream_id))

    def events(self, event_type: str, stream_id: str | None = None) -> list[dict[str, Any]]:
        pool = self.records if stream_id is None else self.by_stream.get(stream_id, [])
        return [r for r in pool if r.get("event_type") == event_type]


def _origin(record: dict[str, Any]) -> str:
    origin = record.get("origin") or record.get("extra_fields", {}).get("origin")
    return str(origin)


def record_key(record: dict[str, Any]) -> tuple[str, int]:
    """(origin, i) of a record the child project emitted: unique across every process of a test."""
    extra = record.get("extra_fields") or {}
    return _origin(record), int(record["i"] if "i" in record else extra["i"])


def read_written(log_dir: Path) -> Written:
    """Parse every line of every log file; a line that is not one JSON object fails the test right here."""
    raw = b"".join((log_dir / name).read_bytes() for name in LOG_FILES if (log_dir / name).exists())
    for name in LOG_FILES:
        path = log_dir / name
        if path.exists() and path.stat().st_size:
            assert path.read_bytes().endswith(b"\n"), f"{name} ends in the middle of a line"
    lines = raw.splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise AssertionError(f"line {number} is not JSON ({exc}): {line[:200]!r}") from None
    by_stream: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_stream[record["stream_id"]].append(record)
    return Written(records=records, report=verify_lines(lines), raw=raw, by_stream=dict(by_stream))


def assert_streams_complete(written: Written) -> None:
    """No seq missing or repeated in any stream, no bad line, every stream closed by PIPELINE_STOPPED."""
    report = written.report
    assert report.bad_lines == 0
    problems = {
        s.stream_id: (s.missing_ranges[:10], s.duplicates[:10])
        for s in report.streams.values()
        if s.missing_ranges or s.duplicates
    }
    assert not problems, f"streams with gaps or repeats: {problems}"
    open_streams = [s.stream_id for s in report.streams.values() if not s.stopped]
    assert not open_streams, f"streams without PIPELINE_STOPPED: {open_streams}"
    event_ids = [r["event_id"] for r in written.records]
    assert len(event_ids) == len(set(event_ids)), "an event_id was written twice"


# --- servers: gunicorn, uvicorn ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 40.0) -> Finished:
        self.process.send_signal(signum)
        return finish(self.process, timeout)


@contextmanager
def gunicorn(log_dir: Path, *extra: str, boot_records: int = 0, **options: Any) -> Iterator[Server]:
    """A real gunicorn serving :mod:`tests.proc` on a free loopback port, killed if left running."""
    port = free_port()
    env = child_env(log_dir, **options)
    env["AUDIT_PROC_BOOT_RECORDS"] = str(boot_records)
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "tests.proc.wsgi:application",
        "--bind", f"127.0.0.1:{port}",
        "--graceful-timeout", "20",
        "--timeout", "60",
        *extra,
    ]  # fmt: skip
    with _serving(command, env, port, own_session=False) as server:
        yield server


@contextmanager
def uvicorn(log_dir: Path, *extra: str, **options: Any) -> Iterator[Server]:
    """A real uvicorn serving :mod:`tests.proc` (ASGI) on a free loopback port, killed if left running."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "tests.proc.asgi:application",
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning",
        *extra,
    ]  # fmt: skip
    with _serving(command, child_env(log_dir, **options), port, own_session=True) as server:
        yield server


@contextmanager
def _serving(command: list[str], env: dict[str, str], port: int, own_session: bool) -> Iterator[Server]:
    """Run a server until it answers on ``port``; kill it (and, in its own session, its workers) if left
    running."""
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=own_session,
    )  # fmt: skip
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        _wait_ready(server)
        yield server
    finally:
        if process.poll() is None:
            if own_session:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            process.communicate(timeout=10)


def _wait_ready(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            stdout, stderr = server.process.communicate()
            raise AssertionError(f"the server exited early\n{stdout}\n{stderr}")
        try:
            if requests.get(f"{server.url}/ready", timeout=5).ok:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or a worker still loading the app on a busy machine
        time.sleep(0.1)
    raise AssertionError(f"the server did not answer within {timeout}s")


def expected_keys_by_stream(answers: list[dict[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    """Per stream, the (origin, i) of each record the ``/emit`` requests answered in ``answers`` emitted
    (half through emit_crud, half through logging)."""
    expected: dict[str, list[tuple[str, int]]] = {}
    for answer in answers:
        half = answer["count"] // 2
        keys = [(answer["origin"], i) for i in range(half)]
        keys += [(f"{answer['origin']}-log", i) for i in range(answer["count"] - half)]
        expected.setdefault(answer["stream_id"], []).extend(keys)
    return {stream: sorted(keys) for stream, keys in expected.items()}
