"""Start-up and reload: settings -> plugins -> ``audit_configure`` -> pipeline, from ``AppConfig.ready``."""

from __future__ import annotations

from typing import Any

import pluggy

from . import conf, manager
from .dispatch import pipeline
from .mp_exit import arrange_drain_at_worker_shutdown, arrange_drain_in_this_child
from .sigterm import install_sigterm_handler
from .uvicorn_exit import drain_when_uvicorn_stops

CRUD_PLUGIN = "activity_audit.crud.plugin"


def start() -> pluggy.PluginManager:
    """Validate settings, load plugins in order, let each configure itself, and attach the pipeline.

    Raises :class:`~django.core.exceptions.ImproperlyConfigured` naming the setting or plugin at fault.
    """
    settings = conf.get_settings()
    pm = manager.load_plugins(settings)
    if not pm.has_plugin(CRUD_PLUGIN):
        from .crud.plugin import deactivate  # imports models: only once the apps are ready

        deactivate()
    pm.hook.audit_configure(settings=settings)
    pipeline.configure(settings, pm)
    arrange_drain_in_this_child(pipeline, pipeline.shutdown)
    arrange_drain_at_worker_shutdown(pipeline.shutdown)
    if settings.HANDLE_SIGTERM:
        install_sigterm_handler(lambda: pipeline.shutting_down, pipeline.shutdown)
    drain_when_uvicorn_stops(pipeline.shutdown)
    return pm


def reload() -> pluggy.PluginManager:
    """Deliver what is queued under the old settings, then start again with the current ones."""
    pipeline.flush(timeout=5.0)
    conf.reset()
    return start()


def on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: tests that override ``ACTIVITY_AUDIT`` get a reconfigured pipeline."""
    if setting == "ACTIVITY_AUDIT":
        reload()
