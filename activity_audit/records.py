"""The record types: what one line of the audit trail holds.

A record is a plain ``dict`` (cheap to build, cheap to encode) whose first keys are the seed's
``timestamp, level, name, message``. The pipeline appends the envelope when the record is submitted:

``event_id``
    unique id of the record (a UUIDv8 string: 76 random bits of the stream, then ``seq``).
``stream_id``
    UUID of the pipeline instance that wrote it; a new one per process and after every fork.
``seq``
    1, 2, 3 ... within the stream, spent when the record is submitted. A gap in ``seq`` is a record that was
    lost, and a ``RECORDS_DROPPED`` or ``SINK_FAILED`` record says how and how many.

``timestamp`` is the time of capture, an aware UTC ``datetime`` written as ISO-8601 with offset
(``2026-11-28T15:09:32.123456+00:00``).

Kinds of record, by ``channel`` (which file the default sink writes them to):

``audit`` (``audit.log``)
    level ``AUDIT``, logger ``audit.crud``: model changes and authentication events; plus the pipeline's own
    events, logger ``activity_audit.pipeline`` (``PIPELINE_STARTED``, ``PIPELINE_STOPPED``,
    ``RECORDS_DROPPED``, ``SINK_FAILED``), which an audit trail must keep beside the changes it vouches for.
``api`` (``api.log``)
    level ``API``, logger ``audit.request``: incoming requests and outbound HTTP/SFTP calls.
``app`` (``app.log``)
    every other log record routed by the ``LOGGING`` helpers, with the seed's container fields.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

CHANNEL_AUDIT = "audit"
CHANNEL_API = "api"
CHANNEL_APP = "app"

PIPELINE_LOGGER = "activity_audit.pipeline"

_UTC = dt.timezone.utc


class Entry(NamedTuple):
    """One record on its way to the sinks: where it belongs, the redacted record, and its JSON line."""

    channel: str
    record: dict[str, Any]
    line: bytes


def now() -> dt.datetime:
    """The current time as an aware UTC datetime, the type every ``timestamp`` holds."""
    return dt.datetime.now(_UTC)


def new_record(
    level: str, name: str, message: str, timestamp: dt.datetime | None = None, **fields: Any
) -> dict[str, Any]:
    """Start a record with the seed's leading keys in the seed's order, then ``fields``.

    ``timestamp`` is the time of what the record tells (default: now).
    """
    record: dict[str, Any] = {
        "timestamp": now() if timestamp is None else timestamp,
        "level": level,
        "name": name,
        "message": message,
    }
    record.update(fields)
    return record


def pipeline_event(event_type: str, message: str, level: str = "WARNING", **fields: Any) -> dict[str, Any]:
    """A record the pipeline writes about itself (start, stop, drops, sink failures)."""
    return new_record(level, PIPELINE_LOGGER, message, event_type=event_type, **fields)
