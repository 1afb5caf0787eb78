"""Snapshot rows when the ORM loads them: ``Model.from_db`` and ``Model.refresh_from_db``.

:func:`install` wraps these two methods of :class:`django.db.models.Model` once. Every instance the ORM
builds from a database row goes through ``from_db`` (querysets, ``get()``, related managers, ``iterator()``),
so wrapping it snapshots exactly the instances whose values came from the database, at no query, while
instances built by ``Model(...)`` pay nothing (their ``CREATE`` record is built after the insert).
``refresh_from_db`` (also used when a deferred field is first read) refreshes the snapshot of the fields
it reloaded. A model that overrides ``from_db`` should call ``super().from_db(...)``, as Django's
documentation shows; one that does not gets ``"old_unknown": true`` in its ``UPDATE`` records.

Users' model classes are not changed: the wrappers live on Django's base class only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Model

from ..dispatch import pipeline
from .provisional import UNDO_ATTR, note_provisional
from .selection import policy_for
from .snapshots import ROW_DB, ROW_PK, SNAPSHOT_ATTR, Snapshot, loaded, remember, row_pk_of, same_row, take
from .transactions import commit_marker

_MARK = "__activity_audit_wrapped__"


def install() -> None:
    """Wrap ``Model.from_db`` and ``Model.refresh_from_db``, once per process."""
    from_db = Model.__dict__["from_db"].__func__
    if not getattr(from_db, _MARK, False):
        Model.from_db = classmethod(_wrap_from_db(from_db))  # type: ignore[method-assign,assignment]
    refresh = Model.refresh_from_db
    if not getattr(refresh, _MARK, False):
        Model.refresh_from_db = _wrap_refresh(refresh)  # type: ignore[method-assign]


def _wrap_from_db(original: Callable[..., Model]) -> Callable[..., Model]:
    @functools.wraps(original)
    def from_db(cls: type[Model], *args: Any, **kwargs: Any) -> Model:
        instance = original(cls, *args, **kwargs)  # newer Django versions pass more arguments
        try:
            policy = policy_for(cls)
            if policy is not None:
                remember(instance, policy)
        except Exception as exc:
            _failed(exc)
        return instance

    setattr(from_db, _MARK, True)
    return from_db


def _wrap_refresh(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def refresh_from_db(self: Model, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        try:
            policy = policy_for(type(self))
            if policy is not None:
                fields = kwargs.get("fields", args[1] if len(args) > 1 else None)
                earlier = loaded(self)
                reloaded = take(self.__dict__, policy)
                read = set(policy.attnames)
                if fields is not None:
                    # Only these came from the row; the other attributes are whatever the code set, and an
                    # instance never loaded before must not pass them off as the row's values.
                    wanted = {
                        spec.attname for spec in policy.fields if {spec.name, spec.attname} & set(fields)
                    }
                    read = wanted
                    fresh = {key: reloaded[key] for key in wanted if key in reloaded}
                    fresh.update({key: reloaded[key] for key in (ROW_DB, ROW_PK) if key in reloaded})
                    if earlier is not None and same_row(
                        earlier, reloaded[ROW_DB], row_pk_of(self.__dict__, policy), policy
                    ):
                        fresh = {**earlier, **fresh}
                    reloaded = fresh
                self.__dict__[SNAPSHOT_ATTR] = reloaded
                _read_in(self, earlier, read)
        except Exception as exc:
            _failed(exc)

    setattr(refresh_from_db, _MARK, True)
    return refresh_from_db


def _read_in(instance: Model, earlier: Snapshot | None, read: set[str]) -> None:
    """Settle what a refresh read (the attributes ``read``): for good in autocommit; inside a transaction only
    until it rolls back. The row may then hold what the refresh read (another transaction's committed
    change) or what ``earlier`` says (when it read this transaction's own writes): which, is not known, so a
    rollback leaves these attributes unknown, and undoes what earlier saves of the transaction wrote to the
    others (see provisional.py)."""
    marker = commit_marker(instance._state.db or DEFAULT_DB_ALIAS)
    if marker is None:
        instance.__dict__.pop(UNDO_ATTR, None)  # read from a committed row: nothing earlier is left to undo
    else:
        kept = None if earlier is None else {key: value for key, value in earlier.items() if key not in read}
        note_provisional(instance.__dict__, kept, marker, marker.outcome)


def _failed(exc: Exception) -> None:
    pipeline.reporter.problem("CAPTURE_FAILED", "crud:load", error=f"{type(exc).__name__}: {exc}")
