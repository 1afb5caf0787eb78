"""Values of a record that capture leaves for the worker thread to build.

Capture runs on the caller's thread (a request, a ``save()``), where every microsecond is the user's. Where
a value can be built later from inputs nobody can change any more, capture stores a :class:`Pending`
instead: the function to call and those inputs. The worker builds it (:func:`realise_pending`) before any
``redact`` implementation looks at the record, so redactors, formatters and sinks only ever see records in
their documented shape.

Where a record may hold one: the ``changes`` of a CRUD record, and the values of its ``request_repr`` and
``response_repr`` sections (headers, query parameters, bodies). An ``audit_*`` hook runs on the caller
thread; when one is registered, capture builds the record at once, so hooks see the final shape too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .encoding import Snapshotter

# The sections of a record whose values may be Pending.
_PENDING_SECTIONS = ("request_repr", "response_repr")


class Pending:
    """A value still to be built: ``build(*args)``.

    ``args`` hold only values nobody can change: ``bytes``, strings, numbers, None, tuples of those, a
    snapshot (never mutated once stored, see :mod:`activity_audit.crud.snapshots`), or a shallow copy made
    for this value alone (of ``request.META``, of a response's header store), plus the record's
    :class:`~activity_audit.encoding.Snapshotter` (``copier``) when the build applies the record's caps.
    With ``reports_cut``, ``build`` returns ``(value, cut)`` instead, ``cut`` telling whether it had to cut
    something to those caps. Keeping it is as safe as building the value at once. Until it is built it
    encodes as a placeholder that reveals nothing of its arguments.
    """

    __slots__ = ("args", "build", "copier", "reports_cut")

    def __init__(
        self,
        build: Callable[..., Any],
        *args: Any,
        copier: Snapshotter | None = None,
        reports_cut: bool = False,
    ) -> None:
        self.build = build
        self.args = args
        self.copier = copier
        self.reports_cut = reports_cut

    def __str__(self) -> str:
        return f"[pending {self.build.__name__}]"

    __repr__ = __str__


def realise_pending(record: dict[str, Any]) -> None:
    """Build every :class:`Pending` value of ``record`` in place; quick for records without any.

    A build that had to cut something to the record's caps marks the record ``"truncated": true``.
    """
    changes = record.get("changes")
    if type(changes) is Pending:
        built = changes.build(*changes.args)
        if changes.reports_cut:
            built, cut = built
            if cut:
                record["truncated"] = True
        record["changes"] = built
    for section_name in _PENDING_SECTIONS:
        section = record.get(section_name)
        if type(section) is dict:
            for key, value in section.items():
                if type(value) is Pending:
                    section[key] = value.build(*value.args)
                    if value.copier is not None and value.copier.truncated:
                        record["truncated"] = True
