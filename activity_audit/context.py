"""Who is acting, and on behalf of which request: context variables shared by every capture point.

The middleware sets the current request and its id for the duration of one request; tasks, commands and
scripts use :func:`audit_context`. Context variables are private to each thread and task, so one request's
user never leaks into another's records, and every setter is undone in ``finally``. They are carried into
``asyncio`` tasks and through ``sync_to_async`` / ``async_to_sync``, but not into a thread started with
``threading.Thread`` or a ``concurrent.futures`` pool: such a thread starts with an empty context (run its
work with ``contextvars.copy_context().run(...)``, or inside ``audit_context(actor=...)``).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import sys
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction

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
_Blocks = tuple[AuditContext, ...]
_current: contextvars.ContextVar[AuditContext] = contextvars.ContextVar(
    "activity_audit_context", default=_EMPTY
)
# The contexts in force before each audit_context block open in this thread or task, innermost last. Kept in
# a context variable, not on the audit_context instance, so that one instance may be entered by several
# threads at once.
_open_blocks: contextvars.ContextVar[_Blocks] = contextvars.ContextVar(
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
    return _current.set(_layered(_current.get(), request, request_id, actor, source, client_ip))


def _layered(
    outer: AuditContext,
    request: Any = None,
    request_id: str | None = None,
    actor: Any = None,
    source: str | None = None,
    client_ip: str | None = None,
) -> AuditContext:
    return AuditContext(
        outer.request if request is None else request,
        outer.request_id if request_id is None else request_id,
        outer.actor if actor is None else actor,
        outer.source if source is None else source,
        outer.client_ip if client_ip is None else client_ip,
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
        outer = _current.get()
        _open_blocks.set((*_open_blocks.get(), outer))
        inner = _layered(outer, **self._values)
        _current.set(inner)
        return inner

    def __exit__(self, *exc_info: object) -> None:
        # The context in force before the block is set back, not reset with a token: a generator's block
        # may close in a later step, which can run in another Context (a step awaited through a task of its
        # own), where a token made in the first would be refused.
        *enclosing, outer = _open_blocks.get()
        _current.set(outer)
        _open_blocks.set(tuple(enclosing))

    def __call__(self, func: _F) -> _F:
        """Decorate ``func``: a function, coroutine function, generator or async generator function.

        A generator's body runs in the context the decorator gives at every step, and only then: the code
        consuming it between two steps keeps its own context. The context is made when the body starts (the
        first ``next()`` or ``async for`` step), from the context in force there; changes the body makes
        (an ``audit_context`` block spanning a ``yield``) are kept from one step to the next.
        """
        values = self._values
        if inspect.isasyncgenfunction(func):
            return _async_generator_in_context(func, values)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(func):
            return _generator_in_context(func, values)  # type: ignore[return-value]
        if iscoroutinefunction(func):  # asgiref's test: a sync_to_async callable is a coroutine function too

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with audit_context(**values):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with audit_context(**values):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class StepContext:
    """The audit context of work done in steps (a generator, a streamed response) between its steps.

    ``with steps:`` around each step makes the work's context current, and on exit keeps what the step left
    (for the next step) and gives the caller back its own. Nothing the work sets is seen between steps, and
    nothing the caller sets between steps is seen by the work. Steps run one at a time, never nested.
    """

    __slots__ = ("_blocks", "_state", "_tokens")

    def __init__(self, state: AuditContext) -> None:
        self._state = state
        self._blocks: _Blocks = ()
        self._tokens: tuple[contextvars.Token[AuditContext], contextvars.Token[_Blocks]] | None = None

    def __enter__(self) -> None:
        self._tokens = (_current.set(self._state), _open_blocks.set(self._blocks))

    def __exit__(self, *exc_info: object) -> None:
        assert self._tokens is not None, "StepContext exited without being entered"
        current_token, blocks_token = self._tokens
        self._tokens = None
        self._state, self._blocks = _current.get(), _open_blocks.get()
        _current.reset(current_token)
        _open_blocks.reset(blocks_token)


def _generator_in_context(func: Callable[..., Any], values: dict[str, Any]) -> Callable[..., Any]:
    """A generator function that is ``func`` with every step of its body inside ``values``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        steps = StepContext(_layered(current(), **values))  # runs at the first step, not at the call
        return (yield from _steps(func(*args, **kwargs), steps))

    return wrapper


def _steps(generator: Generator[Any, Any, Any], steps: StepContext) -> Generator[Any, Any, Any]:
    """``yield from generator``, each of its steps (``send``, ``throw``, ``close``) run inside ``steps``."""
    resume: Callable[[Any], Any] = generator.send
    value: Any = None
    while True:
        try:
            with steps:
                item = resume(value)
        except StopIteration as stop:
            return stop.value
        resume = generator.send
        try:
            value = yield item
        except GeneratorExit:
            with steps:
                generator.close()
            raise
        except BaseException as exc:
            resume, value = generator.throw, exc


def _async_generator_in_context(func: Callable[..., Any], values: dict[str, Any]) -> Callable[..., Any]:
    """An async generator function that is ``func`` with every step of its body inside ``values``.

    The delegation is written out (``asend``, ``athrow``, ``aclose``): async generators have no
    ``yield from``. Holding the context across a step's awaits is safe: while they are pending only the
    step runs in this task, and other tasks have contexts of their own.
    """

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        steps = StepContext(_layered(current(), **values))
        generator = func(*args, **kwargs)
        resume: Callable[[Any], Any] = generator.asend
        value: Any = None
        while True:
            try:
                with steps:
                    item = await resume(value)
            except StopAsyncIteration:
                return
            resume = generator.asend
            try:
                value = yield item
            except GeneratorExit:
                with steps:
                    await generator.aclose()
                raise
            except BaseException as exc:
                resume, value = generator.athrow, exc

    return wrapper


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
