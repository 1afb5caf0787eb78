"""Emit a captured change when the transaction that made it commits, and never if it rolls back.

The record (its timestamp, actor and values) is built at the moment of the change; only the hand-over to
``audit_crud_event`` and the pipeline waits. :func:`django.db.transaction.on_commit` on the change's own
database alias does the waiting: in autocommit it runs at once; inside ``atomic`` it runs when the outermost
block of that alias commits; a callback registered inside a savepoint that rolls back is discarded by Django
with the savepoint, so an undone change leaves no record. A transaction on another alias changes nothing.

Under manual transaction management (``set_autocommit(False)``) there is no commit hook to wait for, so the
record is emitted at once.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import connections

from ..dispatch import pipeline
from ..emit import emit_crud


def emit_on_commit(record: dict[str, Any], alias: str) -> None:
    """Queue ``record`` once the current transaction of ``alias`` commits (at once outside ``atomic``)."""
    connection = connections[alias]
    if connection.in_atomic_block:
        connection.on_commit(partial(emit_now, record))
    else:  # autocommit: the change is committed already; manual transactions offer no commit hook
        emit_now(record)


def emit_now(record: dict[str, Any]) -> None:
    """Hand ``record`` to ``audit_crud_event`` and the pipeline; a failure is reported, never raised."""
    try:
        emit_crud(record)
    except Exception as exc:  # an audit failure must never surface in the user's commit
        pipeline.reporter.problem("CAPTURE_FAILED", "crud:emit", error=f"{type(exc).__name__}: {exc}")
