"""The CRUD record: the seed's fields, then who, where and what changed (schema in docs/crud.md).

Every record is built on the caller thread at the moment of the change, so its ``timestamp``, ``actor``,
``user`` and ``request_id`` are those of the change even when it is emitted later, at commit.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, NamedTuple

from ..actor import Actor, actor_or_unknown
from ..context import current
from ..records import now

if TYPE_CHECKING:
    from django.db import models

    from .selection import ModelPolicy

CRUD_LOGGER = "audit.crud"
AUDIT_LEVEL = "AUDIT"

# Event types (docs/crud.md has one example of each).
CREATE = "CREATE"
UPDATE = "UPDATE"
DELETE = "DELETE"
M2M_ADD = "M2M_ADD"
M2M_REMOVE = "M2M_REMOVE"
M2M_CLEAR = "M2M_CLEAR"
BULK_CREATE = "BULK_CREATE"
BULK_UPDATE = "BULK_UPDATE"
QUERYSET_UPDATE = "QUERYSET_UPDATE"
BULK_DELETE = "BULK_DELETE"
LOGIN = "LOGIN"
LOGOUT = "LOGOUT"
LOGIN_FAILED = "LOGIN_FAILED"


class Moment(NamedTuple):
    """When and on whose behalf a change happened."""

    timestamp: dt.datetime
    actor: Actor
    request_id: str | None


def moment() -> Moment:
    """The time, actor and request of the current thread or task, now."""
    context = current()
    return Moment(now(), actor_or_unknown("crud", context), context.request_id)


def crud_record(
    event_type: str,
    model_name: str,
    model_label: str,
    instance_id: str | None,
    db: str | None,
    when: Moment,
    message: str | None = None,
    changes: Any = None,
    **fields: Any,
) -> dict[str, Any]:
    """One ``audit.crud`` record in the documented key order; ``fields`` follow ``db``.

    The record owns its ``user`` (a copy: the records of one bulk operation share their moment, and a
    plugin may change a record in place).
    """
    user = when.actor.user
    record: dict[str, Any] = {
        "timestamp": when.timestamp,
        "level": AUDIT_LEVEL,
        "name": CRUD_LOGGER,
        "message": message or f"{event_type} event for {model_name} (id: {instance_id})",
        "model": model_name,
        "event_type": event_type,
        "instance_id": instance_id,
        "user": None if user is None else dict(user),
        "extra": {},
        "model_label": model_label,
        "changes": {} if changes is None else changes,
        "request_id": when.request_id,
        "actor": when.actor.name,
        "db": db,
    }
    if when.actor.error is not None:
        record["actor_error"] = when.actor.error
    if fields:
        record.update(fields)
    return record


def row_record(
    event_type: str,
    policy: ModelPolicy,
    instance: models.Model,
    db: str,
    changes: Any,
    **fields: Any,
) -> dict[str, Any]:
    """The record of one change to the row ``instance``, made now on the current thread or task.

    ``changes`` is a dict, or a :class:`~activity_audit.deferred.Pending` that builds one on the worker.
    """
    pk = instance.pk
    if type(pk) is not policy.pk_type:
        pk = policy.canonical_pk(pk)
    instance_id = instance_id_of(pk)
    return crud_record(
        event_type, policy.name, policy.label, instance_id, db, moment(), None, changes, **fields
    )


def bulk_message(event_type: str, model_name: str, count: int) -> str:
    """``"BULK_DELETE event for Book (3 rows)"``, ``"... (1 row)"``."""
    return f"{event_type} event for {model_name} ({count} {'row' if count == 1 else 'rows'})"


def instance_id_of(pk: Any) -> str | None:
    """The record's ``instance_id``: the primary key as a string (as the seed wrote UUIDs), or None."""
    return None if pk is None else str(pk)
