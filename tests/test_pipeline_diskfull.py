"""Disk full on the file sink: a clear alarm, the loss counted to the record, no torn line, and writing
resumes when space returns (RELIABILITY.md E14: with the stdlib, errors reported differ from records lost).

The full disk is a real 1 MiB tmpfs (needs root and mount rights). Where mounting is not allowed the same
checks run with RLIMIT_FSIZE, which fails writes with EFBIG instead of ENOSPC.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import finish, read_written, run_scenario, start_scenario

FILE_SINK = "activity_audit.plugins.file_sink"
BEFORE, AFTER = 3_000, 500  # about 1.3 MB, then 0.2 MB of records


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the RLIMIT_FSIZE test covers it")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _check_loss_accounting(finished, log_dir: Path, error_text: str) -> None:
    assert finished.returncode == 0, finished.stderr
    stats = finished.result["stats"]["sinks"][FILE_SINK]
    written = read_written(log_dir)  # fails on any line that is not whole JSON, or a file ending mid-line
    [stream] = written.report.streams.values()
    assert written.report.bad_lines == 0 and stream.duplicates == [] and stream.stopped
    # Lost = exactly the seqs missing from the file, and exactly what stderr announced.
    assert stats["lost"] > 0
    assert stream.missing_count == stats["lost"]
    reports = finished.reports("SINK_FAILED", FILE_SINK)
    assert sum(lost for _, lost in reports) == stats["lost"]
    assert 1 <= len(reports) <= 3
    assert error_text in finished.stderr
    # Writing resumed: every record emitted after space came back is there, and the trail says what was lost.
    assert written.origins()["after"] == AFTER
    # The burst took seqs 2..BEFORE+1 (1 is PIPELINE_STARTED): the "before" records lost are the gaps there.
    lost_before = sum(1 for seq in stream.missing_seqs() if 2 <= seq <= BEFORE + 1)
    assert written.origins()["before"] == BEFORE - lost_before
    # Reports made while the disk was full were lost with it; the later ones are in the trail, same numbers.
    in_trail = [
        (r["occurrences"], r["lost"]) for r in written.events("SINK_FAILED") if r["source"] == FILE_SINK
    ]
    assert in_trail and _is_subsequence(in_trail, reports)
    assert all(error_text in r["error"] for r in written.events("SINK_FAILED"))
    # Each report also counts every loss of the stream so far: the last one written makes good those lost.
    last = [r for r in written.events("SINK_FAILED") if r["source"] == FILE_SINK][-1]
    position = max(i for i, report in enumerate(reports) if report == (last["occurrences"], last["lost"]))
    assert last["lost_in_stream"] == sum(lost for _, lost in reports[: position + 1])


def _is_subsequence(part: list, whole: list) -> bool:
    remaining = iter(whole)
    return all(item in remaining for item in part)


def test_enospc_on_tmpfs(small_disk: Path) -> None:
    log_dir = small_disk / "logs"
    filler = small_disk / "filler"
    filler.write_bytes(b"x" * 600_000)
    process = start_scenario("disk_full", log_dir, {"before": BEFORE, "after": AFTER}, REPORT_INTERVAL=3600)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("FULL "), line + (process.stderr.read() if process.stderr else "")
    filler.unlink()  # space returns
    finished = finish(process, stdin="go\n")
    _check_loss_accounting(finished, log_dir, "No space left on device")


def test_file_size_limit(tmp_path: Path) -> None:
    finished = run_scenario(
        "file_size_limit",
        tmp_path,
        {"before": BEFORE, "after": AFTER, "limit": 400_000},
        REPORT_INTERVAL=3600,
    )
    _check_loss_accounting(finished, tmp_path, "File too large")
