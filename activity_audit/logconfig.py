"""The ``LOGGING`` helpers of the original package, and the formatter and handler classes they name.

Paste the original ``LOGGING`` block with ``from activity_audit import *`` and it works::

    "formatters": {"json": get_json_formatter(), "verbose": get_console_formatter(),
                   "api_json": get_api_file_formatter()},
    "handlers": {"file": get_json_handler(level="DEBUG", formatter="json"),
                 "api_file": get_api_file_handler(formatter="api_json")},

The handlers do not write files themselves: :class:`PipelineHandler` copies each log record into a plain dict
on the calling thread and submits it to the audit pipeline, whose file sink writes ``app.log`` (container
logs) or ``api.log`` in ``LOG_DIR``. The package's own CRUD and request records never pass through
:mod:`logging`, so a root level of WARNING or ``propagate: False`` cannot lose them, and they are never
written twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

from .conf import get_settings
from .context import current
from .encoding import Limits, Snapshotter
from .levels import API
from .records import CHANNEL_API, CHANNEL_APP
from .redaction import Redactor

CONSOLE_FORMAT = "%(levelname)s %(asctime)s %(pathname)s %(module)s %(funcName)s %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_API_FIELDS = (
    "service_name",
    "request_type",
    "protocol",
    "request_repr",
    "response_repr",
    "error_message",
    "execution_time",
)
_UTC = dt.timezone.utc


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a bad %-format, or a message whose str() raises, must not lose the line
        return f"{_safe_repr(record.msg)} % {_safe_repr(record.args)}"


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__name__} whose repr() raised {type(exc).__name__}>"


def _extras(record: logging.LogRecord, copier: Snapshotter, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        key: copier.copy(value)
        for key, value in vars(record).items()
        if key not in _STANDARD_ATTRIBUTES and key not in skip and not key.startswith("_")
    }


class ConsoleFormatter(logging.Formatter):
    """The original console format, with secrets masked: a console or container log is a log like the others.

    The whole formatted line (message, arguments, traceback) goes through the redactor's text patterns, with
    the ``REDACT_KEYS`` and ``REDACT_PATTERNS`` of the settings (``password=...``, ``Bearer ...``, JSON Web
    Tokens, card numbers, ``user:password@`` in URLs ...). Masking runs on the logging thread, a few
    microseconds per line; the line is never lost to it.
    """

    def __init__(self, format: str = CONSOLE_FORMAT, datefmt: str | None = None, style: Any = "%") -> None:
        super().__init__(format, datefmt, style)
        self._redactor: Redactor | None = None
        self._settings: object = None  # those the redactor was built from: built again when they change

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        try:
            settings = get_settings()
            if self._redactor is None or settings is not self._settings:
                self._redactor = Redactor(settings.REDACT_KEYS, settings.REDACT_PATTERNS)
                self._settings = settings
            masked = self._redactor.scrub_text(line)
        except Exception:  # settings not ready or invalid: mask with the built-in keys and patterns
            masked = Redactor().scrub_text(line)
        return line if masked is None else masked


def _capture_limits() -> Limits:
    """The caps a log record's values are copied with: the settings' (``MAX_FIELD_CHARS``, ``MAX_ITEMS``,
    ``MAX_DEPTH``) once the pipeline has read them, the defaults before (during ``django.setup()``)."""
    from .dispatch import pipeline

    return pipeline.limits


class JSONFormatter(logging.Formatter):
    """The container-log JSON of the original package, one strict JSON line per record.

    Fields: ``timestamp`` (UTC, ISO-8601), ``level``, ``name``, ``path``, ``module``, ``function``,
    ``message``, ``exception`` (the formatted traceback or ""), ``request`` (the current request id or ""),
    ``extra_fields`` (what the caller passed in ``extra=``, copied at the time of the call), and
    ``stack_info`` when the call asked for it (``stack_info=True``).
    """

    def to_record(self, record: logging.LogRecord) -> dict[str, Any]:
        """The record as a plain dict; call it on the logging thread (it copies ``extra=`` values)."""
        copier = Snapshotter(_capture_limits())
        exception = ""
        if record.exc_info:
            exception = record.exc_text or self.formatException(record.exc_info)
        elif record.exc_text:
            exception = record.exc_text
        out = {
            "timestamp": dt.datetime.fromtimestamp(record.created, _UTC),
            "level": record.levelname,
            "name": record.name,
            "path": record.pathname,
            "module": record.module,
            "function": record.funcName,
            "message": copier.copy(_message(record)),
            "exception": exception,
            "request": current().request_id or "",
            "extra_fields": _extras(record, copier),
        }
        if record.stack_info:
            out["stack_info"] = copier.copy(record.stack_info)
        if copier.truncated:
            out["truncated"] = True
        return out

    def format(self, record: logging.LogRecord) -> str:
        from .encoding import dumps_line

        return dumps_line(self.to_record(record)).decode()


class APIJSONFormatter(JSONFormatter):
    """The request-log JSON of the original package, for records a project logs itself at level ``API``.

    The request fields (``service_name``, ``request_type``, ``protocol``, ``request_repr``,
    ``response_repr``, ``error_message``, ``execution_time``) are taken from ``extra=``; ``exception`` and
    ``stack_info`` are there when the call passed ``exc_info`` or ``stack_info``.
    """

    def to_record(self, record: logging.LogRecord) -> dict[str, Any]:
        copier = Snapshotter(_capture_limits())
        out: dict[str, Any] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, _UTC),
            "level": record.levelname,
            "name": record.name,
            "message": copier.copy(_message(record)),
        }
        for key in _API_FIELDS:
            out[key] = copier.copy(getattr(record, key, None))
        out["request_id"] = current().request_id
        extra = _extras(record, copier, skip=_API_FIELDS)
        if extra:
            out["extra_fields"] = extra
        if record.exc_info or record.exc_text:
            out["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        if record.stack_info:
            out["stack_info"] = copier.copy(record.stack_info)
        if copier.truncated:
            out["truncated"] = True
        return out


class PipelineHandler(logging.Handler):
    """A logging handler that hands records to the audit pipeline instead of writing them itself.

    ``channel`` picks the file of the default sink (``app`` -> ``app.log``). Records logged on the pipeline's
    own threads, or under ``activity_audit.pipeline_work`` (a sink library's own threads), are ignored, so a
    sink whose library logs cannot feed itself. Never raises into the caller.
    """

    def __init__(
        self, channel: str = CHANNEL_APP, level: int | str = logging.NOTSET, filename: str | None = None
    ):
        super().__init__(level)
        # A path (earlier versions took "audit_logs/app.log") names its file inside LOG_DIR.
        self.channel = os.path.basename(filename).removesuffix(".log") if filename else channel
        self._fallback = JSONFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        from .dispatch import pipeline
        from .threads import PIPELINE_WORK_LOGGER, pipeline_thread

        if getattr(pipeline_thread, "active", False) or record.name.startswith(PIPELINE_WORK_LOGGER):
            return
        try:
            formatter = self.formatter if isinstance(self.formatter, JSONFormatter) else self._fallback
            pipeline.submit(self.channel, formatter.to_record(record))
        except Exception:
            self.handleError(record)

    def createLock(self) -> None:
        # The pipeline is thread-safe: a handler lock would only serialise callers (and be copied into
        # children by fork while held).
        self.lock = None

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass


def get_json_formatter() -> dict[str, Any]:
    """Formatter config for container logs as JSON (the original ``json`` formatter)."""
    return {"()": "activity_audit.logconfig.JSONFormatter"}


def get_console_formatter() -> dict[str, Any]:
    """Formatter config for human-readable console lines, in the original package's format, secrets masked."""
    return {"()": "activity_audit.logconfig.ConsoleFormatter", "format": CONSOLE_FORMAT}


def get_api_file_formatter() -> dict[str, Any]:
    """Formatter config for request records logged at level ``API`` (the original ``api_json`` formatter)."""
    return {"()": "activity_audit.logconfig.APIJSONFormatter"}


def get_json_handler(
    level: str = "DEBUG",
    filename: str | None = None,
    formatter: str = "json",
    max_bytes: int | None = None,
    backup_count: int | None = None,
) -> dict[str, Any]:
    """Handler config that sends container logs to ``LOG_DIR/app.log`` (or ``LOG_DIR/<filename>``).

    The parameters are in the order earlier versions of the original package took them. ``filename`` names
    the file inside ``LOG_DIR`` (a directory part, as in ``"audit_logs/app.log"``, is dropped), and
    ``max_bytes`` and ``backup_count`` (those versions' rotation settings) are accepted and ignored: several
    processes append to the files, so rotation belongs to a tool such as logrotate, and the file sink reopens
    a rotated file by itself.
    """
    return {
        "class": "activity_audit.logconfig.PipelineHandler",
        "level": level,
        "formatter": formatter,
        "channel": CHANNEL_APP,
        "filename": filename,
    }


def get_api_file_handler(
    level: str | int = "API", formatter: str = "api_json", filename: str | None = None
) -> dict[str, Any]:
    """Handler config that sends records logged at level ``API`` to ``LOG_DIR/api.log``."""
    return {
        "class": "activity_audit.logconfig.PipelineHandler",
        "level": level,  # a number or a name: logging.config takes both
        "formatter": formatter,
        "channel": CHANNEL_API,
        "filename": filename,
    }


__all__ = [
    "API",
    "CONSOLE_FORMAT",
    "APIJSONFormatter",
    "ConsoleFormatter",
    "JSONFormatter",
    "PipelineHandler",
    "get_api_file_formatter",
    "get_api_file_handler",
    "get_console_formatter",
    "get_json_formatter",
    "get_json_handler",
]
