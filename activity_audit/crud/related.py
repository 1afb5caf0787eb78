"""Reverse foreign-key managers (``book.reviews``) and generic relation managers (``board.notes``): the
objects their ``add()`` and ``remove()`` move keep a true snapshot.

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

A generic relation's ``add()`` (``GenericRelation``) does the same with the content type and object id;
its ``remove()`` deletes the rows, which ``post_delete`` records.

:func:`install` wraps Django's ``create_reverse_many_to_one_manager`` and ``create_generic_related_manager``
once: the manager class each builds for a relation, when the relation is first used, gets the wrapped
methods. The project's models and managers are not touched, and code that does not call them pays nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from django.apps import apps
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
    """Wrap the factories of reverse foreign-key and generic relation managers, once per process."""
    _wrap_module_factory(related_descriptors, "create_reverse_many_to_one_manager", _foreign_key, _ADD_REMOVE)
    if apps.is_installed("django.contrib.contenttypes"):
        from django.contrib.contenttypes import fields as generic

        # A generic relation's remove() deletes the rows: post_delete records that, no snapshot follows.
        _wrap_module_factory(generic, "create_generic_related_manager", _generic_key, _ADD)


# What a manager's add() and remove() write on each object: the attnames of the key, from the manager.
KeyOf = Callable[[Any], tuple[str, ...]]
# The methods wrapped, each with whether it clears the key (remove) or sets it (add).
_ADD = (("add", False),)
_ADD_REMOVE = (("add", False), ("remove", True))


def _foreign_key(manager: Any) -> tuple[str, ...]:
    return (manager.field.attname,)


def _generic_key(manager: Any) -> tuple[str, ...]:
    content_type = manager.model._meta.get_field(manager.content_type_field_name)
    return (content_type.attname, manager.object_id_field_name)


def _wrap_module_factory(
    module: Any, name: str, key_of: KeyOf, methods: tuple[tuple[str, bool], ...]
) -> None:
    original = getattr(module, name)
    if getattr(original, _MARK, False):
        return
    wrapper = functools.wraps(original)(_wrap_factory(original, key_of, methods))
    setattr(wrapper, _MARK, True)
    setattr(module, name, wrapper)


def _wrap_factory(
    original: Callable[..., type[Any]], key_of: KeyOf, methods: tuple[tuple[str, bool], ...]
) -> Callable[..., type[Any]]:
    def create_manager(superclass: type[Any], rel: Any) -> type[Any]:
        manager_class = original(superclass, rel)
        for name, cleared in methods:
            method = getattr(manager_class, name, None)  # a foreign key's remove() only when nullable
            if method is not None and not getattr(method, _MARK, False):
                wrapped = functools.wraps(method)(_wrap_write(method, key_of, cleared))
                setattr(wrapped, _MARK, True)
                setattr(manager_class, name, wrapped)
        return manager_class

    return create_manager


def _wrap_write(original: Callable[..., Any], key_of: KeyOf, cleared: bool) -> Callable[..., Any]:
    """``add()`` (``cleared`` False) or ``remove()``: after a bulk write, the snapshots follow."""

    def write(self: Any, *objs: Model, **kwargs: Any) -> Any:
        result = original(self, *objs, **kwargs)
        # add(bulk=False) saves the objects given (their snapshots follow in post_save); remove(bulk=False)
        # saves copies it loads itself, which leaves the objects given as stale as a bulk remove() does.
        if objs and (cleared or kwargs.get("bulk", True)):
            try:
                moved(objs, key_of(self), cleared)
            except Exception as exc:
                pipeline.reporter.problem(
                    "CAPTURE_FAILED",
                    f"crud:related_{original.__name__}",
                    error=f"{type(exc).__name__}: {exc}",
                )
        return result

    return write


def moved(objs: Sequence[Model], attnames: tuple[str, ...], cleared: bool = False) -> None:
    """Give each audited object of ``objs`` that has a snapshot a new one, with the values of ``attnames``
    (its foreign key; a generic relation's content type and object id) as a bulk write just stored them: the
    values the object holds after ``add()``, or NULL after ``remove()`` (which leaves the objects in memory
    as they were: a later full ``save()`` of one writes its old key back, a change recorded as one).
    Provisional while that write's transaction is open. Fields left out of records are left alone."""
    markers: dict[str, AuditCallback | None] = {}
    for obj in objs:
        policy = policy_for(type(obj))
        specs = [policy.by_name[name] for name in attnames if name in policy.by_name] if policy else []
        before = snapshots.loaded(obj) if specs else None
        if before is None:
            continue  # not audited, the keys left out of records, or nothing known of the row
        alias = obj._state.db or DEFAULT_DB_ALIAS
        vendor = snapshots.vendor_of(alias)
        stored = {
            spec.attname: snapshots.assigned_form(
                spec, None if cleared else obj.__dict__.get(spec.attname), vendor
            )
            for spec in specs
        }
        obj.__dict__[snapshots.SNAPSHOT_ATTR] = {**before, **stored}
        if alias not in markers:
            markers[alias] = commit_marker(alias)
        marker = markers[alias]
        if marker is not None:
            note_provisional(obj.__dict__, before, marker, marker.outcome)
