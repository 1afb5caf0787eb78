"""Rows the database deletes or changes by itself when a row they point to is deleted: foreign keys with
``on_delete=DB_CASCADE``, ``DB_SET_NULL`` or ``DB_SET_DEFAULT`` (Django 6.1 and later).

Django leaves these rows to the database (the ``ON DELETE`` clause of the foreign key) and sends no signal
for them. When such a relation leads to an audited model, the deletion collector's ``delete()`` is wrapped:
inside its transaction, before its first ``DELETE``, one ``SELECT`` per relation reads the primary keys of
the rows the database is about to delete or change (following chains of ``DB_CASCADE``), and once the
delete has run they are recorded like the collector's own: a ``BULK_DELETE`` (``"cascade": true``) of the
rows deleted, a ``QUERYSET_UPDATE`` of the foreign key set to NULL or to its default, each saying
``"on_delete"``, emitted when the transaction commits. A delete that reaches no such relation costs a
dictionary look-up per model, and no query.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from django.db import models, transaction
from django.db.models import deletion

from ..dispatch import pipeline
from . import bulk, options
from .chunks import sorted_pks
from .deletions import describe_origin
from .events import BULK_DELETE, Moment, moment
from .selection import ModelPolicy, policy_for

# Absent before Django 6.1: then there is nothing to wrap.
_DATABASE_ON_DELETE: type | None = getattr(deletion, "DatabaseOnDelete", None)
_MARK = "__activity_audit_db_deletes__"
# Primary keys per query when the rows deleted are given by their instances.
_KEYS_PER_QUERY = 500


class _Relation(NamedTuple):
    """A foreign key whose rows the database deletes or changes when the row it points to is deleted."""

    field: models.ForeignObject[Any, Any]
    action: str  # "DB_CASCADE", "DB_SET_NULL" or "DB_SET_DEFAULT"


class _Change(NamedTuple):
    """Rows of an audited model that the database is about to delete or change."""

    policy: ModelPolicy
    relation: _Relation
    pks: list[Any]


# Per model: its relations that lead to an audited model (rebuilt whenever the audited models change).
_relations: dict[type[models.Model], tuple[_Relation, ...]] = {}


def install() -> None:
    """Wrap ``Collector.delete`` once per process (Django 6.1 and later), and forget what is cached."""
    _relations.clear()
    if _DATABASE_ON_DELETE is None:
        return
    original = deletion.Collector.delete
    if getattr(original, _MARK, False):
        return
    wrapper = functools.wraps(original)(_wrap_delete(original))
    setattr(wrapper, _MARK, True)
    deletion.Collector.delete = wrapper  # type: ignore[method-assign,assignment]


def forget() -> None:
    """Drop the cached relations (the audited models changed)."""
    _relations.clear()


def _wrap_delete(original: Callable[[deletion.Collector], Any]) -> Callable[[deletion.Collector], Any]:
    def delete(self: deletion.Collector) -> Any:
        """The collector's delete, with the rows the database changes by itself read first and recorded
        after. A failure of the capture is reported and never touches the delete: the reads run in a
        savepoint of their own (on PostgreSQL a failed query would poison the transaction)."""
        if not pipeline.enabled:
            return original(self)
        try:
            roots = list(_deleted_row_sets(self))
            when, (_, origin) = moment(), describe_origin(self.origin)  # before the delete clears its pk
        except Exception as exc:
            _failed(exc)
            return original(self)
        if not roots:
            return original(self)
        with transaction.atomic(using=self.using, savepoint=False):
            changes = _read_changes_apart(self.using, roots)
            result = original(self)  # its atomic block joins this one
            if changes:
                try:
                    _record(self.using, when, origin, changes)
                except Exception as exc:
                    _failed(exc)
        return result

    return delete


def _read_changes_apart(alias: str, roots: list[models.QuerySet[Any]]) -> list[_Change]:
    """:func:`_read_changes` in a savepoint; nothing (reported) when it fails."""
    try:
        with transaction.atomic(using=alias):
            return _read_changes(roots)
    except Exception as exc:
        _failed(exc)
        return []


def _failed(exc: Exception) -> None:
    pipeline.reporter.problem("CAPTURE_FAILED", "crud:db_on_delete", error=f"{type(exc).__name__}: {exc}")


def _deleted_row_sets(collector: deletion.Collector) -> Iterator[models.QuerySet[Any]]:
    """The rows the collector deletes, as querysets of models that a database-side relation leaves from."""
    alias = collector.using
    for model, instances in collector.data.items():
        if relations_of(model) and instances:
            pks = [instance.pk for instance in instances]
            for start in range(0, len(pks), _KEYS_PER_QUERY):
                yield model._base_manager.using(alias).filter(pk__in=pks[start : start + _KEYS_PER_QUERY])
    for fast in collector.fast_deletes:
        if isinstance(fast, models.QuerySet) and relations_of(fast.model):
            yield fast


def _read_changes(row_sets: list[models.QuerySet[Any]]) -> list[_Change]:
    """The audited rows the database will delete or change when ``row_sets`` are deleted, read now."""
    changes: list[_Change] = []
    pending = row_sets
    while pending:
        deeper: list[models.QuerySet[Any]] = []
        for rows in pending:
            for relation in relations_of(rows.model):
                field = relation.field
                hit = field.model._base_manager.using(rows.db).filter(
                    **{f"{field.name}__in": rows.values(field.target_field.attname)}
                )
                policy = policy_for(field.model)
                if policy is not None:
                    pks = list(hit.values_list("pk", flat=True))
                    if not pks:
                        continue
                    changes.append(_Change(policy, relation, pks))
                if relation.action == "DB_CASCADE" and relations_of(field.model):
                    deeper.append(hit)
        pending = deeper
    return changes


def _record(alias: str, when: Moment, origin: dict[str, Any], changes: list[_Change]) -> None:
    """One record per model deleted and per foreign key changed, at commit."""
    deleted: dict[ModelPolicy, list[Any]] = {}
    for change in changes:
        action, field = change.relation.action, change.relation.field
        if action == "DB_CASCADE":
            deleted.setdefault(change.policy, []).extend(change.pks)
            continue
        value = None if action == "DB_SET_NULL" else _default_of(field)
        listed = sorted_pks(change.pks) if options.current.wants_pks else None
        assignment = {field.name: value}
        bulk.record_update(alias, change.policy, when, listed, assignment, len(change.pks), on_delete=action)
    for policy, pks in deleted.items():
        unique = sorted_pks(dict.fromkeys(pks))
        bulk.emit_bulk(
            alias, policy, when, BULK_DELETE, "delete", len(unique),
            unique if options.current.wants_pks else None, None,
            cascade=True, origin=origin, on_delete="DB_CASCADE",
        )  # fmt: skip


def _default_of(field: models.ForeignObject[Any, Any]) -> Any:
    """The value ``DB_SET_DEFAULT`` writes: the field's ``db_default`` (a plain value when it is one)."""
    default = field.db_default
    return default.value if isinstance(default, models.Value) else default


def relations_of(model: type[models.Model]) -> tuple[_Relation, ...]:
    """The database-side relations to ``model`` that lead to an audited model, directly or through a chain
    of ``DB_CASCADE`` (cached)."""
    found = _relations.get(model)
    if found is None:
        found = _relations[model] = _find_relations(model, frozenset())
    return found


def _find_relations(model: type[models.Model], seen: frozenset[type[models.Model]]) -> tuple[_Relation, ...]:
    if _DATABASE_ON_DELETE is None or model in seen:
        return ()
    seen = seen | {model}
    found = []
    for related in model._meta.related_objects:
        if not (related.one_to_many or related.one_to_one) or related.field.model is None:
            continue
        on_delete = related.field.remote_field.on_delete
        if not isinstance(on_delete, _DATABASE_ON_DELETE):
            continue
        action = str(on_delete)  # its name: DB_CASCADE, DB_SET_NULL or DB_SET_DEFAULT
        child = related.field.model
        leads_on = action == "DB_CASCADE" and bool(_find_relations(child, seen))
        if policy_for(child) is not None or leads_on:
            found.append(_Relation(related.field, action))
    return tuple(found)
