"""The spool under faults: options, failing uploaders and disks, forks, a removed directory.

Every test counts records exactly: what the spool acknowledged is delivered, and what it did not is counted.
The remote is a directory, as in ``test_spool.py``.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.exceptions import ImproperlyConfigured

from activity_audit.conf import get_settings
from activity_audit.plugin_options import PluginOptions
from activity_audit.records import Entry
from activity_audit.spool import SPOOL_OPTION_KEYS, Segment, Spool, SpoolOptions, _created_at, build_segment

STREAM = "aaaaaaaa-0000-4000-8000-000000000000"


def spool_options(**values: Any) -> SpoolOptions:
    return SpoolOptions.read(PluginOptions("s3", values, SPOOL_OPTION_KEYS), get_settings())


def test_retry_max_defaults_to_at_least_retry_initial() -> None:
    assert (spool_options(retry_initial=600).retry_initial, spool_options(retry_initial=600).retry_max) == (
        600.0,
        600.0,
    )
    assert spool_options(retry_initial=2).retry_max == 300.0


def test_a_retry_max_below_retry_initial_names_both_options() -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        spool_options(retry_initial=600, retry_max=100)
    assert str(error.value) == (
        "ACTIVITY_AUDIT['PLUGINS']['s3']['retry_max'] must be a number of seconds of at least retry_initial "
        "(600), got 100."
    )


class DirectoryUploader:
    """A remote that is a directory; ``fail`` makes uploads raise, and ``names`` lists the uploads."""

    def __init__(self, root: Path, fail: bool = False) -> None:
        self.root, self.fail = root, fail
        self.names: list[str] = []

    def upload(self, name: str, segment: Segment) -> None:
        if self.fail:
            raise RuntimeError("remote down")
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(segment.data)
        self.names.append(name)

    def close(self) -> None:
        pass

    def forget(self) -> None:
        pass


def entry(seq: int, stream: str = STREAM, pad: str = "") -> Entry:
    record = {"timestamp": "2026-11-28T15:09:32.123456+00:00", "stream_id": stream, "seq": seq}
    if pad:
        record["pad"] = pad
    return Entry("audit", record, orjson.dumps(record))


def uploaded_lines(root: Path) -> list[bytes]:
    return [
        line
        for path in sorted(root.rglob("*.gz"))
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]


def uploaded_seqs(root: Path) -> list[int]:
    return sorted(orjson.loads(line)["seq"] for line in uploaded_lines(root))


def unstarted(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> Spool:
    """``spool`` without its upload thread: the test drives the uploads."""
    monkeypatch.setattr(spool, "start", lambda: None)
    return spool


def test_segments_without_an_envelope_and_with_the_same_bytes_are_all_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A custom formatter dropped stream_id and seq, and the same event came twice, in two segments."""
    denied = b'{"event":"ACCESS_DENIED","user":"bob","path":"/admin"}'
    options = SpoolOptions(directory=tmp_path / "spool", segment_max_bytes=1)  # one segment per batch
    uploader = DirectoryUploader(tmp_path / "remote")
    spool = unstarted(Spool("unit", options, uploader), monkeypatch)
    spool.append([Entry("audit", {"stream_id": STREAM, "seq": 1}, denied)])
    spool.append([Entry("audit", {"stream_id": STREAM, "seq": 2}, denied)])
    segments = spool.backlog()
    names = [
        build_segment(path.read_bytes(), _created_at(path), path.stem).object_name() for path in segments
    ]
    spool._upload_ready()
    spool.close()

    assert uploaded_lines(tmp_path / "remote") == [denied, denied]
    assert uploader.names == names  # the name a retry of the same segment would get
    assert names == [
        f"{_created_at(path):%Y/%m/%d/%H}/segment-{path.stem}-000000000000-000000000000.jsonl.gz"
        for path in segments
    ]
