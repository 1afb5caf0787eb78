"""The file sink used by two threads at once: a record delivered on its own thread after shutdown (see
``Pipeline._deliver_late``) while ``audit_shutdown`` closes the files."""

from __future__ import annotations

import fcntl
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from activity_audit.conf import build
from activity_audit.plugins import file_sink as file_sink_module
from activity_audit.plugins.file_sink import FileSink
from activity_audit.records import CHANNEL_AUDIT, Entry
from tests.conftest import read_lines

PROJECT = SimpleNamespace(BASE_DIR="/srv/shop", SETTINGS_MODULE="shop.settings")


def test_closing_waits_for_a_write_under_way_so_the_record_never_lands_in_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = FileSink()
    sink.configure(build({"LOG_DIR": str(tmp_path / "logs")}, PROJECT))
    inside_write, go_on = threading.Event(), threading.Event()
    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:  # holds the writer right after it picked its descriptor
        if threading.current_thread().name == "late-writer" and operation == fcntl.LOCK_EX:
            inside_write.set()
            go_on.wait(10)
        real_flock(fd, operation)

    monkeypatch.setattr(file_sink_module.fcntl, "flock", flock)
    line = json.dumps({"message": "late record"}).encode()
    writer = threading.Thread(target=sink.write, args=([Entry(CHANNEL_AUDIT, {}, line)],), name="late-writer")
    writer.start()
    assert inside_write.wait(10)
    closer = threading.Thread(target=sink.close)
    closer.start()
    closer.join(0.3)
    closing_waited = closer.is_alive()
    others = [open(tmp_path / f"other{number}.txt", "wb") for number in range(3)]  # noqa: SIM115
    go_on.set()
    writer.join(10)
    closer.join(10)
    for other in others:
        other.close()

    assert closing_waited
    assert [(tmp_path / f"other{number}.txt").read_bytes() for number in range(3)] == [b"", b"", b""]
    assert read_lines(tmp_path / "logs" / "audit.log") == [{"message": "late record"}]
