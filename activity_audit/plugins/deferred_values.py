"""Built-in ``redact`` (``tryfirst``): gives records their final shape before anything masks them.

Capture leaves some values to the worker thread (:mod:`activity_audit.deferred`): CRUD changes built from
a snapshot, request headers, query parameters and small bodies. This builds them, before every other
``redact`` implementation, so that project redactors, the built-in redactor, formatters and sinks all see
the record as documented in ``docs/crud.md`` and ``docs/requests.md``. The built-in redactor builds them
too, in case this plugin is disabled.
"""

from __future__ import annotations

from typing import Any

from ..deferred import realise_pending
from ..markers import hookimpl


@hookimpl(tryfirst=True)
def redact(record: dict[str, Any]) -> None:
    realise_pending(record)
