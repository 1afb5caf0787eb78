"""Snapshots stored by a save inside a transaction that has not committed yet, undone if it rolls back.

A save inside ``atomic`` stores its new snapshot on the instance at once (the next save in the same
transaction is diffed against it). If the transaction, or the savepoint the save ran in, rolls back, the row
is as it was, but the instance keeps its new values (Django's behaviour): a retried ``save()`` of the same
values writes a real change, which must be diffed against what the row holds, not against the snapshot of a
save that never happened.

Each such save leaves an :class:`Undo` on the instance: the snapshot before it, and a weak reference to the
``on_commit`` callback that will emit its record. The connection holds that callback until the transaction
ends; when a rollback discards it, nothing else holds it and the weak reference dies, while a commit runs
it first (:attr:`Outcome.committed`). The snapshot is settled when the instance is next diffed
(:func:`settled`), so nothing runs at rollback time and autocommit saves pay nothing.
"""

from __future__ import annotations

import weakref
from typing import Any

UNDO_ATTR = "_activity_audit_undo"

Snapshot = dict[str, Any]


class Outcome:
    """Set by the ``on_commit`` callback of a save when it runs, i.e. when the save was committed."""

    __slots__ = ("committed",)

    def __init__(self) -> None:
        self.committed = False


class Undo:
    """What to go back to if the save that stored the current snapshot is rolled back."""

    __slots__ = ("before", "callback", "outcome", "previous")

    def __init__(self, before: Snapshot | None, callback: object, outcome: Outcome, previous: Undo | None):
        self.before = before
        self.callback = weakref.ref(callback)
        self.outcome = outcome
        self.previous = previous  # the undo of an earlier save of the same transaction, still open

    def rolled_back(self) -> bool:
        return not self.outcome.committed and self.callback() is None


def note_provisional(
    values: dict[str, Any], before: Snapshot | None, callback: object, outcome: Outcome
) -> None:
    """Remember, in an instance's ``__dict__`` (``values``), that its snapshot was stored by a save whose
    record ``callback`` emits at commit, and that ``before`` is what the row holds if that never happens."""
    previous = values.get(UNDO_ATTR)
    if previous is not None and previous.outcome.committed:
        previous = None
    values[UNDO_ATTR] = Undo(before, callback, outcome, previous)


def settled(values: dict[str, Any], snapshot_attr: str) -> Snapshot | None:
    """The snapshot of an instance's ``__dict__`` (``values``) under ``snapshot_attr``, with the saves of
    transactions or savepoints that rolled back undone (stored back in ``values``)."""
    undo: Undo | None = values.get(UNDO_ATTR)
    snapshot: Snapshot | None = values.get(snapshot_attr)
    if undo is None:
        return snapshot
    changed = False
    while undo is not None and undo.rolled_back():
        snapshot, undo, changed = undo.before, undo.previous, True
    if undo is not None and undo.outcome.committed:
        undo = None  # committed, and every save before it with it
    if changed:
        if snapshot is None:
            values.pop(snapshot_attr, None)
        else:
            values[snapshot_attr] = snapshot
    if undo is None:
        values.pop(UNDO_ATTR, None)
    else:
        values[UNDO_ATTR] = undo
    return snapshot
