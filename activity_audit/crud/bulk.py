"""Bulk writes that send no model signal: ``QuerySet.update()``, ``bulk_create()`` and ``bulk_update()``.

:func:`install` wraps these three methods of :class:`django.db.models.QuerySet` once (managers look them
up by name, so ``Book.objects.update(...)`` and ``aupdate()`` go through the wrappers too), and
``UpdateQuery.update_batch``, with which Django's deletion collector sets the foreign key of rows it has
loaded (``on_delete=SET_DEFAULT``, ``SET(callable)``; ``SET_NULL`` goes through ``QuerySet.update()``).
Users' model classes, managers and migrations are never touched. Each wrapper calls the original with the
same arguments and returns its result unchanged; exceptions pass through untouched; a failure of the
capture itself is reported and swallowed.

The objects a reverse foreign-key manager's ``add()`` moves with ``update()`` get a snapshot holding their new
key (related.py).

Each operation on an audited model writes exactly one record (split in parts of ``BULK_CHUNK_SIZE`` pks):
``QUERYSET_UPDATE``, ``BULK_CREATE`` or ``BULK_UPDATE``. A bulk write that Django makes inside another one
(``bulk_update()`` runs ``update()`` per batch) or for an m2m change (the link table's ``bulk_create()``) is
not recorded again. ``QuerySet.delete()`` needs no wrapper: Django sends ``post_delete`` per row, see
deletions.py.

What each capture costs, by ``BULK_DETAIL``:

``"rows"`` (default)
    ``update()``: one ``SELECT`` of the pks of the matching rows, before the update. ``update_batch()``: the
    pks it is given (no query). ``bulk_create()``: the values of every row (read from the objects, no
    query). ``bulk_update()``: the old and new values of the listed fields of every object, from the loaded
    snapshots (no query); on a filtered queryset, one ``SELECT`` of the matching pks before each batch's
    ``UPDATE``, so that only the rows written are recorded.
``"pks"``
    the same queries, pks without values.
``"count"``
    no query at all: counts, and the values ``update()`` set.

A ``bulk_update()`` whose written rows cannot be told (it wrote fewer rows than listed, and no ``SELECT``
says which) records what was submitted with ``"outcome_per_row_known": false``, and the listed fields are
dropped from the snapshots of its objects: their next save reports them with ``"old_unknown": true``.
"""

from __future__ import annotations

import contextvars
import copy
import functools
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import connections, router
from django.db.models import Model, QuerySet
from django.db.models.sql.subqueries import UpdateQuery

from ..dispatch import pipeline
from . import m2m, options, related, snapshots
from .chunks import parts, sorted_pks, with_part
from .events import BULK_CREATE, BULK_UPDATE, QUERYSET_UPDATE, Moment, bulk_message, crud_record, moment
from .provisional import UNDO_ATTR, note_provisional
from .selection import FieldSpec, ModelPolicy, is_masked, policy_for
from .transactions import commit_marker, emit_on_commit

_MARK = "__activity_audit_wrapped__"

# True while one of the wrapped methods runs in this thread or task: nested bulk writes are part of it.
_inside_bulk_write: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "activity_audit_bulk", default=False
)


class _Batches:
    """What each ``UPDATE`` of one ``bulk_update()`` of a filtered queryset wrote: the pks its filter matched
    just before it (one ``SELECT``, in Django's transaction), and the number of rows it updated.

    Django runs ``queryset.filter(pk__in=...).update(...)`` per batch; the ``update()`` wrapper hands those
    calls to :meth:`run` while the ``bulk_update()`` lasts.
    """

    __slots__ = ("model", "seen")

    def __init__(self, model: type[Model]) -> None:
        self.model = model
        self.seen: list[tuple[list[Any] | None, int]] = []  # (matched pks or None, rows updated) per batch

    def run(self, original: Callable[..., int], queryset: QuerySet[Any], kwargs: dict[str, Any]) -> int:
        try:
            matched: list[Any] | None = _matching_pks(queryset)
        except Exception as exc:
            _failed(exc)
            matched = None
        count = original(queryset, **kwargs)
        self.seen.append((matched, count))
        return count


