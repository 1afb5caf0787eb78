"""Built-in ``redact`` (``tryfirst``): gives request records their final shape before anything masks them.

The request middleware leaves the summaries of small bodies to the worker thread
(:class:`activity_audit.request_capture.Pending`); this builds them, before every other ``redact``
implementation, so that project redactors, the built-in redactor, formatters and sinks all see the record as
documented in ``docs/requests.md``. The built-in redactor builds them too, in case this plugin is disabled.
"""

from __future__ import annotations

from typing import Any

from ..markers import hookimpl
from ..request_capture import realise_pending


@hookimpl(tryfirst=True)
def redact(record: dict[str, Any]) -> None:
    realise_pending(record)
