"""The model-signal receivers, and connecting them to exactly the audited models.

Receivers are strong (``weak=False``, so they survive ``DEBUG = False`` and garbage collection) and carry a
``dispatch_uid``, so connecting twice is harmless. ``post_save`` and ``post_delete`` are connected per
audited model (``sender=model``): models that are not audited pay nothing, and keep Django's fast delete
path (a ``post_delete`` receiver for every sender would make Django load every row of every cascade).
``m2m_changed`` is connected once for all senders. The loaded values are taken by loading.py, not by a
``post_init`` receiver, so that instances built with ``Model(...)`` pay nothing.

Every receiver swallows its own failures: they are reported through the pipeline's reporter and the user's
save or delete goes on.

The ``post_save`` and ``post_delete`` receivers run before the project's own (:func:`_run_first`). A project
receiver that saves the instance again (a slug from the new pk) would otherwise run first: its save would be
recorded before the ``CREATE``, without the snapshot the ``CREATE`` stores, and the ``CREATE`` would show
values the ``INSERT`` did not write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models
from django.db.models import signals
from django.dispatch import Signal

from ..dispatch import pipeline
from . import deletions, m2m, options
from .events import CREATE, DELETE, UPDATE, row_record
from .provisional import note_provisional
from .selection import policy_for
from .snapshots import SNAPSHOT_ATTR, deleted_changes, record_created, updated_changes, vendor_of
from .transactions import emit_on_commit

_UID = "activity_audit.crud"

_connected: set[type[models.Model]] = set()


def on_post_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    using: str,
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    """``CREATE`` with every field, or ``UPDATE`` with the fields that changed (nothing when none did)."""
    try:
        policy = policy_for(sender)
        if policy is None:
            return
        vendor = vendor_of(using)
        if created:
            emit_on_commit(
                row_record(CREATE, policy, instance, using, record_created(instance, policy, vendor)), using
            )
            return
        changes, after, cut, changed, before = updated_changes(instance, policy, update_fields, vendor, using)
        instance.__dict__[SNAPSHOT_ATTR] = after
        if changes or options.current.keep_empty_updates:
            record = (
                row_record(UPDATE, policy, instance, using, changes, truncated=True)
                if cut
                else row_record(UPDATE, policy, instance, using, changes)
            )
            callback = emit_on_commit(record, using)
            if callback is not None and changed:  # undone if the transaction rolls back
                note_provisional(instance.__dict__, before, callback, callback.outcome)
    except Exception as exc:
        _failed("post_save", exc)


def on_post_delete(
    sender: type[models.Model], instance: models.Model, using: str, origin: Any = None, **kwargs: Any
) -> None:
    """``DELETE`` for the row deleted by name; the other rows of the operation go to a ``BULK_DELETE``."""
    try:
        policy = policy_for(sender)
        if policy is None or m2m.in_progress(sender):
            return
        if origin is None or origin is instance:
            changes = deleted_changes(instance, policy, using)
            if changes is None:  # never loaded nor saved here: what the row held is not known
                record = row_record(DELETE, policy, instance, using, {}, old_values_unknown=True)
            else:
                record = row_record(DELETE, policy, instance, using, changes)
            emit_on_commit(record, using)
        else:
            deletions.add_row(origin, policy, instance.pk, using)
    except Exception as exc:
        _failed("post_delete", exc)


def connect(audited: Iterable[type[models.Model]]) -> None:
    """Connect the receivers to exactly ``audited`` (and disconnect models no longer audited)."""
    wanted = set(audited)
    for model in _connected - wanted:
        for signal in (signals.post_save, signals.post_delete):
            signal.disconnect(sender=model, dispatch_uid=_UID)
    for model in wanted - _connected:
        signals.post_save.connect(on_post_save, sender=model, weak=False, dispatch_uid=_UID)
        signals.post_delete.connect(on_post_delete, sender=model, weak=False, dispatch_uid=_UID)
    for signal in (signals.post_save, signals.post_delete):
        _run_first(signal)
    _connected.clear()
    _connected.update(wanted)
    if wanted:
        signals.m2m_changed.connect(m2m.on_m2m_changed, weak=False, dispatch_uid=_UID)
    else:
        signals.m2m_changed.disconnect(dispatch_uid=_UID)


def _run_first(signal: Signal) -> None:
    """Move this package's receivers of ``signal`` before every other one, keeping the order of the rest.

    Django calls a signal's receivers in the order of its ``receivers`` list (entries keyed by
    ``(dispatch_uid, sender id)`` since Django 1.x); it has no public way to connect a receiver first.
    """
    with signal.lock:
        ours = [entry for entry in signal.receivers if entry[0][0] == _UID]
        if not ours or signal.receivers[: len(ours)] == ours:
            return
        signal.receivers = ours + [entry for entry in signal.receivers if entry[0][0] != _UID]
        signal.sender_receivers_cache.clear()


def _failed(where: str, exc: Exception) -> None:
    pipeline.reporter.problem("CAPTURE_FAILED", f"crud:{where}", error=f"{type(exc).__name__}: {exc}")