# The batches of the bulk_update() of a filtered queryset running in this thread or task, if any.
_filtered_bulk_update: contextvars.ContextVar[_Batches | None] = contextvars.ContextVar(
    "activity_audit_filtered_bulk_update", default=None
)


def install() -> None:
    """Wrap the three bulk methods of ``QuerySet`` and ``UpdateQuery.update_batch``, and the ``add()`` of
    reverse foreign-key managers (related.py), once per process."""
    _wrap(QuerySet, "update", _wrap_update)
    _wrap(QuerySet, "bulk_create", _wrap_bulk_create)
    _wrap(QuerySet, "bulk_update", _wrap_bulk_update)
    _wrap(UpdateQuery, "update_batch", _wrap_update_batch)
    related.install()


def _wrap(owner: type, name: str, make_wrapper: Callable[[Any], Any]) -> None:
    """Replace ``owner.name`` by ``make_wrapper(original)``, unless it is wrapped already."""
    original = getattr(owner, name)
    if getattr(original, _MARK, False):
        return
    wrapper = functools.wraps(original)(make_wrapper(original))
    setattr(wrapper, _MARK, True)
    setattr(owner, name, wrapper)


def _audited(queryset: QuerySet[Any]) -> ModelPolicy | None:
    """The policy of the queryset's model when this write is to be recorded here, else None."""
    if not pipeline.enabled or _inside_bulk_write.get():
        return None
    model = queryset.model
    if m2m.claim(model):
        return None
    return policy_for(model)


def _audited_batch(query: UpdateQuery) -> ModelPolicy | None:
    """The policy of the model an ``update_batch()`` writes to when it is to be recorded here, else None.

    Not when a recorded bulk write runs it (none of Django's does today: only its deletion collector calls
    ``update_batch()``).
    """
    if not pipeline.enabled or _inside_bulk_write.get() or query.model is None:
        return None
    return policy_for(query.model)


def _wrap_update(original: Callable[..., int]) -> Callable[..., int]:
    def update(self: QuerySet[Any], **kwargs: Any) -> int:
        policy = _audited(self)
        if policy is None:
            batches = _filtered_bulk_update.get()
            if batches is not None and batches.model is self.model:
                return batches.run(original, self, kwargs)  # one batch of a recorded bulk_update()
            return original(self, **kwargs)
        when, pks = _before(lambda: _pks_of(self))
        token = _inside_bulk_write.set(True)
        try:
            count = original(self, **kwargs)
        finally:
            _inside_bulk_write.reset(token)
        _after(lambda: record_update(self.db, policy, when, pks, kwargs, count))
        return count

    return update


def _wrap_update_batch(original: Callable[..., None]) -> Callable[..., None]:
    def update_batch(self: UpdateQuery, pk_list: list[Any], values: dict[str, Any], using: str) -> None:
        policy = _audited_batch(self)
        if policy is None:
            return original(self, pk_list, values, using)
        when, _ = _before(lambda: None)
        token = _inside_bulk_write.set(True)
        try:
            original(self, pk_list, values, using)
        finally:
            _inside_bulk_write.reset(token)
        _after(lambda: _record_update_batch(using, policy, when, pk_list, values))
        return None

    return update_batch


def _wrap_bulk_create(original: Callable[..., list[Model]]) -> Callable[..., list[Model]]:
    def bulk_create(self: QuerySet[Any], objs: Iterable[Model], *args: Any, **kwargs: Any) -> list[Model]:
        policy = _audited(self)
        if policy is None:
            return original(self, objs, *args, **kwargs)
        objs = list(objs)  # Django does the same first; a generator must not be consumed twice
        when, _ = _before(lambda: None)
        token = _inside_bulk_write.set(True)
        try:
            created = original(self, objs, *args, **kwargs)
        finally:
            _inside_bulk_write.reset(token)
        _after(lambda: _record_bulk_create(self, policy, when, created, kwargs))
        return created

    return bulk_create


