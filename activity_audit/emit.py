"""The one way capture code hands a record to the pipeline: run the ``audit_*`` hook, honour vetoes, submit.

Each implementation runs on its own, so one that raises is reported (with its plugin's name) and skipped,
and never costs the record or breaks the user's operation. When a hook has implementations, the values
capture left for the worker (:mod:`activity_audit.deferred`) are built first, so they see the final record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .deferred import realise_pending
from .dispatch import pipeline
from .manager import AuditPluginManager, get_plugin_manager
from .records import CHANNEL_API, CHANNEL_AUDIT
from .reporting import where_it_failed

# One implementation of an audit_* hook, called directly: (plugin name, function, takes the record).
_Impl = tuple[str, Callable[..., Any], bool]


class _ImplCache:
    """The implementations of one ``audit_*`` hook in call order, re-read only when the plugins change."""

    __slots__ = ("generation", "hook_name", "impls", "pm")

    def __init__(self, hook_name: str) -> None:
        self.hook_name = hook_name
        self.pm: AuditPluginManager | None = None
        self.generation = -1
        self.impls: tuple[_Impl, ...] = ()

    def get(self) -> tuple[_Impl, ...]:
        pm = get_plugin_manager()
        if pm is not self.pm or pm.generation != self.generation:
            hook = getattr(pm.hook, self.hook_name)
            self.impls = tuple(
                (pm.get_name(impl.plugin) or impl.plugin_name, impl.function, bool(impl.argnames))
                for impl in reversed(hook.get_hookimpls())
            )
            self.pm, self.generation = pm, pm.generation
        return self.impls


_crud_impls = _ImplCache("audit_crud_event")
_request_impls = _ImplCache("audit_request")


def _run_hook(cache: _ImplCache, record: dict[str, Any]) -> bool:
    """Call every implementation; False when one vetoed the record. Without any, nothing is built."""
    impls = cache.get()
    if not impls:
        return True
    realise_pending(record)  # implementations see the record in the shape it will be written in
    keep = True
    for name, function, takes_record in impls:
        try:
            if (function(record=record) if takes_record else function()) is False:
                keep = False
        except Exception as exc:
            error = where_it_failed(exc)  # not its message: the hook read the record before redaction
            pipeline.reporter.problem("HOOK_FAILED", f"{cache.hook_name}:{name}", error=error)
    return keep


def emit_crud(record: dict[str, Any]) -> bool:
    """Run ``audit_crud_event`` on ``record`` and queue it unless vetoed. True when queued."""
    if not pipeline.enabled or not _run_hook(_crud_impls, record):
        return False
    return pipeline.submit(CHANNEL_AUDIT, record)


def emit_request(record: dict[str, Any]) -> bool:
    """Run ``audit_request`` on ``record`` and queue it unless vetoed. True when queued."""
    if not pipeline.enabled or not _run_hook(_request_impls, record):
        return False
    return pipeline.submit(CHANNEL_API, record)
