"""What a row held when it was loaded or last saved, kept on the instance, and the diffs it gives.

``post_init`` stores a snapshot of the audited field values in ``instance.__dict__`` under
:data:`SNAPSHOT_ATTR`; it costs one small dict per instance and no query. Immutable values (str, int,
Decimal, date, UUID, FK ids ...) are shared, not copied. Values that can change in place (JSON dicts and
lists) are frozen as their canonical JSON bytes (:class:`FrozenJson`, sorted keys), so
``book.metadata["k"] = 1`` is seen as a change and comparing two JSON values is one bytes comparison.
Files are kept by name, and a value of another type than the database returns (``price=0``) is converted
with ``field.to_python`` so that it compares and records as the database stores it. Fields deferred at
load time are missing from the snapshot.

A snapshot is never mutated once stored: every save stores a new dict, so ``copy.copy(instance)`` shares
nothing that could go wrong.

Values in records are plain JSON values (Decimal as an exact string, dates and times as ISO-8601, UUIDs as
strings, FKs as the related pk, files as names, JSON as a fresh copy), cut to ``MAX_FIELD_CHARS`` /
``MAX_ITEMS`` like every captured value. A masked field shows ``{"changed": true, "masked": true}``.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import math
import re
import uuid
from collections.abc import Collection
from typing import Any, NamedTuple

import orjson
from django.db import connections, models

from ..deferred import Pending
from ..encoding import Limits, Snapshotter
from .provisional import UNDO_ATTR, settled
from .selection import FILE, MUTABLE, FieldSpec, ModelPolicy

SNAPSHOT_ATTR = "_activity_audit_loaded"
# The row a snapshot holds the values of, kept in it under two keys that are never attribute names: its
# database alias and its primary key. A snapshot of another row (the instance saved to another database with
# ``save(using=...)``, or under another primary key) says nothing of the row written, and is not diffed
# against. Two plain values rather than one tuple: a dict of plain values is left alone by the garbage
# collector, which would otherwise walk every snapshot of every loaded instance.
ROW_DB = "\x00db"
ROW_PK = "\x00pk"

Snapshot = dict[str, Any]
Changes = dict[str, dict[str, Any]]

_MISSING = object()
_IMMUTABLE_TYPES = frozenset({str, int, float, bool, type(None), bytes})
_PASSED_AS_IS = frozenset({bool, type(None), dt.datetime, dt.date, uuid.UUID})
_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
_INT64 = range(-(2**63), 2**63)
_DEFAULT_OBJECT_TEXT = re.compile(r"<(?:[\w.]+\.)?(\w+) object at 0x[0-9a-fA-F]+>")

limits = Limits()


class FrozenJson(bytes):
    """A JSON value as canonical bytes: immutable, cheap to compare, decoded into a fresh copy on demand."""

    __slots__ = ()


class Computed(str):
    """A value the database computes from an expression (``F("count") + 1``, ``Now()``), kept as its text.

    What the row holds afterwards is not known without a query: a record shows the expression with
    ``"expression": true``, and the next change of the field reports ``"old_unknown": true``. Never equal
    to anything, so an expression saved twice (applied twice) is recorded twice.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__

    @classmethod
    def of(cls, expression: Any) -> Computed:
        """``expression`` as text; a part without a text of its own (a ``Subquery``, whose ``str()`` is the
        default ``<... object at 0x...>``) shows as its class name, ``Subquery(...)``: the same expression
        always reads the same, and no memory address reaches a record."""
        return cls(_DEFAULT_OBJECT_TEXT.sub(r"\1(...)", str(expression)))


def masked() -> dict[str, bool]:
    """The change of a field whose values are never written (a new dict each time: records are mutable)."""
    return {"changed": True, "masked": True}


def remember(instance: models.Model, policy: ModelPolicy, vendor: str | None = None) -> None:
    """Store the snapshot of ``instance`` as loaded (no ``vendor``) or just saved (see :func:`take`)."""
    instance.__dict__[SNAPSHOT_ATTR] = take(instance.__dict__, policy, vendor)