def _wrap_bulk_update(original: Callable[..., int]) -> Callable[..., int]:
    def bulk_update(
        self: QuerySet[Any], objs: Iterable[Model], fields: Sequence[str], *args: Any, **kwargs: Any
    ) -> int:
        policy = _audited(self)
        if policy is None:
            return original(self, objs, fields, *args, **kwargs)
        objs = tuple(objs)  # Django does the same first
        when, _ = _before(lambda: None)
        batches = _Batches(self.model) if options.current.wants_pks and self.query.where else None
        token = _inside_bulk_write.set(True)
        batches_token = _filtered_bulk_update.set(batches)
        try:
            count = original(self, objs, fields, *args, **kwargs)
        finally:
            _filtered_bulk_update.reset(batches_token)
            _inside_bulk_write.reset(token)
        batch_size = args[0] if args else kwargs.get("batch_size")
        _after(lambda: _record_bulk_update(self, policy, when, objs, fields, count, batch_size, batches))
        return count

    return bulk_update


# --- capture: never raises ---------------------------------------------------------------------------


def _before(read_pks: Callable[[], list[Any] | None]) -> tuple[Moment | None, list[Any] | None]:
    try:
        return moment(), read_pks()
    except Exception as exc:
        _failed(exc)
        return None, None


def _after(capture: Callable[[], None]) -> None:
    try:
        capture()
    except Exception as exc:
        _failed(exc)


def _failed(exc: Exception) -> None:
    pipeline.reporter.problem("CAPTURE_FAILED", "crud:bulk", error=f"{type(exc).__name__}: {exc}")


def _pks_of(queryset: QuerySet[Any]) -> list[Any] | None:
    """The pks an ``update()`` is about to change: one SELECT, unless ``BULK_DETAIL = "count"``.

    Read from the database the ``UPDATE`` will write to (not a read replica: it may lag, and cannot see the
    rows of the current transaction), each pk once (a filter across a join repeats rows). Without the
    queryset's ``select_for_update()``, which Django's ``update()`` ignores too: a locking read could wait,
    fail (``nowait``, or outside a transaction) or skip rows (``skip_locked``) where the ``UPDATE`` does not.
    """
    if not options.current.wants_pks:
        return None
    return _matching_pks(queryset)


def _matching_pks(queryset: QuerySet[Any]) -> list[Any]:
    """The pks of the rows ``queryset`` matches, read as :func:`_pks_of` says (one SELECT, in any case)."""
    alias = queryset._db or router.db_for_write(queryset.model, **queryset._hints)  # type: ignore[attr-defined]
    matching = queryset.using(alias)  # a clone: its query may be changed
    if matching.query.select_for_update:
        query = matching.query
        query.select_for_update = query.select_for_update_nowait = False
        query.select_for_update_skip_locked = query.select_for_no_key_update = False
        query.select_for_update_of = ()
    return list(dict.fromkeys(matching.values_list("pk", flat=True)))


