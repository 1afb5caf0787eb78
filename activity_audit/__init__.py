"""activity_audit: a trustworthy audit trail for Django, built on pluggy.

The public face: the levels ``AUDIT`` (21) and ``API`` (22), the ``hookimpl`` marker for plugins, the
``LOGGING`` helpers of the original package, :class:`audit_context` and :func:`flush`. ``HTTPClient`` and
``SFTPClient`` are imported on first use, so that ``requests`` and ``paramiko`` stay optional.

Importing this package touches no Django setting, so ``from activity_audit import *`` works in settings.py.
"""

from __future__ import annotations

from typing import Any

from .context import audit_context as audit_context
from .levels import API, AUDIT
from .logconfig import (
    get_api_file_formatter,
    get_api_file_handler,
    get_console_formatter,
    get_json_formatter,
    get_json_handler,
)
from .markers import hookimpl as hookimpl

__version__ = "0.1.0"

__all__ = [
    "API",
    "AUDIT",
    "get_api_file_formatter",
    "get_api_file_handler",
    "get_console_formatter",
    "get_json_formatter",
    "get_json_handler",
]

_LAZY = {
    "HTTPClient": "activity_audit.clients.http",
    "audit_session": "activity_audit.clients.http",
    "SFTPClient": "activity_audit.clients.sftp",
}


def flush(timeout: float = 5.0) -> bool:
    """Block until every record submitted so far has been handed to every sink; False on timeout."""
    from .dispatch import pipeline

    return pipeline.flush(timeout)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'activity_audit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
