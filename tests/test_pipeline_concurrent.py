"""Several processes appending to the same files at once: every line whole, nothing lost, per stream
(RELIABILITY.md E5: stdlib handlers in several processes lose and tear records)."""

from __future__ import annotations

from pathlib import Path

from tests.support.procs import assert_streams_complete, finish, read_written, record_key, start_scenario
from tests.test_pipeline_exit import ROOMY

PROCESSES, RECORDS = 4, 20_000


def test_processes_share_the_files(tmp_path: Path) -> None:
    processes = [
        start_scenario(
            "burst",
            tmp_path,
            {"count": RECORDS, "exit": "normal", "origin": f"process-{n}"},
            **ROOMY,
        )
        for n in range(PROCESSES)
    ]
    for process in processes:
        finished = finish(process, timeout=55)
        assert finished.returncode == 0, finished.stderr
        assert finished.stderr == ""

    written = read_written(tmp_path)  # every line parses: none torn, none interleaved
    assert_streams_complete(written)
    assert len(written.by_stream) == PROCESSES
    for stream_id in written.by_stream:
        [origin] = written.origins(stream_id)
        assert sorted(record_key(r) for r in written.marked(stream_id)) == [
            (origin, i) for i in range(RECORDS)
        ]
        assert len(written.by_stream[stream_id]) == RECORDS + 2
    assert set(written.origins()) == {f"process-{n}" for n in range(PROCESSES)}
    assert len(written.raw.splitlines()) == PROCESSES * (RECORDS + 2)
