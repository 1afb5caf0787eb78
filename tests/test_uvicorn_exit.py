"""uvicorn stopped by SIGTERM: every record of every request it answered is written, every stream closed.

A uvicorn worker (``--workers N``) ends on the SIGTERM it raises again after its graceful stop, by the
signal's default action, which skips ``atexit``: :mod:`activity_audit.uvicorn_exit` drains the pipeline
before that. A single uvicorn process ends through the package's SIGTERM handler. Records stay queued until
the end (``FLUSH_INTERVAL`` longer than the test), and some requests are still under way when the signal
comes: uvicorn answers them during its graceful stop, and their records must be written too.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from activity_audit.uvicorn_exit import drain_when_uvicorn_stops
from tests.support.procs import (
    assert_streams_complete,
    expected_keys_by_stream,
    finish,
    read_written,
    record_key,
    uvicorn,
)

QUICK = 24  # requests answered before the signal
UNDER_WAY = 4  # requests the view holds for WAIT seconds, the signal sent meanwhile
WAIT = 1.5
PER_REQUEST = 50
# Only full batches (BATCH_SIZE) are written before the end, the rest waits for the drain; nothing dropped.
OPTIONS = {"FLUSH_INTERVAL": 120, "QUEUE_SIZE": 100_000, "SINK_QUEUE_SIZE": 100_000, "SHUTDOWN_TIMEOUT": 30}


def _get(url: str, origin: str, wait: float = 0.0) -> dict[str, Any]:
    response = requests.get(
        f"{url}/emit", params={"origin": origin, "n": PER_REQUEST, "wait": wait}, timeout=30
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(("workers", "returncode"), [(2, 0), (1, 128 + signal.SIGTERM)])
def test_uvicorn_sigterm_writes_every_answered_request(tmp_path: Path, workers: int, returncode: int) -> None:
    with uvicorn(tmp_path, "--workers", str(workers), **OPTIONS) as server:
        with ThreadPoolExecutor(UNDER_WAY) as pool:
            answers = list(pool.map(lambda n: _get(server.url, f"quick{n}"), range(QUICK)))
            under_way = [pool.submit(_get, server.url, f"late{n}", WAIT) for n in range(UNDER_WAY)]
            time.sleep(WAIT / 3)  # the requests have reached the server; their views are still waiting
            server.process.send_signal(signal.SIGTERM)
            late = [future.result() for future in under_way]
        finished = finish(server.process)

    assert finished.returncode == returncode, finished.stderr
    written = read_written(tmp_path)
    assert_streams_complete(written)
    expected = expected_keys_by_stream(answers + late)
    for stream_id, keys in expected.items():
        assert sorted(record_key(r) for r in written.marked(stream_id)) == keys
    # Every stream in the files is a worker that answered: its records and its two events, nothing else. The
    # kernel hands the connections to either worker: with these many, each worker gets some.
    assert set(written.by_stream) == set(expected)
    assert len(expected) == workers
    for stream_id, keys in expected.items():
        assert len(written.by_stream[stream_id]) == len(keys) + 2
    assert "activity_audit:" not in finished.stderr


# --- the hook itself, in this process ----------------------------------------------------------------------


class _Spy:
    def __init__(self, fails: bool = False) -> None:
        self.calls: list[str] = []
        self.fails = fails

    async def shutdown(self) -> None:
        self.calls.append("shutdown")

    def drain(self) -> None:
        self.calls.append("drain")
        if self.fails:
            raise RuntimeError("sink gone")


@pytest.fixture
def serving() -> Iterator[Any]:
    """A uvicorn ``Server`` holding SIGTERM, as while it serves; its own ``shutdown`` replaced by a stub."""
    from uvicorn import Config
    from uvicorn.server import Server

    server = Server(Config(app=lambda scope, receive, send: None))
    previous = signal.signal(signal.SIGTERM, server.handle_exit)
    try:
        yield server
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize(
    ("captured", "drained"), [([signal.SIGTERM], True), ([signal.SIGINT], False), ([], False)]
)
def test_drains_after_shutdown_only_when_stopped_on_sigterm(
    serving: Any, captured: list[int], drained: bool
) -> None:
    spy = _Spy()
    serving.shutdown = spy.shutdown
    assert drain_when_uvicorn_stops(spy.drain)
    assert drain_when_uvicorn_stops(spy.drain)  # again, as on a settings reload: still one drain
    serving._captured_signals = captured
    asyncio.run(serving.shutdown())
    assert spy.calls == (["shutdown", "drain"] if drained else ["shutdown"])


def test_a_failing_drain_does_not_reach_the_server(serving: Any, capsys: pytest.CaptureFixture[str]) -> None:
    spy = _Spy(fails=True)
    serving.shutdown = spy.shutdown
    drain_when_uvicorn_stops(spy.drain)
    serving._captured_signals = [signal.SIGTERM]
    asyncio.run(serving.shutdown())
    assert spy.calls == ["shutdown", "drain"]
    assert "draining at uvicorn's stop failed: RuntimeError('sink gone')" in capsys.readouterr().err


def test_nothing_to_do_when_no_uvicorn_server_holds_sigterm() -> None:
    uvicorn_imported = "uvicorn.server" in sys.modules
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        assert not drain_when_uvicorn_stops(lambda: None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert ("uvicorn.server" in sys.modules) == uvicorn_imported  # not imported for the question
