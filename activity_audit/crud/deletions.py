"""Rows deleted by ``QuerySet.delete()`` or by a cascade: one ``BULK_DELETE`` summary per model, listed by pk.

Django's deletion collector sends ``post_delete`` once per row, with ``origin``: the model instance or the
queryset whose ``delete()`` started it. The scheme (docs/crud.md):

* the row you deleted yourself (``instance.delete()``, ``origin is instance``) gets a full ``DELETE`` record
  with its last loaded values (receivers.py);
* every other row (those of a ``QuerySet.delete()``, and the rows a cascade removed) is only counted and
  listed by pk in one ``BULK_DELETE`` record per model and operation, split in parts of ``BULK_CHUNK_SIZE``.

So memory grows by one pk per row, never by a record per row: a 100,000-row cascade holds 100,000 pks
until commit (the collector itself holds the 100,000 instances). With ``BULK_DETAIL = "count"`` only the
counts are kept.

The collector always runs inside ``atomic``, so the batch is emitted when that transaction commits (at
the end of the delete in autocommit) and dropped by Django with the transaction if it rolls back.
"""

from __future__ import annotations

import weakref
from typing import Any

from django.db import connections, models

from . import options
from .chunks import parts, sorted_pks, with_part
from .events import BULK_DELETE, Moment, bulk_message, crud_record, instance_id_of, moment
from .selection import ModelPolicy
from .transactions import emit_now, on_commit


class DeleteBatch:
    """The rows one delete operation removed, per model, until it commits."""

    __slots__ = (
        "__weakref__",
        "alias",
        "block",
        "counts",
        "origin",
        "origin_model",
        "origin_ref",
        "pks",
        "when",
    )

    def __init__(self, origin: Any, alias: str, block: object) -> None:
        self.origin = origin  # held so that its id() cannot be reused while the batch is open
        self.alias = alias
        self.block = block  # the collector's atomic block: one batch per delete operation
        self.when: Moment = moment()
        # Described now: the collector clears the pks of deleted instances before the commit.
        self.origin_model, self.origin_ref = describe_origin(origin)
        self.pks: dict[ModelPolicy, list[Any]] = {}
        self.counts: dict[ModelPolicy, int] = {}

    def add(self, policy: ModelPolicy, pk: Any) -> None:
        self.counts[policy] = self.counts.get(policy, 0) + 1
        if options.current.wants_pks:
            self.pks.setdefault(policy, []).append(pk)

    def emit(self) -> None:
        """Emit one record per model (per part); called by Django when the transaction commits."""
        _open.pop(id(self.origin), None)
        for policy, count in self.counts.items():
            pks = self.pks.get(policy)
            if pks is not None:
                pks = sorted_pks(pks)
            for chunk, part in parts(pks if pks is not None else [], options.current.chunk_size):
                fields: dict[str, Any] = {"operation": "delete", "count": count}
                if pks is not None:
                    fields["pks"] = list(chunk)
                fields["cascade"] = policy.model is not self.origin_model
                fields["origin"] = dict(self.origin_ref)  # each record its own
                emit_now(
                    crud_record(
                        BULK_DELETE,
                        policy.name,
                        policy.label,
                        None,
                        self.alias,
                        self.when,
                        message=bulk_message(BULK_DELETE, policy.name, count),
                        **with_part(fields, part),
                    )
                )


# Open batches by id(origin). Values are weak: a batch lives as long as its on_commit callback, so the entry
# of a rolled-back transaction disappears with the callback Django discards.
_open: weakref.WeakValueDictionary[int, DeleteBatch] = weakref.WeakValueDictionary()


def add_row(origin: Any, policy: ModelPolicy, pk: Any, alias: str) -> None:
    """Count one deleted row of an operation started by ``origin`` (a queryset or another instance).

    Django's collector deletes inside an atomic block of its own, so the rows of one operation share the
    innermost block; a second ``delete()`` of the same queryset (in a savepoint that may roll back) gets a
    batch, and an ``on_commit`` callback, of its own.
    """
    blocks = getattr(connections[alias], "atomic_blocks", None)
    block = blocks[-1] if blocks else None
    batch = _open.get(id(origin))
    if batch is None or batch.origin is not origin or batch.block is not block:
        batch = DeleteBatch(origin, alias, block)
        _open[id(origin)] = batch
        on_commit(batch.emit, alias)
    batch.add(policy, pk)


def describe_origin(origin: Any) -> tuple[type[models.Model] | None, dict[str, Any]]:
    if isinstance(origin, models.Model):
        model = type(origin)
        return model, {"model": model._meta.label, "instance_id": instance_id_of(origin.pk)}
    queryset_model: type[models.Model] | None = getattr(origin, "model", None)
    label = queryset_model._meta.label if queryset_model is not None else None
    return queryset_model, {"model": label, "queryset": True}
