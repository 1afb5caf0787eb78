"""Audited outbound HTTP on ``requests``: one ``audit.request`` record per HTTP exchange.

Two ways in, one implementation (:class:`AuditingAdapter`, which wraps whatever transport adapter the session
would have used, so adapters with retries or custom TLS keep working)::

    class Billing(HTTPClient):                      # the seed's way: a requests.Session subclass
        def __init__(self) -> None:
            super().__init__("billing")

        def invoice(self, number: str) -> dict:
            return self.get(f"https://billing.example/invoices/{number}", timeout=5).json()

    session = audit_session(requests.Session(), "billing")  # an existing session, without subclassing

Each exchange (each redirect hop is one, and so is a request an auth handler resends through
``response.connection``, which is the auditing adapter) gives a record with ``protocol: "http"``,
``request_repr`` ``{method, url, params, headers, body}`` and ``response_repr`` ``{status_code, headers,
body}``, or ``response_repr: null`` and ``error_message`` when no response came (connection refused,
timeout, TLS error, or ``KeyboardInterrupt`` and any other ``BaseException``); the exception is then raised
unchanged, as ``requests`` raises it. Attempts urllib3 retried before the response are listed in
``retries`` (see :func:`retry_history`): urllib3 retries inside the transport adapter, so they are one
exchange here. ``execution_time`` is in seconds, from sending the request to having the whole body (or only
the headers, for ``stream=True``).

On the calling thread the client only copies what was sent and received, bounded by the body cap: headers
as sent (``Authorization`` included: the ``redact`` plugin masks it on the worker thread), the query string
as ``params`` (repeated keys kept as lists), bodies summarised by
:func:`activity_audit.bodies.summarize_body`.
A streamed response (``stream=True``) is never read: its body is ``{"streamed": true, "type", "size"}``,
``size`` being ``Content-Length`` or ``null``. An upload from a file or generator is never read either.
A body that cannot be read is ``{"unreadable": "<ExceptionClass>"}`` and ``error_message`` names the error,
which is then left to ``requests``: auditing never changes what a call does (see :func:`_read_body`).
A copy or an unpickled copy of an audited session stays audited. The body is read before ``requests`` runs
the ``response`` hooks, so a hook that reads ``r.raw`` gets ``b""`` (``r.content`` has the body) and hooks
run once the whole body arrived; ``r.elapsed`` stays the time until the headers (see
:func:`_keep_headers_elapsed`); see docs/outbound.md, "Known difference". ``session.get_adapter(url)``
gives the auditing adapter, which reads and sets every attribute on the adapter it wraps.

The current request id (from the incoming request, or :class:`~activity_audit.audit_context`) is sent on as
``X-Request-ID`` unless the caller set that header.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..bodies import DEFAULT_MAX_BODY_BYTES, capture_headers, group_pairs, is_encoded, summarize_body
from ..conf import get_settings
from ..context import current
from ..dispatch import pipeline
from ..reporting import where_it_failed
from .outbound import auditing_enabled, describe_error, record_call

try:
    import requests
    from requests.adapters import BaseAdapter
    from requests.models import PreparedRequest, Response
except ImportError as exc:  # pragma: no cover - exercised in a test that hides requests
    from .outbound import missing_extra

    raise missing_extra("requests", "http", "activity_audit.HTTPClient", exc) from exc

__all__ = ["REQUEST_ID_HEADER", "AuditingAdapter", "HTTPClient", "audit_session"]

PROTOCOL = "http"
REQUEST_ID_HEADER = "X-Request-ID"
_CAPTURE_SOURCE = "http"  # the source of a CAPTURE_FAILED report

# A request id is only forwarded when it is a safe header value (visible ASCII, no CR/LF).
_HEADER_VALUE = re.compile(r"[\x21-\x7e]{1,200}")

_Timeout = float | tuple[float, float] | tuple[float, None] | None
_Cert = bytes | str | tuple[bytes | str, bytes | str] | None
_T = TypeVar("_T")


class AuditingAdapter(BaseAdapter):
    """Sends through ``inner`` and records the exchange for ``service_name``.

    Stands for ``inner`` everywhere else: every attribute but ``inner`` and ``service_name`` is read from it,
    set on it and deleted from it, so that ``session.get_adapter(url).max_retries = Retry(...)`` configures
    the adapter that sends (as with plain ``requests``), and ``response.connection.poolmanager`` is there.
    """

    # The wrapper's own attributes; every other one is the wrapped adapter's.
    _OWN = frozenset({"inner", "service_name"})

    def __init__(self, inner: BaseAdapter, service_name: str) -> None:
        super().__init__()
        self.inner = inner
        self.service_name = service_name

    def __getattr__(self, name: str) -> Any:
        """Only called for what the wrapper lacks: the wrapped adapter's attribute."""
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("__"):  # half-built (copy, pickle): no forwarding, no recursion
            raise AttributeError(name)
        return getattr(inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            super().__setattr__(name, value)
        else:
            setattr(self.inner, name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._OWN:
            super().__delattr__(name)
        else:
            delattr(self.inner, name)

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: _Timeout = None,
        verify: bool | str = True,
        cert: _Cert = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        """Send through ``inner``; record the exchange (also when it ends in any exception, which is then
        raised unchanged). The response's ``connection`` is this adapter, so that a request resent through
        it (``HTTPDigestAuth`` answering a 401) is an exchange of its own, recorded too."""
        _forward_request_id(request)
        options: dict[str, Any] = {
            "stream": stream,
            "timeout": timeout,
            "verify": verify,
            "cert": cert,
            "proxies": proxies,
        }
        if not auditing_enabled():
            return self._through_here(self.inner.send(request, **options))
        started = time.perf_counter()
        try:
            response = self._through_here(self.inner.send(request, **options))
        except BaseException as exc:  # KeyboardInterrupt and SystemExit too: recorded, then raised
            elapsed = time.perf_counter() - started
            self._record(request, None, None, elapsed, _error_without_query(exc, request.url))
            raise
        if not stream:
            _keep_headers_elapsed(request, response, time.perf_counter() - started)
        try:
            body = None if stream else _read_body(response)
        except BaseException as exc:  # only what _read_body leaves to the caller: KeyboardInterrupt ...
            elapsed = time.perf_counter() - started
            self._record(request, response, exc, elapsed, _error_without_query(exc, request.url))
            raise
        error = _error_without_query(body, request.url) if isinstance(body, BaseException) else None
        self._record(request, response, body, time.perf_counter() - started, error)
        return response

    def _through_here(self, response: Response) -> Response:
        """``response``, its ``connection`` set to this adapter (``HTTPAdapter`` sets it to itself)."""
        # requests' stubs type it HTTPAdapter; requests only ever calls send() on it.
        response.connection = self  # type: ignore[assignment]
        return response

    def close(self) -> None:
        self.inner.close()

    def _record(
        self,
        request: PreparedRequest,
        response: Response | None,
        body: bytes | BaseException | None,
        execution_time: float,
        error_message: str | None,
    ) -> None:
        """Record the exchange; ``body`` is what :func:`_read_body` gave (or the exception that interrupted
        it), None for a streamed response. Attempts urllib3 made before ``response`` are listed as
        ``retries`` (see :func:`retry_history`); the field is absent when there were none.

        Each part is captured apart (and each body inside its part): what fails to be captured is replaced by
        what says so, and the rest (method, URL, status, headers) is recorded all the same.
        """
        max_bytes = _max_body_bytes()
        request_repr = _captured(
            lambda: describe_request(request, max_bytes), lambda exc: _bare_request(request, exc)
        )
        response_repr: dict[str, Any] | None = None
        retries: list[dict[str, Any]] = []
        if response is not None:
            response_repr = _captured(
                lambda: describe_response(response, body, max_bytes),
                lambda exc: _bare_response(response, exc, request.url),
            )
            retries = _captured(lambda: retry_history(response, request.url), lambda _exc: [])
        record_call(
            self.service_name,
            PROTOCOL,
            execution_time,
            error_message,
            request_repr=request_repr,
            response_repr=response_repr,
            **({"retries": retries} if retries else {}),
        )


def _captured(describe: Callable[[], _T], fallback: Callable[[Exception], _T]) -> _T:
    """``describe()``, or ``fallback(error)`` when it raised: a capture problem never reaches the caller,
    nor takes the other parts of the record with it, and is reported (``CAPTURE_FAILED`` from ``http``, the
    error's type and place: its message might quote what was being described)."""
    try:
        return describe()
    except Exception as exc:
        pipeline.reporter.problem("CAPTURE_FAILED", _CAPTURE_SOURCE, error=where_it_failed(exc))
        return fallback(exc)


def _bare_request(request: PreparedRequest, exc: Exception) -> dict[str, Any]:
    """What is sure to be known of a request that :func:`describe_request` could not describe."""
    return {
        "method": request.method,
        "url": _captured(lambda: _without_query(request.url), lambda _exc: None),
        "capture_error": _error_without_query(exc, request.url),
    }


def _bare_response(response: Response, exc: Exception, url: str | None) -> dict[str, Any]:
    """What is sure to be known of a response that :func:`describe_response` could not describe."""
    return {"status_code": response.status_code, "capture_error": _error_without_query(exc, url)}


def _keep_headers_elapsed(request: PreparedRequest, response: Response, seconds: float) -> None:
    """Keep ``response.elapsed`` what ``requests`` makes it: the time until the headers arrived.

    ``Session.send`` times ``adapter.send``, which here also reads the body for the record, then runs the
    ``response`` hooks. So the time until the headers is kept on the response, and
    :func:`_restore_headers_elapsed`, put first among the request's response hooks (once: a redirect's
    request shares them), sets it back before any hook of the caller's sees it. A response no
    ``Session.send`` handles (one an auth handler got through ``response.connection``) keeps the
    ``elapsed`` it has without auditing.
    """
    response.__dict__[_HEADERS_ELAPSED] = timedelta(seconds=seconds)
    hooks = request.hooks.get("response") if isinstance(request.hooks, dict) else None
    if isinstance(hooks, list) and _restore_headers_elapsed not in hooks:
        hooks.insert(0, _restore_headers_elapsed)


# Where _keep_headers_elapsed leaves the time until the headers, for _restore_headers_elapsed.
_HEADERS_ELAPSED = "_activity_audit_headers_elapsed"


def _restore_headers_elapsed(response: Response, *_args: Any, **_kwargs: Any) -> None:
    """A ``response`` hook: ``response.elapsed`` back to the time until the headers arrived."""
    elapsed = response.__dict__.pop(_HEADERS_ELAPSED, None)
    if elapsed is not None:
        response.elapsed = elapsed


class HTTPClient(requests.Session):
    """A ``requests.Session`` whose every exchange is audited under ``service_name``.

    Adapters mounted later (``self.mount(...)``) are audited too: the wrapping happens when a request picks
    its adapter.
    """

    # What requests.Session pickles and copies, plus the service name (a copy must stay audited).
    __attrs__ = [*requests.Session.__attrs__, "service_name"]

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def get_adapter(self, url: str) -> BaseAdapter:
        return AuditingAdapter(super().get_adapter(url), self.service_name)


def audit_session(session: requests.Session, service_name: str) -> requests.Session:
    """Audit every exchange of an existing ``session`` under ``service_name``; returns the same session.

    Calling it again only changes the service name. Works for adapters mounted before or after the call.
    """
    if isinstance(session, HTTPClient):
        session.service_name = service_name
        return session
    existing = getattr(session, "_activity_audit_service", None)
    if isinstance(existing, _ServiceName):
        existing.value = service_name
        return session
    name = _ServiceName(service_name)
    choose_adapter = session.get_adapter

    def get_adapter(url: str) -> BaseAdapter:
        return AuditingAdapter(choose_adapter(url), name.value)

    def reduce_audited(_protocol: int) -> tuple[Any, ...]:
        return _audited_again, (type(session), session.__getstate__(), name.value)

    session._activity_audit_service = name  # type: ignore[attr-defined]
    session.get_adapter = get_adapter  # type: ignore[method-assign]
    # pickle and copy look __reduce_ex__ up on the instance: a copy or an unpickled session stays audited.
    session.__reduce_ex__ = reduce_audited  # type: ignore[assignment,method-assign]
    return session


def _audited_again(cls: type[requests.Session], state: dict[str, Any], service_name: str) -> requests.Session:
    """Rebuild a pickled (or copied) session audited with :func:`audit_session`, audited again."""
    session = cls.__new__(cls)
    session.__setstate__(state)  # type: ignore[attr-defined]  # requests defines it; its stubs do not
    return audit_session(session, service_name)


class _ServiceName:
    """The service name of a session audited with :func:`audit_session` (mutable, for re-naming)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value


def describe_request(request: PreparedRequest, max_bytes: int) -> dict[str, Any]:
    """``{method, url, params, headers, body}`` of a prepared request; ``url`` without the query string.

    A body that cannot be described is ``{"type", "size": null, "error": "<ExceptionClass>"}``.
    """
    headers = capture_headers(request.headers)
    content_type = _header(headers, "Content-Type")
    return {
        "method": request.method,
        "url": _without_query(request.url),
        "params": group_pairs(parse_qsl(urlsplit(request.url or "").query, keep_blank_values=True)),
        "headers": headers,
        "body": _captured(
            lambda: _request_body(request.body, headers, max_bytes), lambda exc: _no_body(content_type, exc)
        ),
    }


def _without_query(url: str | None) -> str:
    """``url`` without its query string and fragment (the query can hold tokens; ``params`` has it)."""
    scheme, netloc, path, _query, _fragment = urlsplit(url or "")
    return urlunsplit((scheme, netloc, path, "", ""))


def _no_body(content_type: str | None, exc: Exception) -> dict[str, Any]:
    """A body that could not be described, in the shape :mod:`activity_audit.bodies` gives to one."""
    return {"type": content_type, "size": None, "error": type(exc).__name__}


def retry_history(response: Response, url: str | None) -> list[dict[str, Any]]:
    """The attempts urllib3 made and retried before ``response`` (``Retry`` in the adapter), oldest first.

    urllib3 retries inside the transport adapter, so they are one exchange to ``requests`` and one record
    here; this list, read from ``response.raw.retries.history``, says what the earlier attempts got:
    ``{"status": 503}`` for a response it retried, ``{"error": "<ExceptionClass>: <message>"}`` for an
    attempt that got no response, ``"redirect"`` (the ``Location``, without its query) for a redirect it
    followed. Empty when there was no retry, or the response did not come from urllib3.
    """
    retries = getattr(getattr(response, "raw", None), "retries", None)
    history = getattr(retries, "history", None)
    if not isinstance(history, tuple):
        return []
    return [_attempt(entry, url) for entry in history]


def _attempt(entry: Any, url: str | None) -> dict[str, Any]:
    """One urllib3 ``RequestHistory`` entry (``method, url, error, status, redirect_location``)."""
    attempt: dict[str, Any] = {}
    if entry.status is not None:
        attempt["status"] = entry.status
    if entry.error is not None:
        attempt["error"] = _error_without_query(entry.error, url)
    if entry.redirect_location:
        attempt["redirect"] = _without_query(str(entry.redirect_location))
    return attempt


def describe_response(
    response: Response, body: bytes | BaseException | None, max_bytes: int
) -> dict[str, Any]:
    """``{status_code, headers, body}`` of a response whose body was read as ``body`` (never read here).

    ``body`` is None for a streamed response (described as ``{"streamed": true, "type", "size"}``), or the
    error that reading it met (``{"unreadable": "<ExceptionClass>"}``). A body that cannot be described is
    ``{"type", "size": null, "error": "<ExceptionClass>"}``.
    """
    headers = capture_headers(response.headers)
    content_type = response.headers.get("Content-Type")
    summary = _captured(
        lambda: _response_body(response, content_type, headers, body, max_bytes),
        lambda exc: _no_body(content_type, exc),
    )
    return {"status_code": response.status_code, "headers": headers, "body": summary}


def _response_body(
    response: Response,
    content_type: str | None,
    headers: Mapping[str, str],
    body: bytes | BaseException | None,
    max_bytes: int,
) -> Any:
    """The ``body`` of :func:`describe_response`."""
    if body is None:
        return {"streamed": True, "type": content_type, "size": _content_length(headers)}
    if isinstance(body, BaseException):
        return {"unreadable": type(body).__name__}
    return _summarize_bytes(content_type, body, max_bytes, _still_encoded(response, body))


def _still_encoded(response: Response, body: bytes) -> str | None:
    """The ``Content-Encoding`` of ``body`` as ``response.content`` holds it: None when there is nothing to
    undo (no coding, ``identity``, no bytes) or urllib3 decoded it, else the header.

    Decided from what urllib3 did, not from the header: urllib3 decodes only the codings it matches exactly
    (``gzip ``, with a space, is handed over compressed), and ``requests`` decodes nothing itself, so a body
    that did not come through a urllib3 decoder is as it was sent.
    """
    content_encoding = response.headers.get("Content-Encoding")
    if not body or not is_encoded(content_encoding) or _decoded_by_urllib3(response.raw):
        return None
    return content_encoding


def _decoded_by_urllib3(raw: Any) -> bool:
    """True when ``raw`` (``response.raw``) is a urllib3 response that ran its body through a decoder.

    ``_decoder`` is set when urllib3 chose a decoder for the ``Content-Encoding`` (at the first read), and
    ``_has_decoded_content`` once it decoded bytes (it drops ``_decoder`` when it drains the connection).
    Anything else (an adapter's own ``raw``, a later urllib3 that names them otherwise) counts as not
    decoded: its body is described, never kept.
    """
    return getattr(raw, "_decoder", None) is not None or getattr(raw, "_has_decoded_content", False) is True


def _read_body(response: Response) -> bytes | Exception:
    """Read the body now, as ``Session.send`` would next, so that the record has it; or the error it met.

    The error is not raised here: what happens to it is ``requests``' decision, taken when it reads the body
    itself (it raises it, or ignores it for a redirect hop it follows). :class:`_ReplayedReadError` makes
    that next read meet the same error, so the caller sees what it would see without auditing.
    """
    try:
        content = response.content
    except Exception as exc:
        response.raw = _ReplayedReadError(response, exc)
        return exc
    return content if content is not None else b""


class _ReplayedReadError:
    """Stands in for ``response.raw`` after reading the body for the record failed.

    ``requests`` reads the body through ``raw.stream`` (or ``raw.read``); the first such call raises the
    error again and puts the real ``raw`` back, so that what ``requests`` does next (drain the connection
    with ``raw.read(decode_content=False)`` after a redirect hop, say) reaches the real one. Every other
    attribute is the real ``raw``'s.
    """

    def __init__(self, response: Response, error: Exception) -> None:
        self._response = response
        self._raw = response.raw
        self._error = error

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._raw, name)  # an AttributeError here keeps hasattr(raw, "stream") truthful
        if name not in ("stream", "read"):
            return value

        def replay(*_args: Any, **_kwargs: Any) -> Any:
            self._response.raw = self._raw
            raise self._error

        return replay


def _request_body(body: Any, headers: Mapping[str, str], max_bytes: int) -> Any:
    content_type = _header(headers, "Content-Type")
    if body is None:
        return None
    if isinstance(body, str):
        # Encode no more than the cap needs; the size comes from Content-Length, set by requests.
        head = body[: max_bytes + 1].encode("utf-8")
        return summarize_body(
            content_type,
            io.BytesIO(head[: max_bytes + 1]),
            max_bytes,
            _content_length(headers),
            _header(headers, "Content-Encoding"),
        )
    if isinstance(body, (bytes, bytearray, memoryview)):
        return _summarize_bytes(content_type, body, max_bytes, _header(headers, "Content-Encoding"))
    # A file or a generator: reading it would take the upload away from the server.
    return {"streamed": True, "type": content_type, "size": _content_length(headers)}


def _summarize_bytes(
    content_type: str | None,
    data: bytes | bytearray | memoryview,
    max_bytes: int,
    content_encoding: str | None = None,
) -> Any:
    """Summarise ``data`` copying at most ``max_bytes + 1`` of it (bodies can be large); an encoded body
    (gzip ...) is described, never kept."""
    head = io.BytesIO(bytes(memoryview(data)[: max_bytes + 1]))
    return summarize_body(content_type, head, max_bytes, len(data), content_encoding)


def _content_length(headers: Mapping[str, str]) -> int | None:
    """``Content-Length`` as a number; None when absent or not a number of ASCII digits (``²`` is a digit to
    ``str.isdigit``, not to ``int``)."""
    value = (_header(headers, "Content-Length") or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= _MAX_LENGTH_DIGITS else None


# More digits than any body has (and far fewer than int() refuses to read).
_MAX_LENGTH_DIGITS = 20


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _forward_request_id(request: PreparedRequest) -> None:
    request_id = current().request_id
    if request_id and REQUEST_ID_HEADER not in request.headers and _HEADER_VALUE.fullmatch(request_id):
        request.headers[REQUEST_ID_HEADER] = request_id


def _error_without_query(exc: BaseException, url: str | None) -> str:
    """The error message, with the URL's query string cut out (it can hold tokens; ``params`` has it)."""
    message = describe_error(exc)
    query = urlsplit(url or "").query
    return message.replace(f"?{query}", "?…") if query else message


def _max_body_bytes() -> int:
    """The body cap (``MAX_BODY_BYTES``), or the default when the settings cannot give a usable one."""
    value = _captured(
        lambda: getattr(get_settings(), "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES), lambda _exc: None
    )
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_BODY_BYTES
