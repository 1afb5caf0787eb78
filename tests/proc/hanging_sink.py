"""A sink that never returns until ``release`` is set (the scenario never sets it unless asked)."""

import threading
from collections.abc import Sequence

from activity_audit import hookimpl
from activity_audit.records import Entry

release = threading.Event()
delivered: list[int] = []


@hookimpl
def sink(records: Sequence[Entry]) -> None:
    release.wait()
    delivered.append(len(records))
