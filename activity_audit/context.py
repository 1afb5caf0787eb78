"""Who is acting, and on behalf of which request: context variables shared by every capture point.

The middleware sets the current request and its id for the duration of one request; tasks, commands and
scripts use :func:`audit_context`. Context variables follow threads, ``asyncio`` tasks and ``sync_to_async``,
so one request's user never leaks into another's records, and every setter is undone in ``finally``.
"""

from __future__ import annotations

import contextvars
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class AuditContext:
    """What the current unit of work says about itself. ``None`` means "not set here"."""

    request: Any = None
    request_id: str | None = None
    actor: Any = None
    source: str | None = None
    client_ip: str | None = None


_EMPTY = AuditContext()
_current: contextvars.ContextVar[AuditContext] = contextvars.ContextVar(
    "activity_audit_context", default=_EMPTY
)
# Tokens of the audit_context blocks open in this thread or task, innermost last. Kept in a context variable,
# not on the audit_context instance, so that one instance may be entered by several threads at once.
_open_blocks: contextvars.ContextVar[tuple[contextvars.Token[AuditContext], ...]] = contextvars.ContextVar(
    "activity_audit_open_blocks", default=()
)


def current() -> AuditContext:
    """The context in force on this thread or task."""
    return _current.get()


def push(
    request: Any = None,
    request_id: str | None = None,
    actor: Any = None,
    source: str | None = None,
    client_ip: str | None = None,
) -> contextvars.Token[AuditContext]:
    """Layer the values given (not None) over the current context; undo with :func:`pop` in ``finally``."""
    outer = _current.get()
    return _current.set(
        AuditContext(
            outer.request if request is None else request,
            outer.request_id if request_id is None else request_id,
            outer.actor if actor is None else actor,
            outer.source if source is None else source,
            outer.client_ip if client_ip is None else client_ip,
        )
    )


def pop(token: contextvars.Token[AuditContext]) -> None:
    """Restore the context that was in force before the matching :func:`push`."""
    _current.reset(token)


class audit_context:
    """Say who is acting outside a request: a task, a management command, a script.

    Usable as a context manager or a decorator (sync or async functions)::

        with audit_context(actor="system:nightly-import", source="celery:import_prices"):
            Price.objects.create(...)

    ``actor`` may be a user instance, a string, or any value; ``source`` names the job. Values set here are
    layered over the enclosing context and restored on exit, also after an exception.
    """

    def __init__(self, actor: Any = None, source: str | None = None, request_id: str | None = None) -> None:
        self._values = {"actor": actor, "source": source, "request_id": request_id}

    def __enter__(self) -> AuditContext:
        token = push(**self._values)
        _open_blocks.set((*_open_blocks.get(), token))
        return current()

    def __exit__(self, *exc_info: object) -> None:
        *outer, token = _open_blocks.get()
        pop(token)
        _open_blocks.set(tuple(outer))

    def __call__(self, func: _F) -> _F:
        import inspect

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with audit_context(**self._values):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with audit_context(**self._values):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


@contextmanager
def request_scope(request: Any, request_id: str, client_ip: str | None = None) -> Iterator[AuditContext]:
    """Bind ``request`` to the current context for the duration of the ``with`` block."""
    token = push(request=request, request_id=request_id, client_ip=client_ip)
    try:
        yield current()
    finally:
        pop(token)


def process_source() -> str:
    """A name for this process when nobody set one: the management command, else the program."""
    argv = sys.argv or [""]
    key = (argv[0], argv[1] if len(argv) > 1 else None)
    cached = _sources.get(key)
    if cached is None:
        if len(_sources) >= 64:  # a program that keeps rewriting sys.argv
            _sources.clear()
        cached = _sources[key] = _source_of(argv)
    return cached


# process_source() by (program, first argument): asked for every record made outside a request.
_sources: dict[tuple[str, str | None], str] = {}


def _source_of(argv: list[str]) -> str:
    parts = argv[0].replace("\\", "/").rsplit("/", 2)
    program = parts[-1]
    if program == "__main__.py" and len(parts) > 1:  # python -m <package>: name the package
        program = parts[-2]
    if program in {"manage.py", "django-admin", "django-admin.py", "django"} and len(argv) > 1:
        return argv[1]
    return program or "python"
