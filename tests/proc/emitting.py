"""How the child processes produce records: the same two paths a real project uses."""

from __future__ import annotations

import logging

from activity_audit.emit import emit_crud
from activity_audit.records import new_record

logger = logging.getLogger("tests.proc")

MARKER = "tests.proc"


def emit(origin: str, count: int, via: str = "crud") -> int:
    """Emit ``count`` records tagged ``origin`` / ``i``; ``via`` is "crud" (emit_crud) or "log" (logging).

    Returns how many the pipeline accepted.
    """
    accepted = 0
    for i in range(count):
        if via == "log":
            logger.info("proc record", extra={"origin": origin, "i": i})
            accepted += 1
        else:
            record = new_record(
                "AUDIT",
                MARKER,
                "proc record",
                origin=origin,
                i=i,
                model="library.Book",
                action="update",
                object_pk=i,
                changes={"title": {"old": "Old title", "new": f"New title {i}"}},
            )
            accepted += emit_crud(record)
    return accepted
