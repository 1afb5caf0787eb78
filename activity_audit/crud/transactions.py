"""Emit a captured change when the transaction that made it commits, and never if it rolls back.

The record (its timestamp, actor and values) is built at the moment of the change; only the hand-over to
``audit_crud_event`` and the pipeline waits. :func:`django.db.transaction.on_commit` on the change's own
database alias does the waiting: in autocommit it runs at once; inside ``atomic`` it runs when the outermost
block of that alias commits; a callback registered inside a savepoint that rolls back is discarded by Django
with the savepoint, so an undone change leaves no record. A transaction on another alias changes nothing.

Django runs the callbacks of a commit in order and abandons the rest when one of the project's raises (a
``task.delay()`` with the broker down): the data is committed all the same, so :func:`keep_audit_callbacks`
makes the connection run the audit callbacks it abandoned before the error goes on.

Under manual transaction management (``set_autocommit(False)``) there is no commit hook to wait for, so the
record is emitted at once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from ..dispatch import pipeline
from ..emit import emit_crud
from .provisional import Outcome


class AuditCallback:
    """An audit ``on_commit`` callback: runs its function at most once (see :func:`keep_audit_callbacks`),
    and sets ``outcome.committed`` when it does (see :mod:`activity_audit.crud.provisional`)."""

    __slots__ = ("__weakref__", "done", "function", "outcome")

    def __init__(self, function: Callable[[], None]) -> None:
        self.function = function
        self.outcome = Outcome()
        self.done = False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            self.outcome.committed = True
            self.function()


def on_commit(function: Callable[[], None], alias: str) -> None:
    """Run ``function`` when the current transaction of ``alias`` commits (at once outside ``atomic``).

    Registered as robust, so that a failure of ours never costs the project's own callbacks either.
    """
    connections[alias].on_commit(AuditCallback(function), robust=True)


def emit_on_commit(record: dict[str, Any], alias: str) -> AuditCallback | None:
    """Queue ``record`` once the current transaction of ``alias`` commits (at once outside ``atomic``).

    Returns the callback registered with the transaction, or None when the record was emitted at once.
    """
    connection = connections[alias]
    if connection.in_atomic_block:
        callback = AuditCallback(partial(emit_now, record))
        connection.on_commit(callback, robust=True)
        return callback
    emit_now(record)  # autocommit: the change is committed already; manual transactions offer no commit hook
    return None


def commit_marker(alias: str) -> AuditCallback | None:
    """A callback that does nothing but live as long as the open transaction of ``alias`` keeps it (gone with
    a rollback, run by a commit), for snapshots stored by a bulk write (see provisional.py); None in
    autocommit, where the write is committed already."""
    connection = connections[alias]
    if not connection.in_atomic_block:
        return None
    callback = AuditCallback(_nothing)
    connection.on_commit(callback, robust=True)
    return callback


def _nothing() -> None:
    pass


def emit_now(record: dict[str, Any]) -> None:
    """Hand ``record`` to ``audit_crud_event`` and the pipeline; a failure is reported, never raised."""
    try:
        emit_crud(record)
    except Exception as exc:  # an audit failure must never surface in the user's commit
        pipeline.reporter.problem("CAPTURE_FAILED", "crud:emit", error=f"{type(exc).__name__}: {exc}")


def keep_audit_callbacks() -> None:
    """Make every connection run its pending audit callbacks even when a callback before them raised.

    Wraps ``BaseDatabaseWrapper.run_and_clear_commit_hooks`` (once; idempotent). The wrapper notes the audit
    callbacks before Django runs the list; if Django's loop stops on an exception, it runs those not run yet,
    in order, then lets the exception go on unchanged.
    """
    original = BaseDatabaseWrapper.run_and_clear_commit_hooks
    if getattr(original, "_keeps_audit_callbacks", False):
        return

    def run_and_clear_commit_hooks(self: BaseDatabaseWrapper) -> None:
        pending = self.run_on_commit
        ours = [entry[1] for entry in pending if type(entry[1]) is AuditCallback] if pending else None
        try:
            original(self)
        except BaseException:
            for callback in ours or ():
                callback()  # emit_now never raises
            raise

    run_and_clear_commit_hooks._keeps_audit_callbacks = True  # type: ignore[attr-defined]
    BaseDatabaseWrapper.run_and_clear_commit_hooks = run_and_clear_commit_hooks  # type: ignore[method-assign]