def take(values: dict[str, Any], policy: ModelPolicy, vendor: str | None = None) -> Snapshot:
    """Copy the audited attributes present in ``values`` (an instance's ``__dict__``).

    ``vendor`` (the database's, e.g. ``"postgresql"``) is given for values just saved: they are then brought
    to the form the row holds (see stored_forms.py), and decimals rounded to their field's places as that
    database stores them. Values loaded from a row are already in that form.
    """
    snap = {attname: values[attname] for attname in policy.attnames if attname in values}
    state = values.get("_state")
    snap[ROW_DB] = None if state is None else state.db
    pk = row_pk_of(values, policy)
    if pk is not _MISSING:
        snap[ROW_PK] = pk
    for spec in policy.mutables:
        if spec.attname in snap:
            snap[spec.attname] = _frozen(spec, snap[spec.attname])
    for attname in policy.files:
        value = snap.get(attname)
        if value is not None and type(value) is not str:
            snap[attname] = _file_name(value)
    for spec in policy.typed:
        value = snap.get(spec.attname)
        if value is not None and type(value) is not spec.python_type:
            snap[spec.attname] = _converted(spec, value)
    if vendor is not None:
        for spec in policy.normalised:
            value = snap.get(spec.attname)
            if value is not None and spec.normalise is not None:
                snap[spec.attname] = spec.normalise(value)
        for spec in policy.decimals:
            value = snap.get(spec.attname)
            if type(value) is decimal.Decimal:
                snap[spec.attname] = _rounded(spec, value, vendor)
    return snap


def loaded(instance: models.Model) -> Snapshot | None:
    """The snapshot stored on ``instance``, or None (an instance made before auditing started); the saves
    of transactions that rolled back undone (see :mod:`activity_audit.crud.provisional`)."""
    values = instance.__dict__
    if UNDO_ATTR in values:
        return settled(values, SNAPSHOT_ATTR)
    snap: Snapshot | None = values.get(SNAPSHOT_ATTR)
    return snap


def record_created(instance: models.Model, policy: ModelPolicy, vendor: str) -> Pending:
    """Store the snapshot of a new row and return its fields as changes: ``{"old": None, "new": value}``.

    The changes are built on the worker from the snapshot (which is never mutated once stored).
    """
    snap = take(instance.__dict__, policy, vendor)
    instance.__dict__[SNAPSHOT_ATTR] = snap
    instance.__dict__.pop(UNDO_ATTR, None)  # the row was just inserted: no earlier save is left to undo
    return Pending(whole_row, snap, policy, True, reports_cut=True)


def deleted_changes(instance: models.Model, policy: ModelPolicy, alias: str) -> Pending | None:
    """Every audited field of a row deleted from database ``alias``, as last loaded or saved: ``{"old":
    value, "new": None}``.

    Built on the worker, like :func:`record_created`. None when the instance was never loaded nor saved
    here (``Book(pk=7).delete()``): what the row held is not known, and its defaults would be made up; also
    when its snapshot is that of another row (loaded from another database).
    """
    snap = loaded(instance)
    if snap is None or not same_row(snap, alias, row_pk_of(instance.__dict__, policy), policy):
        return None
    return Pending(whole_row, snap, policy, False, reports_cut=True)


def whole_row(snap: Snapshot, policy: ModelPolicy, created: bool) -> tuple[Changes, bool]:
    """Every field of ``snap`` as a change from nothing (``created``) or to nothing (deleted), and whether a
    value had to be cut to the capture limits (that change then says ``"truncated": true``)."""
    fast, max_chars = _PASSED_AS_IS, limits.max_chars
    changes: Changes = {}
    any_cut = False
    for spec in policy.fields:
        if spec.attname not in snap:
            continue
        if spec.masked:
            changes[spec.name] = masked()
            continue
        value = snap[spec.attname]
        if type(value) is Computed:
            changes[spec.name] = (
                {"old": None, "new": str(value), "expression": True}
                if created
                else {"old": None, "new": None, "old_unknown": True}
            )
            continue
        cut = False
        if not (type(value) in fast or (type(value) is str and len(value) <= max_chars)):
            value, cut = plain_cut(value)  # the common case above needs no call
        change = {"old": None, "new": value} if created else {"old": value, "new": None}
        if cut:
            change["truncated"] = any_cut = True
        changes[spec.name] = change
    return changes, any_cut


class Diff(NamedTuple):
    """What one save changed (see :func:`updated_changes`)."""

    changes: Changes
    snapshot: Snapshot  # to keep on the instance
    cut: bool  # a value had to be cut to the capture limits (its change says ``"truncated": true``)
    changed: bool  # the snapshot differs from the one the instance held (see ``previous``)
    previous: Snapshot | None  # the snapshot the instance held before the save, None when it had none


def row_pk_of(values: dict[str, Any], policy: ModelPolicy) -> Any:
    """The primary key in an instance's ``__dict__`` (``values``), or ``_MISSING`` when it is not one value
    kept there (a composite primary key): then a snapshot's row is told by its database alone."""
    return values.get(policy.pk_attname, _MISSING)


