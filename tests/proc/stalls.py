"""Hold the pipeline still on purpose: a sink that waits for ``sink_go``, and a redactor (worker thread) that
waits for ``worker_go``. Both are open until a scenario closes them."""

import threading
from collections.abc import Sequence
from typing import Any

from activity_audit import hookimpl
from activity_audit.records import Entry

sink_go = threading.Event()
worker_go = threading.Event()
sink_go.set()
worker_go.set()
delivered = [0]


@hookimpl
def redact(record: dict[str, Any]) -> None:
    if not worker_go.is_set():
        worker_go.wait()


@hookimpl
def sink(records: Sequence[Entry]) -> None:
    sink_go.wait()
    delivered[0] += len(records)
