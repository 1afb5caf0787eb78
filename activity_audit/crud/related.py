"""Reverse foreign-key managers (``book.reviews``): the objects ``add()`` and ``remove()`` move keep a true
snapshot.

With ``bulk=True`` (the default; also through ``aadd()``, and ``set()``, which calls ``add()``) Django sets
the foreign key on the objects in memory and writes it with ``QuerySet.update()``, recorded as a
``QUERYSET_UPDATE`` (bulk.py). Their snapshots would still hold the old key, so the next ``save()`` of one
of them would record the move again, as its own change, with the actor and request of that save. After a
successful bulk ``add()`` each audited object that has a snapshot gets a new one (a snapshot is never changed
in place) holding the key the row now holds. Inside a transaction that snapshot is provisional, like a
save's: it is undone if the transaction or savepoint rolls back (see provisional.py), so the save that
repeats the move is then recorded. ``add(bulk=False)`` saves each object, which needs nothing here.

``remove()`` with ``bulk=True`` (also through ``aremove()``; only for a nullable key) writes NULL with
``QuerySet.update()`` and leaves the objects in memory holding their old key: their snapshots get NULL, what
the row holds, so that a later full ``save()`` of one, which writes the old key back, records that change.

:func:`install` wraps Django's ``create_reverse_many_to_one_manager`` once: the manager class it builds for
each relation, when the relation is first used, gets the wrapped ``add`` and ``remove``. The project's models
and managers are not touched, and code that does not call them pays nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Model
from django.db.models.fields import related_descriptors

from ..dispatch import pipeline
from . import snapshots
from .provisional import note_provisional
from .selection import policy_for
from .transactions import AuditCallback, commit_marker

_MARK = "__activity_audit_wrapped__"


def install() -> None:
    """Wrap ``create_reverse_many_to_one_manager``, once per process."""
    original = related_descriptors.create_reverse_many_to_one_manager
    if getattr(original, _MARK, False):
        return
    wrapper = functools.wraps(original)(_wrap_factory(original))
    setattr(wrapper, _MARK, True)
    related_descriptors.create_reverse_many_to_one_manager = wrapper


def _wrap_factory(original: Callable[..., type[Any]]) -> Callable[..., type[Any]]:
    def create_reverse_many_to_one_manager(superclass: type[Any], rel: Any) -> type[Any]:
        manager_class = original(superclass, rel)
        for name, wrap in (("add", _wrap_add), ("remove", _wrap_remove)):
            method = getattr(manager_class, name, None)  # remove() only for a nullable key
            if method is not None and not getattr(method, _MARK, False):
                wrapped = functools.wraps(method)(wrap(method))
                setattr(wrapped, _MARK, True)
                setattr(manager_class, name, wrapped)
        return manager_class

    return create_reverse_many_to_one_manager


def _wrap_add(original: Callable[..., Any]) -> Callable[..., Any]:
    def add(self: Any, *objs: Model, **kwargs: Any) -> Any:
        result = original(self, *objs, **kwargs)
        if objs and kwargs.get("bulk", True):
            try:
                moved(objs, self.field.attname)
            except Exception as exc:
                pipeline.reporter.problem(
                    "CAPTURE_FAILED", "crud:related_add", error=f"{type(exc).__name__}: {exc}"
                )
        return result

    return add


def _wrap_remove(original: Callable[..., Any]) -> Callable[..., Any]:
    def remove(self: Any, *objs: Model, **kwargs: Any) -> Any:
        result = original(self, *objs, **kwargs)
        if objs and kwargs.get("bulk", True):
            try:
                moved(objs, self.field.attname, cleared=True)
            except Exception as exc:
                pipeline.reporter.problem(
                    "CAPTURE_FAILED", "crud:related_remove", error=f"{type(exc).__name__}: {exc}"
                )
        return result

    return remove


def moved(objs: Sequence[Model], attname: str, cleared: bool = False) -> None:
    """Give each audited object of ``objs`` that has a snapshot a new one, with the value of its foreign key
    ``attname`` as a bulk write just stored it: the value the object holds after ``add()``, or NULL after
    ``remove()`` (which leaves the objects in memory as they were: a later full ``save()`` of one writes its
    old key back, a change recorded as one). Provisional while that write's transaction is open."""
    markers: dict[str, AuditCallback | None] = {}
    for obj in objs:
        policy = policy_for(type(obj))
        spec = policy.by_name.get(attname) if policy is not None else None
        before = snapshots.loaded(obj) if spec is not None else None
        if spec is None or before is None:
            continue  # not audited, the key left out of records, or nothing known of the row
        alias = obj._state.db or DEFAULT_DB_ALIAS
        held = None if cleared else obj.__dict__.get(attname)
        value = snapshots.assigned_form(spec, held, snapshots.vendor_of(alias))
        obj.__dict__[snapshots.SNAPSHOT_ATTR] = {**before, attname: value}
        if alias not in markers:
            markers[alias] = commit_marker(alias)
        marker = markers[alias]
        if marker is not None:
            note_provisional(obj.__dict__, before, marker, marker.outcome)
