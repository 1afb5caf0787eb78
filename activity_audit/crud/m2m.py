"""Many-to-many changes, from either side of the relation: ``M2M_ADD``, ``M2M_REMOVE``, ``M2M_CLEAR``.

One record per ``add()``, ``remove()`` or ``clear()`` (``set()`` is a remove then an add, so up to two
records), on the model of the instance whose manager was used, under the name of that side's accessor:
``{"tags": {"added": [1, 2]}}`` from ``book.tags.add(...)``, ``{"books": {"added": [7]}}`` from
``tag.books.add(book)``, with ``related_model`` naming the other side.

The pks are exact: for ``add()`` Django passes only the links it really created; for ``remove()`` and
``clear()`` one SELECT on the link table, made before the change, lists the links that really existed
(Django itself passes the pks asked for, and none at all for ``clear()``).

While an m2m change is in progress its link table is marked, so that the ``bulk_create()`` or
``QuerySet.delete()`` Django runs on it is not recorded a second time as a bulk write (bulk.py, receivers.py).
A mark belongs to the ``atomic`` block Django opens for the change: when the change fails half-way (a
protected row, a receiver that raises) and no ``post_*`` signal comes, the mark ends with that block, so a
later write to the link table is recorded as usual. The mirror rows of a symmetrical relation to self, which
``add()`` writes without sending signals, are covered by a mark held until ``add()`` itself ends.
"""

from __future__ import annotations

import contextvars
from typing import Any

from django.apps import apps
from django.db import connections, models

from ..dispatch import pipeline
from .chunks import sorted_pks
from .events import M2M_ADD, M2M_CLEAR, M2M_REMOVE, row_record
from .selection import is_masked, is_recorded, policy_for
from .snapshots import masked
from .transactions import emit_on_commit

_EVENTS = {
    "post_add": (M2M_ADD, "added"),
    "post_remove": (M2M_REMOVE, "removed"),
    "post_clear": (M2M_CLEAR, "cleared"),
}

# Link tables whose m2m change is in progress in this thread or task: the alias and the atomic block of
# the change, per link table.
_Marks = dict[type[models.Model], tuple[str, object]]
_tables_in_progress: contextvars.ContextVar[_Marks] = contextvars.ContextVar("activity_audit_m2m_tables")
# The links that existed before a remove() or clear(): (through model, id(instance), reverse, pks).
_existing: contextvars.ContextVar[tuple[Any, ...] | None] = contextvars.ContextVar(
    "activity_audit_m2m_existing", default=None
)
_fields_by_through: dict[type[models.Model], models.ManyToManyField[Any, Any] | None] = {}


def in_progress(model: type[models.Model]) -> bool:
    """True while ``model`` is the link table of an m2m change being made in this thread or task."""
    mark = _tables_in_progress.get(None)
    if not mark or model not in mark:
        return False
    alias, block = mark[model]
    if any(open_block is block for open_block in connections[alias].atomic_blocks):
        return True
    _unmark(model)  # the change failed before its post_* signal: its block is gone
    return False


def claim(model: type[models.Model]) -> bool:
    """Like :func:`in_progress`, and forget the mark: Django runs one bulk write per m2m change."""
    if not in_progress(model):
        return False
    _unmark(model)
    return True


def _mark(model: type[models.Model], alias: str, depth: int = 1) -> None:
    """Mark ``model`` for the ``depth``-th innermost atomic block of ``alias`` (none open: no mark)."""
    blocks = connections[alias].atomic_blocks
    if len(blocks) >= depth:
        _tables_in_progress.set({**_tables_in_progress.get({}), model: (alias, blocks[-depth])})


def _unmark(model: type[models.Model]) -> None:
    marks = _tables_in_progress.get({})
    if model in marks:
        _tables_in_progress.set({key: value for key, value in marks.items() if key is not model})


def on_m2m_changed(**arguments: Any) -> None:
    """``m2m_changed`` receiver (connected for every sender); failures are reported, never raised."""
    try:
        _handle(**arguments)
    except Exception as exc:
        pipeline.reporter.problem("CAPTURE_FAILED", "crud:m2m_changed", error=f"{type(exc).__name__}: {exc}")


def _handle(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    using: str,
    **signal_arguments: Any,
) -> None:
    if action.startswith("pre_"):
        _mark(sender, using)
        if action in ("pre_remove", "pre_clear"):
            _remember_existing(sender, instance, reverse, model, pk_set, using)
        return
    _unmark(sender)
    field = _field_of(sender)
    if action == "post_add" and not reverse and field is not None and _is_symmetrical(field):
        _mark(sender, using, depth=2)  # add() is about to write the mirror rows, with no signal
    event = _EVENTS.get(action)
    policy = policy_for(type(instance))
    if event is None or policy is None or field is None:
        return
    event_type, verb = event
    pks = (pk_set or set()) if action == "post_add" else _take_existing(sender, instance, reverse, pk_set)
    if not pks:
        return
    accessor = field.remote_field.get_accessor_name() if reverse else field.name
    if accessor is None or not is_recorded(policy, accessor):
        return
    change: dict[str, Any] = masked() if is_masked(policy, accessor) else {verb: sorted_pks(pks)}
    record = row_record(
        event_type, policy, instance, using, {accessor: change}, related_model=model._meta.label
    )
    emit_on_commit(record, using)


def _remember_existing(
    through: type[models.Model],
    instance: models.Model,
    reverse: bool,
    related: type[models.Model],
    pk_set: set[Any] | None,
    using: str,
) -> None:
    """Note the links that ``remove()`` (``pk_set``) or ``clear()`` (None) is about to delete, as Django
    chooses them: only those whose ``related`` object the default manager of its model returns (a
    soft-deleting manager hides rows, and Django leaves their links alone)."""
    field = _field_of(through)
    if field is None:
        return
    source, target = field.m2m_field_name(), field.m2m_reverse_field_name()
    if reverse:
        source, target = target, source
    links = through._default_manager.using(using).filter(**{source: instance})
    if pk_set is not None:
        links = links.filter(**{f"{target}__in": pk_set})
    visible = related._default_manager.get_queryset()
    if visible.query.has_filters():
        links = links.filter(**{f"{target}__in": visible.using(using)})
    existing = set(links.values_list(target, flat=True))
    _existing.set((through, id(instance), reverse, existing))


def _take_existing(
    through: type[models.Model], instance: models.Model, reverse: bool, pk_set: Any
) -> set[Any]:
    remembered = _existing.get()
    _existing.set(None)
    if remembered is not None and remembered[:3] == (through, id(instance), reverse):
        found: set[Any] = remembered[3]
        return found
    return set(pk_set or ())


def _is_symmetrical(field: models.ManyToManyField[Any, Any]) -> bool:
    return bool(getattr(field.remote_field, "symmetrical", False))


def _field_of(through: type[models.Model]) -> models.ManyToManyField[Any, Any] | None:
    """The ManyToManyField whose link table is ``through``."""
    try:
        return _fields_by_through[through]
    except KeyError:
        pass
    found = None
    for candidate in apps.get_models():
        for field in candidate._meta.local_many_to_many:
            if field.remote_field.through is through:
                found = field
    _fields_by_through[through] = found
    return found