def emit_bulk(
    alias: str,
    policy: ModelPolicy,
    when: Moment | None,
    event_type: str,
    operation: str,
    count: int,
    pks: list[Any] | None,
    rows: list[Any] | None,
    cut_rows: Collection[int] = (),
    **fields: Any,
) -> None:
    """Emit the records of one bulk operation on database ``alias``, split in chunks, when its transaction
    commits; ``cut_rows`` are the indexes of ``rows`` holding a value cut to the capture limits (their
    chunk's record says ``"truncated": true``)."""
    if count == 0:
        return  # nothing changed, nothing to record
    when = when or moment()
    message = bulk_message(event_type, policy.name, count)
    listed = len(pks) if pks is not None else len(rows) if rows is not None else 0
    for chunk, part in parts(range(listed), options.current.chunk_size):
        # Each part's record owns its values: a plugin may change a record in place, at once in autocommit.
        shared = fields if part is None else copy.deepcopy(fields)
        detail: dict[str, Any] = {"operation": operation, "count": count, **shared}
        if pks is not None:
            detail["pks"] = [pks[index] for index in chunk]
        if rows is not None:
            detail["rows"] = [rows[index] for index in chunk]
            if cut_rows and any(index in cut_rows for index in chunk):
                detail["truncated"] = True
        record = crud_record(
            event_type, policy.name, policy.label, None, alias, when, message, **with_part(detail, part)
        )
        emit_on_commit(record, alias)


def record_update(
    alias: str,
    policy: ModelPolicy,
    when: Moment | None,
    pks: list[Any] | None,
    assignments: dict[str, Any],
    count: int,
    **more: Any,
) -> None:
    """The ``QUERYSET_UPDATE`` of ``count`` rows (``pks``, when read) set to ``assignments`` on ``alias``;
    ``more`` are further fields of the record."""
    values: dict[str, Any] = {}
    any_cut = False
    vendor = snapshots.vendor_of(alias)
    for name, value in assignments.items():
        target = _assigned_field(policy, name)
        if target is None:
            continue
        key, spec, hidden = target
        if hidden:
            values[key] = snapshots.masked()
        else:
            if spec is not None:
                value = snapshots.assigned_form(spec, value, vendor)
            values[key], cut = snapshots.plain_cut(value)
            any_cut = any_cut or cut
    fields: dict[str, Any] = {"values": values, **more}
    if any_cut:
        fields["truncated"] = True
    if pks is not None and len(pks) != count:
        # another transaction changed matching rows between the SELECT and the UPDATE
        fields["pks_complete"] = False
    emit_bulk(alias, policy, when, QUERYSET_UPDATE, "update", count, pks, None, **fields)


def _record_update_batch(
    alias: str, policy: ModelPolicy, when: Moment | None, pk_list: list[Any], values: dict[str, Any]
) -> None:
    """The ``QUERYSET_UPDATE`` of an ``update_batch()``: the rows Django's collector loaded, by pk.

    Django gives no count back; the rows are those it loaded for the delete, so their number is the count.
    """
    pks = sorted_pks(dict.fromkeys(pk_list))
    record_update(alias, policy, when, pks if options.current.wants_pks else None, values, len(pks))


def _assigned_field(policy: ModelPolicy, name: str) -> tuple[str, FieldSpec | None, bool] | None:
    """How the keyword ``name`` of an ``update()`` shows in its record: ``(key, spec, masked)``, or None when
    ``EXCLUDE_FIELDS`` leaves the field out.

    A field is known by its name or its attname (``author`` / ``author_id``), and the settings may use either
    spelling: an audited field is judged by its spec (which accounts for both); a field without one (excluded,
    or the primary key) by both of its spellings.
    """
    spec = policy.by_name.get(name)
    if spec is not None:
        return spec.name, spec, spec.masked
    try:
        model_field = policy.model._meta.get_field(name)
    except FieldDoesNotExist:
        spellings = {name}
        key = name
    else:
        key = model_field.name
        spellings = {key, getattr(model_field, "attname", key)}
    if not spellings.isdisjoint(policy.excluded):
        return None
    return key, None, any(is_masked(policy, spelling) for spelling in spellings)