def same_row(snap: Snapshot, alias: str | None, pk: Any, policy: ModelPolicy) -> bool:
    """True when ``snap`` holds the values of the row ``pk`` (see :func:`row_pk_of`) of database ``alias``,
    as far as it says."""
    db = snap.get(ROW_DB)
    if db is not None and db != alias:
        return False
    row_pk = snap.get(ROW_PK, _MISSING)
    if row_pk is _MISSING or pk is _MISSING:
        return True
    return bool(row_pk == pk or policy.canonical_pk(row_pk) == policy.canonical_pk(pk))


def updated_changes(
    instance: models.Model,
    policy: ModelPolicy,
    update_fields: Collection[str] | None,
    vendor: str,
    alias: str,
) -> Diff:
    """The fields a save changed, ``{"old": loaded value, "new": saved value}``, and the snapshot to keep.

    Only fields in ``update_fields`` are compared when it is given (the others were not written). A field
    whose loaded value is unknown (deferred at load time, loaded later, or computed by the database from an
    expression) is reported with ``"old": None`` and ``"old_unknown": true``. A field saved from an
    expression (``F("count") + 1``) shows the expression as ``"new"`` with ``"expression": true``.
    ``vendor`` is that of database ``alias``, the one written (decimals are rounded as it stores them). A
    snapshot of another row (loaded from another database, or under another primary key) is no ``old``: the
    fields are reported as unknown, as for an instance never loaded.
    """
    values = instance.__dict__
    previous = loaded(instance)
    pk = row_pk_of(values, policy)
    if previous is not None and not same_row(previous, alias, pk, policy):
        previous = None
    before = previous or {}
    after: Snapshot | None = None
    changes: Changes = {}
    any_cut = False
    for spec in policy.fields:
        attname = spec.attname
        if attname not in values:
            continue
        if update_fields is not None and spec.name not in update_fields and attname not in update_fields:
            continue
        value = values[attname]
        old = before.get(attname, _MISSING)
        if value is old:  # the very object loaded: unchanged (mutable JSON is held frozen, never identical)
            continue
        new = _stored_form(spec, value, vendor)
        if old is not _MISSING and type(old) is type(new) and _equal(old, new):
            continue
        if after is None:
            after = dict(before)
        after[attname] = new
        if spec.masked:
            changes[spec.name] = masked()
            continue
        new_plain, cut = plain_cut(new)
        change: dict[str, Any] = {"old": None, "new": new_plain}
        if old is _MISSING or type(old) is Computed:
            change["old_unknown"] = True
        else:
            change["old"], old_cut = plain_cut(old)
            cut = cut or old_cut
        if type(new) is Computed:
            change["expression"] = True
        if cut:
            change["truncated"] = any_cut = True
        changes[spec.name] = change
    snapshot = before if after is None else after
    if snapshot.get(ROW_DB) != alias or snapshot.get(ROW_PK, _MISSING) != pk:
        snapshot = {**snapshot, ROW_DB: alias}  # a new dict: a stored snapshot is never mutated
        if pk is _MISSING:
            snapshot.pop(ROW_PK, None)
        else:
            snapshot[ROW_PK] = pk
    return Diff(changes, snapshot, any_cut, after is not None, previous)


def row_values(instance: models.Model, policy: ModelPolicy, vendor: str) -> tuple[dict[str, Any], bool]:
    """``{field: value}`` of the audited fields of ``instance``, masked ones as the masked marker, and
    whether a value had to be cut to the capture limits."""
    values = instance.__dict__
    row: dict[str, Any] = {}
    any_cut = False
    for spec in policy.fields:
        if spec.attname not in values:
            continue
        if spec.masked:
            row[spec.name] = masked()
            continue
        row[spec.name], cut = plain_cut(_stored_form(spec, values[spec.attname], vendor))
        any_cut = any_cut or cut
    return row, any_cut


def _frozen(spec: FieldSpec, value: Any) -> Any:
    return freeze(value if spec.normalise is None or value is None else spec.normalise(value))


def freeze(value: Any) -> Any:
    """A JSON value as :class:`FrozenJson`; anything orjson cannot encode is deep-copied instead."""
    if type(value) in _IMMUTABLE_TYPES:
        return value
    try:
        return FrozenJson(orjson.dumps(value, option=_JSON_OPTIONS))
    except (TypeError, ValueError):
        return _deep_copy(value)


