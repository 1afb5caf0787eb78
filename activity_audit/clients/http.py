"""Audited outbound HTTP on ``requests``: one ``audit.request`` record per HTTP exchange.

Two ways in, one implementation (:class:`AuditingAdapter`, which wraps whatever transport adapter the session
would have used, so adapters with retries or custom TLS keep working)::

    class Billing(HTTPClient):                      # the seed's way: a requests.Session subclass
        def __init__(self) -> None:
            super().__init__("billing")

        def invoice(self, number: str) -> dict:
            return self.get(f"https://billing.example/invoices/{number}", timeout=5).json()

    session = audit_session(requests.Session(), "billing")  # an existing session, without subclassing

Each exchange (each redirect hop is one) gives a record with ``protocol: "http"``, ``request_repr``
``{method, url, params, headers, body}`` and ``response_repr`` ``{status_code, headers, body}``, or
``response_repr: null`` and ``error_message`` when no response came (connection refused, timeout, TLS
error); the exception is then raised unchanged, as ``requests`` raises it. ``execution_time`` is in seconds,
from sending the request to having the whole body (or only the headers, for ``stream=True``).

On the calling thread the client only copies what was sent and received, bounded by the body cap: headers
as sent (``Authorization`` included: the ``redact`` plugin masks it on the worker thread), the query string
as ``params`` (repeated keys kept as lists), bodies summarised by
:func:`activity_audit.bodies.summarize_body`.
A streamed response (``stream=True``) is never read: its body is ``{"streamed": true, "type", "size"}``,
``size`` being ``Content-Length`` or ``null``. An upload from a file or generator is never read either.

The current request id (from the incoming request, or :class:`~activity_audit.audit_context`) is sent on as
``X-Request-ID`` unless the caller set that header.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..bodies import DEFAULT_MAX_BODY_BYTES, capture_headers, group_pairs, summarize_body
from ..conf import get_settings
from ..context import current
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

# A request id is only forwarded when it is a safe header value (visible ASCII, no CR/LF).
_HEADER_VALUE = re.compile(r"[\x21-\x7e]{1,200}")

_Timeout = float | tuple[float, float] | tuple[float, None] | None
_Cert = bytes | str | tuple[bytes | str, bytes | str] | None


class AuditingAdapter(BaseAdapter):
    """Sends through ``inner`` and records the exchange for ``service_name``."""

    def __init__(self, inner: BaseAdapter, service_name: str) -> None:
        super().__init__()
        self.inner = inner
        self.service_name = service_name

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: _Timeout = None,
        verify: bool | str = True,
        cert: _Cert = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        _forward_request_id(request)
        if not auditing_enabled():
            return self.inner.send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        started = time.perf_counter()
        try:
            response = self.inner.send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
            if not stream:
                response.content  # noqa: B018 - read now (Session.send would next) so the record has the body
        except Exception as exc:
            elapsed = time.perf_counter() - started
            self._record(request, None, stream, elapsed, _error_without_query(exc, request.url))
            raise
        self._record(request, response, stream, time.perf_counter() - started, None)
        return response

    def close(self) -> None:
        self.inner.close()

    def _record(
        self,
        request: PreparedRequest,
        response: Response | None,
        stream: bool,
        execution_time: float,
        error_message: str | None,
    ) -> None:
        try:
            max_bytes = _max_body_bytes()
            request_repr = describe_request(request, max_bytes)
            response_repr = describe_response(response, stream, max_bytes) if response is not None else None
        except Exception as exc:  # never let a capture problem reach the caller
            request_repr = {"method": request.method, "capture_error": describe_error(exc)}
            response_repr = None
        record_call(
            self.service_name,
            PROTOCOL,
            execution_time,
            error_message,
            request_repr=request_repr,
            response_repr=response_repr,
        )


class HTTPClient(requests.Session):
    """A ``requests.Session`` whose every exchange is audited under ``service_name``.

    Adapters mounted later (``self.mount(...)``) are audited too: the wrapping happens when a request picks
    its adapter.
    """

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

    session._activity_audit_service = name  # type: ignore[attr-defined]
    session.get_adapter = get_adapter  # type: ignore[method-assign]
    return session


class _ServiceName:
    """The service name of a session audited with :func:`audit_session` (mutable, for re-naming)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value


def describe_request(request: PreparedRequest, max_bytes: int) -> dict[str, Any]:
    """``{method, url, params, headers, body}`` of a prepared request; ``url`` without the query string."""
    scheme, netloc, path, query, _fragment = urlsplit(request.url or "")
    headers = capture_headers(request.headers)
    return {
        "method": request.method,
        "url": urlunsplit((scheme, netloc, path, "", "")),
        "params": group_pairs(parse_qsl(query, keep_blank_values=True)),
        "headers": headers,
        "body": _request_body(request.body, headers, max_bytes),
    }


def describe_response(response: Response, stream: bool, max_bytes: int) -> dict[str, Any]:
    """``{status_code, headers, body}``; a streamed body is described, never read."""
    headers = capture_headers(response.headers)
    content_type = response.headers.get("Content-Type")
    if stream:
        body: Any = {"streamed": True, "type": content_type, "size": _content_length(headers)}
    else:
        body = _summarize_bytes(content_type, response.content, max_bytes)
    return {"status_code": response.status_code, "headers": headers, "body": body}


def _request_body(body: Any, headers: Mapping[str, str], max_bytes: int) -> Any:
    content_type = _header(headers, "Content-Type")
    if body is None:
        return None
    if isinstance(body, str):
        # Encode no more than the cap needs; the size comes from Content-Length, set by requests.
        head = body[: max_bytes + 1].encode("utf-8")
        return summarize_body(
            content_type, io.BytesIO(head[: max_bytes + 1]), max_bytes, _content_length(headers)
        )
    if isinstance(body, (bytes, bytearray, memoryview)):
        return _summarize_bytes(content_type, body, max_bytes)
    # A file or a generator: reading it would take the upload away from the server.
    return {"streamed": True, "type": content_type, "size": _content_length(headers)}


def _summarize_bytes(content_type: str | None, data: bytes | bytearray | memoryview, max_bytes: int) -> Any:
    """Summarise ``data`` copying at most ``max_bytes + 1`` of it (bodies can be large)."""
    head = io.BytesIO(bytes(memoryview(data)[: max_bytes + 1]))
    return summarize_body(content_type, head, max_bytes, len(data))


def _content_length(headers: Mapping[str, str]) -> int | None:
    value = _header(headers, "Content-Length")
    return int(value) if value is not None and value.isdigit() else None


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
    value = getattr(get_settings(), "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_BODY_BYTES
