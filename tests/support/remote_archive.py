"""End-to-end counting for remote sinks: emit marked records, read the archive back, count every event_id.

Shared by the tests of the contrib sinks (S3, SFTP). ``run_child`` runs :mod:`tests.support.remote_sink_child`
in a subprocess, so a test can SIGKILL a real process that holds a spool.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from activity_audit.emit import emit_crud
from activity_audit.logconfig import PipelineHandler
from activity_audit.records import new_record

REPO_ROOT = Path(__file__).resolve().parents[2]
MARKER_LOGGER = "audit.crud"


def audit_settings(log_dir: Path, **plugins: dict[str, Any]) -> dict[str, Any]:
    """``tests.settings``' ACTIVITY_AUDIT with its own ``LOG_DIR`` and the given plugins switched on."""
    from django.conf import settings

    return {**settings.ACTIVITY_AUDIT, "LOG_DIR": str(log_dir), "PLUGINS": plugins}


def pipeline_events(log_dir: Path, event_type: str) -> list[dict[str, Any]]:
    """The pipeline's own records of ``event_type`` (``UPLOAD_FAILED``, ``SINK_FAILED``) in ``audit.log``."""
    path = log_dir / "audit.log"
    lines = path.read_bytes().splitlines() if path.exists() else []
    return [record for record in map(orjson.loads, lines) if record.get("event_type") == event_type]


@contextlib.contextmanager
def every_log_record_into_the_trail() -> Iterator[None]:
    """For the block, the README's ``LOGGING`` example at DEBUG: every logger's records go to the pipeline
    (``app.log``), those of the sinks' libraries too unless the package keeps them out."""
    handler = PipelineHandler(level=logging.DEBUG)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def emit_marked(count: int, marker: str) -> list[str]:
    """Emit ``count`` CRUD records tagged ``marker``; return their event_ids in order.

    The worker stamps each record's ``event_id`` before any sink sees it: this waits (30 s at most) until
    it has, whatever the sinks then do with the records.
    """
    records = []
    for number in range(count):
        record = new_record("AUDIT", MARKER_LOGGER, "remote sink test", marker=marker, number=number)
        assert emit_crud(record), "record not queued"
        records.append(record)
    deadline = time.monotonic() + 30
    while "event_id" not in records[-1] and time.monotonic() < deadline:
        time.sleep(0.01)
    return [record["event_id"] for record in records]


def records_of_objects(objects: Iterable[bytes]) -> list[dict[str, Any]]:
    """Every record of gzip JSON-lines objects."""
    return [orjson.loads(line) for data in objects for line in gzip.decompress(data).splitlines()]


@dataclass
class Count:
    """How often each wanted event_id was found."""

    missing: list[str]
    duplicated: dict[str, int]
    found: int

    @property
    def complete(self) -> bool:
        return not self.missing


def count_ids(records: Iterable[dict[str, Any]], wanted: Iterable[str]) -> Count:
    wanted = list(wanted)
    seen = Counter(record.get("event_id") for record in records)
    return Count(
        missing=[event_id for event_id in wanted if not seen[event_id]],
        duplicated={event_id: seen[event_id] for event_id in wanted if seen[event_id] > 1},
        found=sum(1 for event_id in wanted if seen[event_id]),
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Child:
    """A Django process that emitted records into a spool; ``ids`` are its records' event_ids."""

    process: subprocess.Popen[bytes]
    ids: list[str]


def start_child(plugins: dict[str, Any], log_dir: Path, count: int, marker: str, mode: str) -> Child:
    """Start the child; return once its ``count`` records are fsynced in the spool.

    ``mode`` ``"hold"``: the child then sleeps (kill it); ``"drain"``: it waits until its spool is empty
    and exits normally.
    """
    ids_file = log_dir / f"ids-{marker}.json"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "AUDIT_TEST_LOG_DIR": str(log_dir),
        "AUDIT_TEST_PLUGINS": json.dumps(plugins),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "tests.support.remote_sink_child",
        str(count),
        marker,
        mode,
        str(ids_file),
    ]
    process = subprocess.Popen(
        command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != b"SPOOLED":
        process.kill()
        _out, err = process.communicate(timeout=10)
        raise AssertionError(f"child failed before spooling: {line!r}\n{err.decode(errors='replace')}")
    return Child(process=process, ids=json.loads(ids_file.read_text()))


def finish_child(child: Child, timeout: float = 60.0) -> str:
    """Wait for a ``drain`` child to exit 0; return its stderr."""
    _out, err = child.process.communicate(timeout=timeout)
    text = err.decode(errors="replace")
    assert child.process.returncode == 0, f"child exited with {child.process.returncode}:\n{text}"
    return text
