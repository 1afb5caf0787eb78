"""The plugin manager, and the one place that decides which plugins load, in which order.

Order of registration (pluggy calls the last registered first, so the nearest code wins):

1. the built-ins in :data:`BUILTIN_PLUGINS`, each under its dotted module name;
2. installed distributions, through the ``activity_audit`` entry-point group (unless ``LOAD_ENTRY_POINTS`` is
   False), each under its entry-point name;
3. the project's hooks modules: ``HOOKS_MODULES`` in the order given, then ``<app>.audit_hooks`` of every
   installed app that has one, each under its dotted module name;
4. plugins added at run time with :func:`register_plugin` (tests, ``activity_audit.testing``), which survive
   every reload until :func:`unregister_plugin` removes them.

A name in ``DISABLED_PLUGINS`` is blocked before anything loads, built-ins included. A hooks module that
cannot be imported, an entry point that fails to load, or an ``@hookimpl`` whose name is not a hook stops
start-up with :class:`~django.core.exceptions.ImproperlyConfigured` naming it.
"""

from __future__ import annotations

import importlib
import importlib.util
import types
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
    "activity_audit.plugins.deferred_values",
    "activity_audit.plugins.redaction",
    "activity_audit.plugins.json_formatter",
    "activity_audit.plugins.file_sink",
    "activity_audit.crud.plugin",
)
# Hooks whose implementations the core calls one at a time (each failure isolated and named): no wrappers.
CALLED_ONE_AT_A_TIME: tuple[str, ...] = (
    "audit_crud_event",
    "audit_request",
    "sink",
    "audit_shutdown",
    "audit_after_fork",
)

_pm: AuditPluginManager | None = None
_runtime_plugins: dict[str, object] = {}


class AuditPluginManager(pluggy.PluginManager):
    """A pluggy manager that counts changes to its registrations in :attr:`generation`.

    Code that calls hook implementations directly for speed (the pipeline, the capture points) keeps what
    it built for as long as ``generation`` stays the same, instead of re-reading the implementations for
    every record.
    """

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        self.generation = 0

    def register(self, plugin: object, name: str | None = None) -> str | None:
        try:
            return super().register(plugin, name)
        finally:
            self.generation += 1

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        try:
            return super().unregister(plugin, name)
        finally:
            self.generation += 1


def new_plugin_manager() -> AuditPluginManager:
    """An empty manager that knows the hook specifications."""
    pm = AuditPluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def hook_names() -> list[str]:
    """The names of every hook in :mod:`activity_audit.hookspecs`, sorted."""
    return sorted(name for name, value in vars(hookspecs).items() if hasattr(value, f"{PROJECT_NAME}_spec"))


def get_plugin_manager() -> AuditPluginManager:
    """The process-wide manager; empty (specs only) until :func:`load_plugins` runs."""
    global _pm
    if _pm is None:
        _pm = new_plugin_manager()
    return _pm


def load_plugins(settings: AuditSettings, installed_apps: list[str] | None = None) -> AuditPluginManager:
    """Build a fresh manager with every plugin the settings allow, validated, and make it the current one."""
    global _pm
    pm = new_plugin_manager()
    for name in settings.DISABLED_PLUGINS:
        pm.set_blocked(name)
    for module_name in BUILTIN_PLUGINS:
        if not pm.is_blocked(module_name):
            _register(pm, importlib.import_module(module_name), module_name, "built-in plugin")
    if settings.LOAD_ENTRY_POINTS:
        _load_entry_points(pm)
    for module_name in settings.HOOKS_MODULES:
        _register_hooks_module(pm, module_name, "ACTIVITY_AUDIT['HOOKS_MODULES']")
    for app_module in installed_apps if installed_apps is not None else _installed_app_modules():
        candidate = f"{app_module}.{APP_HOOKS_MODULE}"
        if candidate not in settings.HOOKS_MODULES and _module_exists(candidate):
            _register_hooks_module(pm, candidate, f"the app '{app_module}'")
    for name, plugin in _runtime_plugins.items():
        if not pm.is_blocked(name):
            _register(pm, plugin, name, "plugin")
    _check_hook_names(pm)
    _check_no_wrappers(pm)
    _pm = pm
    return pm


def register_plugin(plugin: object, name: str) -> None:
    """Add ``plugin`` to the current manager now and to every manager built by later reloads.

    For tests and tools that must keep a plugin across ``override_settings(ACTIVITY_AUDIT=...)``. The plugin
    is validated like any other (an ``@hookimpl`` that is not a hook raises ``ImproperlyConfigured``) and its
    own ``audit_configure`` is called at once with the current settings, as start-up would have done.
    """
    from .conf import get_settings

    if name in _runtime_plugins:
        raise ValueError(f"a plugin named {name!r} is already registered")
    pm = get_plugin_manager()
    _register(pm, plugin, name, "plugin")
    try:
        _check_hook_names(pm)
        _check_no_wrappers(pm)
        for impl in pm.hook.audit_configure.get_hookimpls():
            if impl.plugin is plugin:
                impl.function(**({"settings": get_settings()} if impl.argnames else {}))
    except BaseException:
        pm.unregister(name=name)
        raise
    _runtime_plugins[name] = plugin


def unregister_plugin(name: str) -> None:
    """Remove a plugin added with :func:`register_plugin`, from the current manager and from later ones."""
    _runtime_plugins.pop(name, None)
    pm = get_plugin_manager()
    if pm.has_plugin(name):
        pm.unregister(name=name)


