"""A sink that raises on every batch."""

from collections.abc import Sequence

from activity_audit import hookimpl
from activity_audit.records import Entry


@hookimpl
def sink(records: Sequence[Entry]) -> None:
    raise RuntimeError(f"broken sink refused {len(records)} records")