def _record_bulk_create(
    queryset: QuerySet[Any],
    policy: ModelPolicy,
    when: Moment | None,
    created: list[Model],
    kwargs: dict[str, Any],
) -> None:
    wants = options.current
    pks = [policy.canonical_pk(obj.pk) for obj in created] if wants.wants_pks else None
    vendor = snapshots.vendor_of(queryset.db)
    rows: list[dict[str, Any]] | None = None
    cut_rows: set[int] = set()
    if wants.wants_rows:
        rows = []
        for index, obj in enumerate(created):
            row, cut = snapshots.row_values(obj, policy, vendor)
            rows.append(row)
            if cut:
                cut_rows.add(index)
    fields: dict[str, Any] = {}
    if pks is not None and any(pk is None for pk in pks):
        # Not returned by the database (MySQL, or a conflict skipped the row): no pk list rather than nulls.
        pks = None
        fields["pks_returned"] = False
    if kwargs.get("ignore_conflicts") or kwargs.get("update_conflicts"):
        # Django cannot tell which rows were inserted and which met a conflict (skipped, or updated with
        # update_fields only): the record lists what was submitted and says so.
        fields.update(_conflict_fields(policy, kwargs))
        for obj in created:  # what each row now holds is not known: a snapshot read earlier is stale
            obj.__dict__.pop(snapshots.SNAPSHOT_ATTR, None)
            obj.__dict__.pop(UNDO_ATTR, None)
    else:
        for obj in created:
            snapshots.remember(obj, policy, vendor)  # saved now: later saves diff against these values
    emit_bulk(
        queryset.db, policy, when, BULK_CREATE, "bulk_create", len(created), pks, rows, cut_rows, **fields
    )


def _conflict_fields(policy: ModelPolicy, kwargs: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any]
    if kwargs.get("ignore_conflicts"):
        fields = {"ignore_conflicts": True}
    else:
        fields = {"update_conflicts": True}
        for key in ("update_fields", "unique_fields"):
            names = kwargs.get(key) or ()
            fields[key] = [policy.by_name[name].name if name in policy.by_name else name for name in names]
    fields["outcome_per_row_known"] = False
    return fields


def _record_bulk_update(
    queryset: QuerySet[Any],
    policy: ModelPolicy,
    when: Moment | None,
    objs: tuple[Model, ...],
    field_names: Sequence[str],
    count: int,
    batch_size: int | None,
    batches: _Batches | None,
) -> None:
    """The ``BULK_UPDATE`` of the rows written, and the snapshots of their objects moved on.

    When which rows were written is not known, the record lists every row submitted and says
    ``"outcome_per_row_known": false``, and the listed fields are dropped from every object's snapshot.
    """
    wants = options.current
    vendor = snapshots.vendor_of(queryset.db)
    size = _batch_size(queryset, objs, field_names, batch_size)
    listed = _listed_per_batch(policy, objs, size)
    written = _written_per_batch(listed, count, batches)
    winners = _winning_objects(policy, objs, size, listed if written is None else written)
    rows: list[Any] | None = [] if wants.wants_rows else None
    duplicates: list[Any] = []
    cut_rows: set[int] = set()
    marker = commit_marker(queryset.db) if written is not None else None
    for pk, (winner, listed_objs) in winners.items():
        changes, after, cut, changed, before = snapshots.updated_changes(
            winner, policy, field_names, vendor, queryset.db
        )
        if cut and rows is not None:
            cut_rows.add(len(rows))
        if written is not None:
            winner.__dict__[snapshots.SNAPSHOT_ATTR] = after
            if marker is not None and changed:  # undone if the transaction rolls back
                note_provisional(winner.__dict__, before, marker, marker.outcome)
            for loser in listed_objs:
                if loser is not winner:  # it changed nothing, and what it holds is not what the row holds
                    loser.__dict__.pop(snapshots.SNAPSHOT_ATTR, None)
        if len(listed_objs) > 1:
            duplicates.append(pk)
        if rows is not None:
            row: dict[str, Any] = {"pk": pk, "changes": changes}
            if len(listed_objs) > 1:
                row["listed_more_than_once"] = True
            rows.append(row)
    pks = list(winners) if wants.wants_pks else None
    fields: dict[str, Any] = {
        "fields": [policy.by_name[name].name for name in field_names if name in policy.by_name]
    }
    if duplicates:
        fields["duplicate_pks"] = sorted_pks(duplicates)
    if written is None:
        _forget_fields(policy, objs, field_names)
        fields["outcome_per_row_known"] = False
    emit_bulk(queryset.db, policy, when, BULK_UPDATE, "bulk_update", count, pks, rows, cut_rows, **fields)


