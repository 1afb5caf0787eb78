"""The spool on its own: a torn segment left by a killed writer, and one stream per segment.

The remote here is a directory (the spool is the component under test; the S3 and SFTP plugins' tests run
it against real servers).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import orjson

from activity_audit.records import Entry
from activity_audit.spool import Segment, Spool, SpoolOptions
from tests.support.remote_archive import wait_until


class DirectoryUploader:
    def __init__(self, root: Path) -> None:
        self.root = root

    def upload(self, name: str, segment: Segment) -> None:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(segment.data)

    def close(self) -> None:
        pass

    def forget(self) -> None:
        pass


def entry(stream: str, seq: int) -> Entry:
    record = {"timestamp": "2026-11-28T15:09:32.123456+00:00", "stream_id": stream, "seq": seq}
    return Entry("audit", record, orjson.dumps(record))


def uploaded(root: Path) -> dict[str, list[dict]]:
    return {
        str(path.relative_to(root)): [
            orjson.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()
        ]
        for path in sorted(root.rglob("*.gz"))
    }


STREAM_A = "aaaaaaaa-0000-4000-8000-000000000000"
STREAM_B = "bbbbbbbb-0000-4000-8000-000000000000"


def test_one_segment_per_stream_named_by_its_seq_range(tmp_path: Path) -> None:
    options = SpoolOptions(
        directory=tmp_path / "spool", segment_max_age=0.05, retry_initial=0.05, retry_max=0.1
    )
    spool = Spool("unit", options, DirectoryUploader(tmp_path / "remote"))
    spool.append([entry(STREAM_A, 1), entry(STREAM_A, 2), entry(STREAM_B, 1)])
    spool.append([entry(STREAM_B, 2)])
    wait_until(lambda: not spool.backlog(), 10, "the spool to drain")
    spool.close()
    assert {name: [r["seq"] for r in records] for name, records in uploaded(tmp_path / "remote").items()} == {
        f"2026/11/28/15/{STREAM_A}-000000000001-000000000002.jsonl.gz": [1, 2],
        f"2026/11/28/15/{STREAM_B}-000000000001-000000000002.jsonl.gz": [1, 2],
    }


def test_a_segment_abandoned_mid_line_is_trimmed_and_delivered(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    whole = orjson.dumps(entry(STREAM_A, 1).record) + b"\n" + orjson.dumps(entry(STREAM_A, 2).record) + b"\n"
    abandoned = directory / f"{1:020d}-999999-deadbeef.open"  # its writer is gone: nobody holds its flock
    abandoned.write_bytes(whole + b'{"timestamp": "2026-11-28T15:')
    os.chmod(abandoned, 0o640)
    options = SpoolOptions(directory=directory, segment_max_age=0.05, retry_initial=0.05, retry_max=0.1)
    spool = Spool("unit", options, DirectoryUploader(tmp_path / "remote"))
    spool.start()
    wait_until(lambda: not spool.backlog(), 10, "the abandoned segment to be delivered")
    spool.close()
    assert list(uploaded(tmp_path / "remote").values()) == [
        [entry(STREAM_A, 1).record, entry(STREAM_A, 2).record]
    ]
