"""Management commands name themselves: changes they make outside a request are by ``system:<command>``.

:func:`install` wraps :meth:`django.core.management.base.BaseCommand.execute` once, so that every command,
whether started by ``manage.py``, ``python -m django`` or ``call_command()``, runs inside
``audit_context(source=<command name>)``. An actor set by the caller (``audit_context(actor=...)``) or the
user of an enclosing request still wins (see :mod:`activity_audit.actor`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand

from ..context import audit_context

_MARK = "__activity_audit_wrapped__"


def command_name(command: BaseCommand) -> str:
    """The name the command is run by: the last part of its module (``...commands.import_prices``)."""
    return type(command).__module__.rsplit(".", 1)[-1]


def install() -> None:
    original: Callable[..., Any] = BaseCommand.execute
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def execute(self: BaseCommand, *args: Any, **options: Any) -> Any:
        with audit_context(source=command_name(self)):
            return original(self, *args, **options)

    setattr(execute, _MARK, True)
    BaseCommand.execute = execute  # type: ignore[method-assign]
