"""``AuditLoggingMiddleware``: one ``audit.request`` record per incoming request.

Add it to ``MIDDLEWARE`` first, so that it sees every request and every response, also those other
middleware answer or refuse; the user is read when the record needs it, whichever middleware set it::

    MIDDLEWARE = ["activity_audit.middleware.AuditLoggingMiddleware",
                  "django.middleware.security.SecurityMiddleware", ...]

It runs natively in WSGI and ASGI stacks (no thread switch). For the duration of the request it binds the
request, its id and the client address to the audit context (:mod:`activity_audit.context`), so every CRUD
record the request causes carries the same ``request_id``; the context is restored in ``finally`` whatever
happens, also for skipped paths. A streaming response's content is produced after that: each of its steps
runs with the request's context set again.

Auditing never breaks a request: a failure inside it is reported through the pipeline's reporter and the
response goes out unchanged; a failure that costs the record is reported as one record lost. Failing to read
the user costs nothing but the user: the record says actor ``unknown`` and ``actor_error`` (the exception's
class), and the failure is reported once as ``ACTOR_UNKNOWN``. An exception raised by the view is recorded
(status 500, class and message) and still reaches Django exactly as before. A request cancelled at any point
(the ASGI client went away), also while the user is read after the view, is recorded too, with status null.
The record's schema is in ``docs/requests.md``.
"""

from __future__ import annotations

import contextvars
import io
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.utils.log import log_response

from .actor import (
    ANONYMOUS_ACTOR,
    Actor,
    actor_from_user,
    actor_or_unknown,
    authenticated_user_async,
    unknown_actor,
)
from .context import StepContext, current, pop, push, request_scope
from .dispatch import pipeline
from .emit import emit_request
from .encoding import Snapshotter
from .records import new_record, now
from .request_capture import (
    RequestRules,
    _FailedStream,
    client_address,
    current_rules,
    deferred_query_params,
    deferred_request_headers,
    deferred_response_headers,
    error_text,
    held,
    preload_request_body,
    request_body,
    request_id,
    response_body,
    route_of,
)

REQUEST_LOGGER = "audit.request"
REQUEST_MESSAGE = "Audit Internal Request"
_SOURCE = "AuditLoggingMiddleware"


class _InFlight:
    """What the middleware knows about one request between its start and its record."""

    __slots__ = (
        "body_error",
        "client_ip",
        "elapsed",
        "exception",
        "request_id",
        "rules",
        "skipped",
        "started",
        "timestamp",
    )

    def __init__(self, rules: RequestRules, request_id: str, client_ip: str | None, skipped: bool) -> None:
        self.rules = rules
        self.request_id = request_id
        self.client_ip = client_ip
        self.skipped = skipped
        self.exception: BaseException | None = None
        self.body_error: str | None = None  # the class of the error met reading the body before the view
        self.timestamp = now()
        self.started = time.perf_counter()
        self.elapsed = 0.0

    def stop(self) -> None:
        """Note that the stack below answered (or raised): ``execution_time`` ends here, before the audit's
        own work (reading the user after the view) begins."""
        self.elapsed = time.perf_counter() - self.started


_in_flight: contextvars.ContextVar[_InFlight | None] = contextvars.ContextVar(
    "activity_audit_request", default=None
)


