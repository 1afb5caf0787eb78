"""The plugin manager, and the one place that decides which plugins load, in which order.

Order of registration (pluggy calls the last registered first, so the nearest code wins):

1. the built-ins in :data:`BUILTIN_PLUGINS`, each under its dotted module name;
2. installed distributions, through the ``activity_audit`` entry-point group (unless ``LOAD_ENTRY_POINTS`` is
   False), each under its entry-point name;
3. the project's hooks modules: ``HOOKS_MODULES`` in the order given, then ``<app>.audit_hooks`` of every
   installed app that has one, each under its dotted module name.

A name in ``DISABLED_PLUGINS`` is blocked before anything loads, built-ins included. A hooks module that cannot
be imported, an entry point that fails to load, or an ``@hookimpl`` whose name is not a hook stops start-up
with :class:`~django.core.exceptions.ImproperlyConfigured` naming it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

import pluggy
from django.core.exceptions import ImproperlyConfigured

from . import hookspecs
from .conf import AuditSettings

PROJECT_NAME = "activity_audit"
ENTRY_POINT_GROUP = "activity_audit"
APP_HOOKS_MODULE = "audit_hooks"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "activity_audit.plugins.json_formatter",
    "activity_audit.plugins.file_sink",
)

_pm: pluggy.PluginManager | None = None


def new_plugin_manager() -> pluggy.PluginManager:
    """An empty manager that knows the hook specifications."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager; empty (specs only) until :func:`load_plugins` runs."""
    global _pm
    if _pm is None:
        _pm = new_plugin_manager()
    return _pm


def load_plugins(settings: AuditSettings, installed_apps: list[str] | None = None) -> pluggy.PluginManager:
    """Build a fresh manager with every plugin the settings allow, validated, and make it the current one."""
    global _pm
    pm = new_plugin_manager()
    for name in settings.DISABLED_PLUGINS:
        pm.set_blocked(name)
    for module_name in BUILTIN_PLUGINS:
        if not pm.is_blocked(module_name):
            pm.register(importlib.import_module(module_name), name=module_name)
    if settings.LOAD_ENTRY_POINTS:
        _load_entry_points(pm)
    for module_name in settings.HOOKS_MODULES:
        _register_hooks_module(pm, module_name, "ACTIVITY_AUDIT['HOOKS_MODULES']")
    for app_module in installed_apps if installed_apps is not None else _installed_app_modules():
        candidate = f"{app_module}.{APP_HOOKS_MODULE}"
        if candidate not in settings.HOOKS_MODULES and _module_exists(candidate):
            _register_hooks_module(pm, candidate, f"the app '{app_module}'")
    _check_hook_names(pm)
    _pm = pm
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from importlib.metadata import entry_points

    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if pm.is_blocked(entry_point.name) or pm.has_plugin(entry_point.name):
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            raise ImproperlyConfigured(
                f"The activity_audit plugin '{entry_point.name}' ({entry_point.value}) failed to load: "
                f"{type(exc).__name__}: {exc}. Uninstall it or add '{entry_point.name}' to "
                "ACTIVITY_AUDIT['DISABLED_PLUGINS']."
            ) from exc
        pm.register(plugin, name=entry_point.name)


def _register_hooks_module(pm: pluggy.PluginManager, module_name: str, origin: str) -> None:
    if pm.is_blocked(module_name) or pm.has_plugin(module_name):
        return
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ImproperlyConfigured(
            f"The audit hooks module '{module_name}' (from {origin}) cannot be imported: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    try:
        pm.register(module, name=module_name)
    except pluggy.PluginValidationError as exc:
        raise ImproperlyConfigured(f"The audit hooks module '{module_name}' is invalid: {exc}") from exc


def _check_hook_names(pm: pluggy.PluginManager) -> None:
    """Refuse ``@hookimpl`` functions whose name is not a hook (a typo would otherwise never be called)."""
    known = {name for name in dir(hookspecs) if callable(getattr(hookspecs, name)) and name != "hookspec"}
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        for hook_caller in pm.get_hookcallers(plugin) or []:
            if hook_caller.name not in known:
                raise ImproperlyConfigured(
                    f"The activity_audit plugin '{name}' implements '{hook_caller.name}', which is not a hook. "
                    f"Known hooks: {', '.join(sorted(known))}."
                )


def _module_exists(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def _installed_app_modules() -> list[str]:
    from django.apps import apps

    return [config.name for config in apps.get_app_configs()]


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin, as ``manage.py audit plugins`` shows it."""

    name: str
    origin: str
    hooks: tuple[str, ...]


def describe_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """The loaded plugins in call order (the first listed is called first) with the hooks each implements."""
    distributions = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    infos = []
    for name, plugin in reversed(pm.list_name_plugin()):
        if plugin is None:
            continue
        dist: Any = distributions.get(id(plugin))
        if dist is not None:
            origin = f"entry point of {dist.project_name} {dist.version}"
        elif name in BUILTIN_PLUGINS:
            origin = "built-in"
        else:
            origin = "hooks module"
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or []))
        infos.append(PluginInfo(name=name, origin=origin, hooks=hooks))
    return infos
