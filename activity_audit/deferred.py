"""Values of a record that capture leaves for the worker thread to build.

Capture runs on the caller's thread (a request, a ``save()``), where every microsecond is the user's. Where
a value can be built later from inputs nobody can change any more, capture stores a :class:`Pending`
instead: the function to call and those inputs. The worker builds it (:func:`realise_pending`) before any
``redact`` implementation looks at the record, so redactors, formatters and sinks only ever see records in
their documented shape.

Where a record may hold one: the ``changes`` of a CRUD record, and the values of its ``request_repr`` and
``response_repr`` sections (headers, query parameters, bodies). A request record's ``route`` may be a
:class:`RouteWithSecrets`, whose secrets are masked here too. An ``audit_*`` hook runs on the caller thread;
when one is registered, capture builds the record at once, so hooks see the final shape too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .encoding import Snapshotter
from .redaction import MASK, literal_masker, mask_literals

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


class RouteWithSecrets(str):
    """A request record's ``route`` (a string like any other) that carries ``secrets``: the text that URL
    kwargs named as secrets (``<token>``: a name the redactor masks) captured from the path.

    The middleware records the path before it looks up the route, so the route brings the secrets to
    :func:`realise_pending`, which masks them wherever the request or the response shows them (the path,
    a ``Location`` header, the error message) and leaves a plain ``str`` in ``route``.
    """

    secrets: tuple[str, ...]

    def __new__(cls, route: str, secrets: tuple[str, ...]) -> RouteWithSecrets:
        self = super().__new__(cls, route)
        self.secrets = secrets
        return self


def realise_pending(record: dict[str, Any]) -> None:
    """Build every :class:`Pending` value of ``record`` in place; quick for records without any.

    A build that had to cut something to the record's caps marks the record ``"truncated": true``. The
    secrets of a :class:`RouteWithSecrets` are masked once everything is built.
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
    route = record.get("route")
    if type(route) is RouteWithSecrets:
        _mask_route_secrets(record, route)


# Where the text a URL captured may show up in a request record.
_ROUTE_SECRET_FIELDS = ("request_repr", "response_repr", "error_message")


def _mask_route_secrets(record: dict[str, Any], route: RouteWithSecrets) -> None:
    """Mask ``route.secrets`` in every string of the request and response and in ``error_message``, listing
    the masked places in ``redacted``; a path that does not spell one of them as captured (a converter's
    value written differently, a path cut at ``MAX_FIELD_CHARS``) is masked whole."""
    record["route"] = str(route)
    pattern = literal_masker(route.secrets)
    found: list[str] = []
    request = record.get("request_repr")
    if type(request) is dict and type(request.get("path")) is str:
        path = request["path"]
        if not all(secret in path for secret in route.secrets):
            request["path"] = MASK
            found.append("request_repr.path")
    for field in _ROUTE_SECRET_FIELDS:
        if field in record:
            record[field] = mask_literals(record[field], pattern, field, found)
    if found:
        previous = record.get("redacted")
        record["redacted"] = [*previous, *found] if isinstance(previous, list) else found
