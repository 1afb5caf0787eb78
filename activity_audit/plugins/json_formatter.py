"""Built-in ``format_record``: one line of strict JSON per record, through :func:`encoding.dumps_line`."""

from __future__ import annotations

from typing import Any

from ..conf import AuditSettings
from ..encoding import DEFAULT_LIMITS, Limits, dumps_line
from ..markers import hookimpl

_max_bytes: int = 1 << 20
_limits: Limits = DEFAULT_LIMITS


@hookimpl
def audit_configure(settings: AuditSettings) -> None:
    global _max_bytes, _limits
    _max_bytes, _limits = settings.MAX_RECORD_BYTES, settings.limits


@hookimpl(trylast=True)
def format_record(record: dict[str, Any]) -> bytes:
    return dumps_line(record, _max_bytes, _limits)