def known_plugin_names(installed_apps: list[str] | None = None) -> set[str]:
    """Every name a plugin could be registered under here, loaded or blocked (checks ``DISABLED_PLUGINS``)."""
    from importlib.metadata import entry_points

    from .conf import get_settings

    names = set(BUILTIN_PLUGINS) | set(get_settings().HOOKS_MODULES) | set(_runtime_plugins)
    names |= {entry_point.name for entry_point in entry_points(group=ENTRY_POINT_GROUP)}
    for app_module in installed_apps if installed_apps is not None else _installed_app_modules():
        candidate = f"{app_module}.{APP_HOOKS_MODULE}"
        if _module_exists(candidate):
            names.add(candidate)
    return names


def _register(pm: pluggy.PluginManager, plugin: object, name: str, what: str) -> None:
    """Register ``plugin`` under ``name``; the very same object found a second way (an entry point naming
    a module that ``HOOKS_MODULES`` or an app's ``audit_hooks`` also brings) is loaded once, under the
    first name. A different plugin under a name already taken is a start-up error naming both."""
    if pm.is_registered(plugin):
        return
    taken = pm.get_plugin(name)
    if taken is not None:
        raise ImproperlyConfigured(
            f"The activity_audit {what} '{name}' ({_describe(plugin)}) has the name of another plugin "
            f"already loaded ({_describe(taken)}). Uninstall one of them, or add '{name}' to "
            "ACTIVITY_AUDIT['DISABLED_PLUGINS'] to load neither."
        )
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise ImproperlyConfigured(f"The activity_audit {what} '{name}' is invalid: {exc}") from exc


def _describe(plugin: object) -> str:
    """``module example.hooks`` or ``example.hooks.Plugin object``: what a plugin is, for messages."""
    if isinstance(plugin, types.ModuleType):
        return f"module {plugin.__name__}"
    kind = type(plugin)
    return f"{kind.__module__}.{kind.__qualname__} object"


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
        _register(pm, plugin, entry_point.name, "plugin")
        distribution = getattr(entry_point, "dist", None)
        if distribution is not None:
            _distributions[id(plugin)] = f"{distribution.metadata['name']} {distribution.version}"


def _register_hooks_module(pm: pluggy.PluginManager, module_name: str, origin: str) -> None:
    if pm.is_blocked(module_name):
        return
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ImproperlyConfigured(
            f"The audit hooks module '{module_name}' (from {origin}) cannot be imported: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    _register(pm, module, module_name, "hooks module")


def _check_hook_names(pm: pluggy.PluginManager) -> None:
    """Refuse ``@hookimpl`` functions whose name is not a hook (a typo would otherwise never be called).

    ``@hookimpl(optionalhook=True)`` is the escape hatch for a plugin that also supports newer versions.
    """
    known = hook_names()
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        for hook_caller in pm.get_hookcallers(plugin) or []:
            if hook_caller.spec is not None:
                continue
            impls = [impl for impl in hook_caller.get_hookimpls() if impl.plugin is plugin]
            if all(impl.optionalhook for impl in impls):
                continue
            raise ImproperlyConfigured(
                f"The activity_audit plugin '{name}' implements '{hook_caller.name}', which is not a hook. "
                f"Known hooks: {', '.join(known)}."
            )


def _check_no_wrappers(pm: pluggy.PluginManager) -> None:
    """Refuse a hook wrapper on a hook whose implementations the core calls one at a time.

    Such a wrapper would be called as a plain implementation: its code after ``yield`` would never run and
    it would wrap nothing. ``redact`` and ``format_record`` do support wrappers (see :mod:`.hookspecs`).
    """
    for hook_name in CALLED_ONE_AT_A_TIME:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                raise ImproperlyConfigured(
                    f"The activity_audit plugin '{pm.get_name(impl.plugin) or impl.plugin_name}' declares "
                    f"'{hook_name}' as a hook wrapper, which '{hook_name}' does not support: the core calls "
                    "each of its implementations on its own, so that one failing never stops the others. "
                    "Use a plain @hookimpl."
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


# Which distribution each entry-point plugin came from, by id of the plugin object.
_distributions: dict[int, str] = {}


def describe_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """The loaded plugins in call order (the first listed is called first) with the hooks each implements.

    ``tryfirst`` and ``trylast`` implementations are the exception: :func:`call_order` gives each hook's.
    """
    infos = []
    for name, plugin in reversed(pm.list_name_plugin()):
        if plugin is None:
            continue
        infos.append(PluginInfo(name=name, origin=_origin(name, plugin), hooks=_hook_names(pm, plugin)))
    return infos


def call_order(pm: pluggy.PluginManager) -> list[tuple[str, list[str]]]:
    """For each hook with more than one implementation, the plugins in the order they are called.

    This is the order of :func:`describe_plugins` unless an implementation is marked ``tryfirst`` or
    ``trylast`` (shown after its name), which moves it within that hook only.
    """
    order = []
    for hook_name in hook_names():
        impls = list(reversed(getattr(pm.hook, hook_name).get_hookimpls()))  # pluggy calls the last first
        if len(impls) < 2:
            continue
        names = []
        for impl in impls:
            mark = " (tryfirst)" if impl.tryfirst else " (trylast)" if impl.trylast else ""
            names.append(f"{pm.get_name(impl.plugin) or impl.plugin_name}{mark}")
        order.append((hook_name, names))
    return order


def _origin(name: str, plugin: object) -> str:
    if name in BUILTIN_PLUGINS:
        return "built-in"
    if id(plugin) in _distributions:
        return f"entry point of {_distributions[id(plugin)]}"
    if name in _runtime_plugins:
        return "registered at run time"
    return "hooks module"


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> tuple[str, ...]:
    return tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or []))