class AuditLoggingMiddleware:
    """Audit every incoming request and its response (see the module docstring)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        flight = _start(request)
        if flight is None:
            return self.get_response(request)
        scope = push(request=request, request_id=flight.request_id, client_ip=flight.client_ip)
        try:
            token = _in_flight.set(flight)
            try:
                response = self.get_response(request)
            except BaseException as exc:
                flight.stop()
                _finish(flight, request, None, exc, None)
                raise
            finally:
                _in_flight.reset(token)
            flight.stop()
            _finish(flight, request, response, None, None)
            if getattr(response, "status_code", 200) >= 400:
                _log_error_response(request, response)
            if getattr(response, "streaming", False):
                _stream_in_request_context(response)
        finally:
            pop(scope)
        return response

    async def __acall__(self, request: Any) -> Any:
        flight = _start(request)
        if flight is None:
            return await self.get_response(request)
        with request_scope(request, flight.request_id, flight.client_ip):
            token = _in_flight.set(flight)
            try:
                response = await self.get_response(request)
            except BaseException as exc:
                flight.stop()
                await _finish_async(flight, request, None, exc)
                raise
            finally:
                _in_flight.reset(token)
            flight.stop()
            await _finish_async(flight, request, response, None)
            if getattr(response, "status_code", 200) >= 400:
                await sync_to_async(_log_error_response, thread_sensitive=False)(request, response)
            if getattr(response, "streaming", False):
                _stream_in_request_context(response)
        return response

    def process_exception(self, request: Any, exception: Exception) -> None:
        """Note the view's exception for the record; Django goes on handling it as before.

        Django always calls ``process_exception`` synchronously (in async stacks through ``sync_to_async``,
        which carries the context variables over), so this stays a plain method.
        """
        flight = _in_flight.get()
        if flight is not None:
            flight.exception = exception


def _start(request: Any) -> _InFlight | None:
    """Before the view: the request's id and client, and a small textual body cached. Never raises.

    None when auditing is off altogether (the request then passes through untouched).
    """
    if not pipeline.enabled:
        return None
    try:
        rules = current_rules()
        meta = request.META
        skipped = rules.is_skipped(request.path)
        flight = _InFlight(
            rules, request_id(meta, rules), client_address(meta, rules.trusted_proxies), skipped
        )
    except Exception as exc:
        _report(exc, lost=1)  # whether the path was skipped is unknown: counted as a record lost
        return None
    if not skipped:
        try:
            untouched = request._read_started is False
        except AttributeError:  # not a request Django made: no stream of Django's to give back
            untouched = False
        try:
            flight.body_error = preload_request_body(request, rules)
            if untouched and (request._read_started or flight.body_error is not None):
                _give_back_wsgi_input(request)  # the body was read here, before the view
        except Exception as exc:
            _report(exc)
    return flight


def _give_back_wsgi_input(request: Any) -> None:
    """After the body was read before the view: a ``wsgi.input`` that reads what the server's would have.

    The body was read from the server's stream, so a view reading ``request.META["wsgi.input"]`` would get
    nothing. Reading lazily instead (on the view's first read) is not possible: the record must show a body
    that a framework reads through ``request.stream``, which never passes through the middleware again. So
    the environ gets Django's own stream back: after ``request.body``, the in-memory copy of the bytes read
    (at most ``MAX_BODY_BYTES``); after a failed read, the stream raising the server's error. It is the very
    object ``request.read()`` and ``request.stream`` read, so, as without the audit, whatever reads first
    consumes the bytes for the other. Only the environ's entry changes: servers drain and close the stream
    object they made, never the one in the environ.
    """
    meta = request.META
    stream = request.__dict__.get("_stream")
    if "wsgi.input" in meta and type(stream) in (io.BytesIO, _FailedStream):  # not ASGI, and Django's
        meta["wsgi.input"] = stream


def _finish(
    flight: _InFlight,
    request: Any,
    response: Any,
    exc: BaseException | None,
    actor: Actor | None,
) -> None:
    """After the view, inside the request's scope: echo the id, build and emit the record. Never raises.

    ``actor`` None: read it now (:func:`_actor_after_view`). A failure that costs the record is reported as
    one record lost; one that does not (echoing the id) is reported without loss.
    """
    try:
        if response is not None:
            _echo_request_id(response, flight.rules.request_id_header, flight.request_id)
    except Exception as failure:
        _report(failure)
    if flight.skipped:
        return
    try:
        emit_request(_record(flight, request, response, exc or flight.exception, actor))
    except Exception as failure:
        _report(failure, lost=1)


def _log_error_response(request: Any, response: Any) -> None:
    """Log a 4xx or 5xx response (``Not Found: /x``) as Django's handler does once the middleware chain has
    returned, but now, while this request's scope is in force, so that the ``django.request`` line carries
    the request's id in ``app.log``. Django logs a response once: its own call then does nothing. A failure
    here is reported; it never reaches the client."""
    try:
        log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
    except Exception as failure:
        _report(failure)


def _echo_request_id(response: Any, header: str, request_id: str) -> None:
    """Echo ``request_id`` in the response's ``header``, unless the view or a middleware set it itself.

    A response object may be returned for more than one request (a cached response, an ``lru_cache``'d
    view, ``UpdateCacheMiddleware`` listed before this one): a header this middleware wrote for an earlier
    request (noted on the response, and still holding what was written) gets this request's id instead.
    """
    if header not in response or getattr(response, "_activity_audit_request_id", None) == response[header]:
        response[header] = response._activity_audit_request_id = request_id


def _actor_after_view() -> Actor:
    """The request's actor, read now, after the view. Never raises: a failure gives :func:`unknown_actor`,
    reported once."""
    return actor_or_unknown(_SOURCE, after_view=True)


def _actor_unknown(exc: BaseException) -> Actor:
    pipeline.reporter.problem("ACTOR_UNKNOWN", _SOURCE, error=f"{type(exc).__name__}: {exc}")
    return unknown_actor(exc)


def _record(
    flight: _InFlight,
    request: Any,
    response: Any,
    exc: BaseException | None,
    actor: Actor | None,
) -> dict[str, Any]:
    rules = flight.rules
    who = _actor_after_view() if actor is None else actor
    keeps_body = rules.keeps_body(request.method, request.path)
    meta = request.META
    copier = Snapshotter(rules.limits)
    status = response.status_code if response is not None else (500 if isinstance(exc, Exception) else None)
    # Everything below is built fresh from strings (no caller-held object is kept), so only the caps of
    # ``MAX_FIELD_CHARS`` & co. apply: ``held`` enforces them on what could exceed them. Headers, query
    # parameters and small bodies stay ``Pending`` (immutable values or private copies) and are built on the
    # worker, see ``request_capture``.
    request_repr = {
        "method": request.method,
        "path": held(request.path, copier),
        "query_params": deferred_query_params(request, copier),
        "headers": deferred_request_headers(meta, copier),
        "user": who.user,
        "body": request_body(request, rules, copier, flight.body_error) if keeps_body else None,
    }
    response_repr = {
        "status_code": status,
        "headers": deferred_response_headers(response, copier) if response is not None else {},
        "body": response_body(response, rules.max_body_bytes, copier) if keeps_body and response else None,
    }
    record = new_record(
        "API",
        REQUEST_LOGGER,
        REQUEST_MESSAGE,
        flight.timestamp,
        service_name=rules.settings.SERVICE_NAME,
        request_type="internal",
        protocol="http",
        request_repr=request_repr,
        response_repr=response_repr,
        error_message=error_text(exc) if exc is not None else None,
        execution_time=flight.elapsed,
        request_id=flight.request_id,
        client_ip=flight.client_ip,
        forwarded_for=_text_of(meta.get("HTTP_X_FORWARDED_FOR"), copier),
        user_agent=_text_of(meta.get("HTTP_USER_AGENT"), copier),
        route=route_of(request),
        actor=who.name,
    )
    if who.error is not None:
        record["actor_error"] = who.error
    sensitive = getattr(request, "sensitive_post_parameters", None)
    if sensitive:
        record["sensitive_post_parameters"] = copier.copy(sensitive)
    if copier.truncated:
        record["truncated"] = True
    return record


def _text_of(value: Any, copier: Snapshotter) -> Any:
    """A META value as the record keeps it: a short string as it is, anything else through ``copier``."""
    if value is None or (type(value) is str and len(value) <= copier.limits.max_chars):
        return value
    return copier.copy(value)


async def _finish_async(flight: _InFlight, request: Any, response: Any, exc: BaseException | None) -> None:
    """:func:`_finish` in an async stack, the actor read first on the event loop
    (:func:`_actor_after_async_view`). Raises only what interrupts that read, once the record is written.

    When the ASGI client goes away while the user is read, Django cancels the request's task: the record is
    written all the same, as that of a request whose response was never sent (no response: status null, or
    500 when the view raised), ``error_message`` the view's exception or else the interruption
    (``CancelledError``), and actor ``unknown`` with ``actor_error`` naming the interruption, not reported (a
    client leaving is no fault of the audit's). Then the interruption goes on.
    """
    try:
        actor = await _actor_after_async_view(flight, request)
    except BaseException as interruption:
        _finish(flight, request, None, exc or flight.exception or interruption, unknown_actor(interruption))
        raise
    _finish(flight, request, response, exc, actor)


async def _actor_after_async_view(flight: _InFlight, request: Any) -> Actor | None:
    """The actor for the record, without a synchronous database query on the event loop. Never raises.

    A user the view never looked at is read as :func:`~activity_audit.actor.authenticated_user_async` does,
    which leaves the session as the view left it (its ``accessed`` flag, and so the response's ``Vary``, too).
    None when nothing needs reading (no record, or an explicit actor): the record resolves it then.
    A failure gives :func:`~activity_audit.actor.unknown_actor`, reported once.
    """
    if flight.skipped or current().actor is not None:
        return None
    try:
        user = await authenticated_user_async(request)
        return ANONYMOUS_ACTOR if user is None else actor_from_user(user)
    except Exception as exc:
        return _actor_unknown(exc)


def _stream_in_request_context(response: Any) -> None:
    """Run each step of a streaming response's content with the request's audit context. Never raises.

    The content is produced after the middleware returned, while the server sends it: without this, a save
    made by the generator would have no request. Nothing is consumed or buffered. ``_iterator`` is replaced
    rather than ``streaming_content`` set, which would cost ``FileResponse`` its ``wsgi.file_wrapper``
    (sendfile) and encode every chunk twice.
    """
    iterator = getattr(response, "_iterator", None)
    if iterator is None:  # a streaming response of a kind Django does not make: sent as it is
        return
    try:
        steps = StepContext(current())
        if getattr(response, "is_async", False):
            response._iterator = _async_steps(iterator, steps)
        else:
            stream = _steps(iterator, steps)
            response._iterator = stream
            response._resource_closers.insert(0, stream.close)  # before the original's own closer
    except Exception as exc:
        _report(exc)


def _steps(iterator: Iterator[Any], steps: StepContext) -> Generator[Any, None, None]:
    """What ``iterator`` yields, each step inside ``steps``; closing this closes ``iterator``, inside too."""
    try:
        while True:
            with steps:
                try:
                    part = next(iterator)
                except StopIteration:
                    return
            yield part
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            with steps:
                close()


async def _async_steps(iterator: AsyncIterator[Any], steps: StepContext) -> AsyncGenerator[Any, None]:
    """:func:`_steps` for an async iterator (closed through ``aclose``)."""
    try:
        while True:
            with steps:
                try:
                    part = await anext(iterator)
                except StopAsyncIteration:
                    return
            yield part
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            with steps:
                await close()


def _report(exc: BaseException, lost: int = 0) -> None:
    pipeline.reporter.problem("CAPTURE_FAILED", _SOURCE, lost=lost, error=f"{type(exc).__name__}: {exc}")