def plain_cut(value: Any) -> tuple[Any, bool]:
    """``value`` (as held in a snapshot) as a plain JSON value for a record, within the capture limits, and
    whether it had to be cut to them."""
    kind = type(value)
    if kind is str:
        return (value, False) if len(value) <= limits.max_chars else _copy(value)
    if kind is int:
        return (value if value in _INT64 else str(value)), False
    if kind in _PASSED_AS_IS:
        return value, False
    if kind is decimal.Decimal and value.is_finite():
        return str(value), False
    if kind is float and math.isfinite(value):
        return value, False
    if kind is Computed:
        return str(value), False
    if kind is FrozenJson:
        decoded = orjson.loads(memoryview(value))
        return (decoded, False) if _within_limits(value) else _copy(decoded)
    return _copy(value)


def _within_limits(encoded: bytes) -> bool:
    """Whether the JSON ``encoded`` is surely within the capture limits, by counting bytes (in C).

    Conservative: no string is longer than the whole text, no container has more items than there are
    commas plus one, and nothing is nested deeper than there are opening brackets.
    """
    return (
        len(encoded) <= limits.max_chars
        and encoded.count(b",") < limits.max_items
        and encoded.count(b"[") + encoded.count(b"{") <= limits.max_depth
    )


def _copy(value: Any) -> tuple[Any, bool]:
    copier = Snapshotter(limits)
    copied = copier.copy(value)
    return copied, copier.truncated


def assigned_form(spec: FieldSpec, value: Any, vendor: str) -> Any:
    """A value ``QuerySet.update()`` writes, in the form the rows will hold (see :func:`take`); a model
    instance given for a foreign key becomes the value of the field it points to (its pk, or its
    ``to_field``)."""
    if isinstance(value, models.Model):
        field = spec.field
        value = (
            getattr(value, field.target_field.attname) if isinstance(field, models.ForeignKey) else value.pk
        )
    return _stored_form(spec, value, vendor)


def _stored_form(spec: FieldSpec, value: Any, vendor: str) -> Any:
    """``value``, just saved to a ``vendor`` database, in the form a snapshot keeps it (see :func:`take`)."""
    if value is None:
        return None
    kind = spec.kind
    if kind == MUTABLE:
        return Computed.of(value) if _is_expression(value) else _frozen(spec, value)
    if kind == FILE:
        if type(value) is str:
            return value
        return Computed.of(value) if _is_expression(value) else _file_name(value)  # F("x").name is "x"
    if spec.python_type is not None and type(value) is not spec.python_type:
        value = _converted(spec, value)
    if spec.normalise is not None:
        value = spec.normalise(value)
    if spec.quantum is not None and type(value) is decimal.Decimal:
        return _rounded(spec, value, vendor)
    if spec.python_type is None and _is_expression(value):
        return Computed.of(value)
    return value


def _converted(spec: FieldSpec, value: Any) -> Any:
    """``value`` as the field's Python type (``to_python``); an expression becomes :class:`Computed`."""
    if _is_expression(value):
        return Computed.of(value)
    try:
        value = spec.field.to_python(value)
    except Exception:  # Django will refuse it on save; compare and record it as given
        return value
    if spec.python_type is str and type(value) is not str and isinstance(value, str):
        return str.__str__(value)  # a TextChoices member is stored as its plain text
    return value


def _is_expression(value: Any) -> bool:
    return hasattr(value, "resolve_expression")


_vendors: dict[str, str] = {}


def vendor_of(alias: str) -> str:
    """The vendor (``"postgresql"``, ``"sqlite"`` ...) of database ``alias``, looked up once per alias."""
    vendor = _vendors.get(alias)
    if vendor is None:
        vendor = _vendors[alias] = connections[alias].vendor
    return vendor


# How a decimal ends up rounded to its column's places. PostgreSQL, MySQL and Oracle round half away from zero
# (Django hands them the value as given). SQLite gets it half-even: Django 4.2 rounds it so before sending,
# later versions store it as given and round it so when reading it back.
_ROUNDING = {"sqlite": decimal.ROUND_HALF_EVEN}


def _rounded(spec: FieldSpec, value: decimal.Decimal, vendor: str) -> decimal.Decimal:
    if spec.quantum is None or not value.is_finite():
        return value
    try:
        return value.quantize(spec.quantum, rounding=_ROUNDING.get(vendor, decimal.ROUND_HALF_UP))
    except decimal.InvalidOperation:  # too many digits: the database refuses it, Django raises
        return value


def _equal(old: Any, new: Any) -> bool:
    try:
        return bool(old == new) or (type(old) is float and math.isnan(old) and math.isnan(new))
    except Exception:  # a value that cannot be compared is a change
        return False


def _file_name(value: Any) -> Any:
    name = getattr(value, "name", value)
    return name if name is None or type(name) is str else str(name)


def _deep_copy(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:  # an uncopyable value is compared by reference: a change in place may go unseen
        return value
