"""The record of one outbound call, shared by the HTTP and SFTP clients.

Every outbound record is level ``API``, logger ``audit.request``, message ``Audit External Service``,
``request_type: "external"``, and carries who made the call (``actor``) and on behalf of which incoming
request (``request_id``), read from the current context at capture time. ``execution_time`` is in seconds
(a float), the unit of the incoming request records.
"""

from __future__ import annotations

from typing import Any

from ..actor import Actor, actor_or_unknown
from ..context import current
from ..dispatch import pipeline
from ..emit import emit_request
from ..records import new_record

LEVEL = "API"
LOGGER = "audit.request"
MESSAGE = "Audit External Service"
REQUEST_TYPE = "external"


def auditing_enabled() -> bool:
    """False when auditing is switched off: the clients then skip capture altogether."""
    return pipeline.enabled


def record_call(
    service_name: str,
    protocol: str,
    execution_time: float,
    error_message: str | None,
    **fields: Any,
) -> None:
    """Build and emit the record of one call. Never raises: a failure is reported, the call goes on."""
    try:
        emit_request(
            new_record(
                LEVEL,
                LOGGER,
                MESSAGE,
                service_name=service_name,
                request_type=REQUEST_TYPE,
                protocol=protocol,
                **fields,
                error_message=error_message,
                execution_time=execution_time,
                request_id=current().request_id,
                **_actor_fields(actor_or_unknown(f"{protocol}:{service_name}")),
            )
        )
    except Exception as exc:
        pipeline.reporter.problem("CAPTURE_FAILED", f"{protocol}:{service_name}", error=describe_error(exc))


def _actor_fields(actor: Actor) -> dict[str, Any]:
    return {"actor": actor.name} if actor.error is None else {"actor": actor.name, "actor_error": actor.error}


def describe_error(exc: BaseException) -> str:
    """``"ConnectTimeout: <message>"``: the exception class, then its message."""
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def missing_extra(package: str, extra: str, feature: str, cause: ImportError) -> ImportError:
    """The error raised when an optional dependency of a client cannot be imported."""
    return ImportError(
        f"{feature} needs the '{package}' package: pip install \"activity-audit[{extra}]\" ({cause})",
        name=package,
    )
