"""Management commands name themselves: changes they make outside a request are by ``system:<command>``.

:func:`install` wraps :meth:`django.core.management.base.BaseCommand.execute` once, so that every command,
whether started by ``manage.py``, ``python -m django`` or ``call_command()``, runs inside
``audit_context(source=<command name>)``. An actor set by the caller (``audit_context(actor=...)``) or the
user of an enclosing request still wins (see :mod:`activity_audit.actor`).

The name is the one the command was run under: ``manage.py`` and ``call_command("name")`` load a command
through :func:`django.core.management.load_command_class`, which is wrapped to remember the name on the
instance, so a ``Command`` class defined in (or imported from) another module is still named right.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

from django.core import management
from django.core.management.base import BaseCommand

from ..context import audit_context

_MARK = "__activity_audit_wrapped__"
# Set on a command instance by the wrapped loader: the name it was loaded (and so run) under.
_NAME = "_activity_audit_command_name"


def command_name(command: BaseCommand) -> str:
    """The name the command was run under; for an instance made by the caller (``call_command(Command())``),
    the last part of its class's module (``...commands.import_prices``), as Django itself assumes."""
    name = getattr(command, _NAME, None)
    if isinstance(name, str):
        return name
    return type(command).__module__.rsplit(".", 1)[-1]


def install() -> None:
    """Wrap ``BaseCommand.execute`` and ``load_command_class`` (once; later calls do nothing)."""
    _wrap_execute()
    _wrap_loader()


def _wrap_execute() -> None:
    original: Callable[..., Any] = BaseCommand.execute
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def execute(self: BaseCommand, *args: Any, **options: Any) -> Any:
        with audit_context(source=command_name(self)):
            return original(self, *args, **options)

    setattr(execute, _MARK, True)
    BaseCommand.execute = execute  # type: ignore[method-assign]


def _wrap_loader() -> None:
    # Django looks the loader up in its module at each call (ManagementUtility, call_command).
    original: Callable[[str, str], BaseCommand] = management.load_command_class
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def load_command_class(app_name: str, name: str) -> BaseCommand:
        command = original(app_name, name)
        with contextlib.suppress(AttributeError, TypeError):  # refuses attributes: named by its module
            setattr(command, _NAME, name)
        return command

    setattr(load_command_class, _MARK, True)
    management.load_command_class = load_command_class
