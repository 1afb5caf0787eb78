"""The one way capture code hands a record to the pipeline: run the ``audit_*`` hook, honour vetoes, submit.

Each implementation runs on its own, so one that raises is reported (with its plugin's name) and skipped,
and never costs the record or breaks the user's operation.
"""

from __future__ import annotations

from typing import Any

from .dispatch import pipeline
from .manager import get_plugin_manager
from .records import CHANNEL_API, CHANNEL_AUDIT


def _run_hook(hook_name: str, record: dict[str, Any]) -> bool:
    pm = get_plugin_manager()
    keep = True
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        try:
            if impl.function(**({"record": record} if impl.argnames else {})) is False:
                keep = False
        except Exception as exc:
            name = pm.get_name(impl.plugin) or impl.plugin_name
            error = f"{type(exc).__name__}: {exc}"
            pipeline.reporter.problem("HOOK_FAILED", f"{hook_name}:{name}", error=error)
    return keep


def emit_crud(record: dict[str, Any]) -> bool:
    """Run ``audit_crud_event`` on ``record`` and queue it unless vetoed. True when queued."""
    if not pipeline.enabled or not _run_hook("audit_crud_event", record):
        return False
    return pipeline.submit(CHANNEL_AUDIT, record)


def emit_request(record: dict[str, Any]) -> bool:
    """Run ``audit_request`` on ``record`` and queue it unless vetoed. True when queued."""
    if not pipeline.enabled or not _run_hook("audit_request", record):
        return False
    return pipeline.submit(CHANNEL_API, record)