def _listed_per_batch(policy: ModelPolicy, objs: tuple[Model, ...], size: int) -> list[set[Any]]:
    """The pks of each batch ``bulk_update()`` runs, as the rows hold them."""
    return [
        {policy.canonical_pk(obj.pk) for obj in objs[start : start + size]}
        for start in range(0, len(objs), size)
    ]


def _written_per_batch(listed: list[set[Any]], count: int, batches: _Batches | None) -> list[set[Any]] | None:
    """The pks each batch's ``UPDATE`` wrote, or None when that is not known.

    ``count`` (the rows updated, summed over the batches) equal to the number of pks listed per batch means
    every listed row was written, and 0 that none was. Otherwise only the ``SELECT`` before each batch of a
    filtered queryset tells which were; when it matched another number of rows than the ``UPDATE`` updated
    (a concurrent writer), or did not run, it is not known.
    """
    if count == sum(len(pks) for pks in listed):
        return listed
    if count == 0:
        return [set() for _ in listed]
    if batches is None or len(batches.seen) != len(listed):
        return None
    written = []
    for pks, (matched, updated) in zip(listed, batches.seen, strict=True):
        found = pks.intersection(matched or ())
        if matched is None or len(found) != updated:
            return None
        written.append(found)
    return written


def _winning_objects(
    policy: ModelPolicy, objs: tuple[Model, ...], size: int, written: list[set[Any]]
) -> dict[Any, tuple[Model, list[Model]]]:
    """Per pk written, in the order first listed: the object whose values the row got, and every object
    listed for it. ``written`` holds the pks each batch of ``size`` objects wrote.

    Django splits the objects in batches (``batch_size``, and the database's limit on query parameters) and
    runs one ``UPDATE ... CASE`` per batch: within a batch the first object listed for a row wins, and a
    later batch overwrites an earlier one.
    """
    listed: dict[Any, list[Model]] = {}
    winning: dict[Any, tuple[int, Model]] = {}
    for index, obj in enumerate(objs):
        batch = index // size
        pk = policy.canonical_pk(obj.pk)
        listed.setdefault(pk, []).append(obj)
        if pk in written[batch] and (pk not in winning or winning[pk][0] != batch):
            winning[pk] = (batch, obj)  # the first listed in a batch that ran after the previous winner's
    return {pk: (winning[pk][1], objs_of_pk) for pk, objs_of_pk in listed.items() if pk in winning}


def _forget_fields(policy: ModelPolicy, objs: tuple[Model, ...], field_names: Sequence[str]) -> None:
    """Drop ``field_names`` from the snapshots of ``objs`` (each gets a new dict): what their rows now hold
    in these fields is not known."""
    attnames = {policy.by_name[name].attname for name in field_names if name in policy.by_name}
    for obj in objs:
        snap = snapshots.loaded(obj)
        if snap is not None:
            obj.__dict__[snapshots.SNAPSHOT_ATTR] = {k: v for k, v in snap.items() if k not in attnames}


def _batch_size(
    queryset: QuerySet[Any], objs: tuple[Model, ...], field_names: Sequence[str], batch_size: int | None
) -> int:
    """The batch size ``bulk_update`` uses, computed as Django computes it."""
    opts = queryset.model._meta
    fields = [opts.pk, opts.pk, *(opts.get_field(name) for name in field_names)]
    limit = connections[queryset.db].ops.bulk_batch_size(fields, list(objs))
    return max(min(batch_size, limit) if batch_size else limit, 1)
