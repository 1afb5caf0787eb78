"""Requests at the edges of their life, each with the exact record fields concerned and exactly one record
per request.

ASGI requests here go through Django's own ``ASGIHandler``, driven as a server drives it (the body in
``http.request`` messages, then ``http.disconnect`` when the client goes), so that the request's body is the
file Django receives it into and a disconnect cancels the request's task as it does under uvicorn."""

from __future__ import annotations

import asyncio
import functools
import io
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from unittest import mock

import django
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import AnonymousUser, User
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIRequest
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils.deprecation import MiddlewareMixin
from django.utils.functional import SimpleLazyObject

from activity_audit import actor, middleware
from activity_audit.dispatch import pipeline
from activity_audit.middleware import AuditLoggingMiddleware

pytestmark = pytest.mark.django_db

AUDIT = "activity_audit.middleware.AuditLoggingMiddleware"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
AUTHENTICATION = "django.contrib.auth.middleware.AuthenticationMiddleware"
STACK = [AUDIT, SESSIONS, AUTHENTICATION]
SESSION_COOKIE = (b"cookie", b"sessionid=k3y0fas3ssion")  # a session the audit must look up
JSON = {"order": 42}
JSON_BYTES = b'{"order": 42}'
USER_QUERY = re.compile(r"\bauth_user\b")


# --- views -----------------------------------------------------------------------------------------------


async def answers_at_once(request: HttpRequest) -> HttpResponse:
    return HttpResponse("fast", content_type="text/plain")


async def raises(request: HttpRequest) -> HttpResponse:
    raise ValueError("the view failed")


class Clock:
    """``time.perf_counter`` for the middleware, moved on by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


CLOCK = Clock()


def slow_user() -> AnonymousUser:
    CLOCK.now += 100.0  # the audit's own read of the user after the view
    return AnonymousUser()


class SlowUserMiddleware(MiddlewareMixin):
    """An authentication layer whose user costs 100 (clock) seconds to read."""

    def process_request(self, request: HttpRequest) -> None:
        request.user = SimpleLazyObject(slow_user)  # type: ignore[assignment]


def takes_a_quarter(request: HttpRequest) -> HttpResponse:
    CLOCK.now += 0.25
    return HttpResponse("done", content_type="text/plain")


async def atakes_a_quarter(request: HttpRequest) -> HttpResponse:
    return takes_a_quarter(request)


@functools.cache
def maintenance_page() -> HttpResponse:
    return HttpResponse("down for maintenance", status=503, content_type="text/plain")


def maintenance(request: HttpRequest) -> HttpResponse:
    """Answers every request with one and the same response object."""
    return maintenance_page()


@functools.cache
def traced_page() -> HttpResponse:
    response = HttpResponse("traced", content_type="text/plain")
    response["X-Request-ID"] = "set-by-the-view"
    return response


def traced(request: HttpRequest) -> HttpResponse:
    """One and the same response object, whose id header the view set itself."""
    return traced_page()


def cacheable(request: HttpRequest) -> HttpResponse:
    return HttpResponse("the same for everybody", content_type="text/plain")


async def ignores_body(request: HttpRequest) -> HttpResponse:
    return HttpResponse("not read", content_type="text/plain")


async def reads_body(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="text/plain")


def sync_reads_body(request: HttpRequest) -> HttpResponse:
    return HttpResponse(repr(request.body), content_type="text/plain")


def sync_ignores_body(request: HttpRequest) -> HttpResponse:
    return HttpResponse("not read", content_type="text/plain")


async def loads_user_async(request: HttpRequest) -> HttpResponse:
    user = await request.auser()  # type: ignore[attr-defined]  # Django 5.0+
    return HttpResponse(f"hello {user.username}", content_type="text/plain")


urlpatterns = [
    path("fast/", answers_at_once),
    path("raises/", raises),
    path("quarter/", takes_a_quarter),
    path("aquarter/", atakes_a_quarter),
    path("maintenance/", maintenance),
    path("traced/", traced),
    path("cacheable/", cacheable),
    path("ignores-body/", ignores_body),
    path("reads-body/", reads_body),
    path("auser/", loads_user_async),
]


@pytest.fixture
def stack(settings) -> list[str]:
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = STACK
    return STACK


def only_record(audit_records) -> dict[str, Any]:
    records = audit_records.of("audit.request")
    assert len(records) == 1, records
    return records[0]


def reports():
    """A spy on the pipeline's reporter."""
    return mock.patch.object(pipeline.reporter, "problem", wraps=pipeline.reporter.problem)


# --- driving Django's ASGI handler ----------------------------------------------------------------------


async def serve_asgi(
    path: str,
    *,
    method: str = "GET",
    headers: Iterable[tuple[bytes, bytes]] = (),
    body: Iterable[bytes] = (b"",),
    client_gone: Callable[[], Awaitable[Any]] | None = None,
) -> list[dict[str, Any]]:
    """One request through Django's ``ASGIHandler``; the messages it sent.

    ``body`` is sent as ``http.request`` messages, one per piece. Then the client stays until the handler
    ends the request, or, with ``client_gone``, goes away (``http.disconnect``) once that has returned.
    """
    pieces = list(body)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pieces:
            piece = pieces.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(pieces)}
        await (client_gone() if client_gone is not None else asyncio.Event().wait())
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await ASGIHandler()(scope, receive, send)
    return sent


# --- the ASGI client goes away while the audit reads the user after the view ------------------------------


@pytest.mark.skipif(django.VERSION < (5, 0), reason="Django 5.0+ cancels a request whose client went away")
@pytest.mark.parametrize(
    ("url", "status", "error"),
    [("/fast/", None, "CancelledError"), ("/raises/", 500, "ValueError: the view failed")],
    ids=["view answered", "view raised"],
)
def test_a_client_gone_while_the_user_is_read_after_the_view_still_gets_its_record(
    stack, audit_records, url, status, error
):
    async def scenario() -> list[dict[str, Any]]:
        lookup_started = asyncio.Event()

        async def session_store_that_never_answers(request: HttpRequest) -> Any:
            lookup_started.set()
            await asyncio.Event().wait()  # only the request's cancellation ends it

        with mock.patch.object(actor, "asession_user", session_store_that_never_answers):
            served = serve_asgi(url, headers=[SESSION_COOKIE], client_gone=lookup_started.wait)
            return await asyncio.wait_for(served, timeout=10)  # fails, rather than hangs, if nothing cancels

    with reports() as spy:
        sent = async_to_sync(scenario)()

    assert sent == []  # the response never went out
    record = only_record(audit_records)
    assert record["request_repr"]["path"] == url
    assert record["response_repr"] == {"status_code": status, "headers": {}, "body": None}
    assert record["error_message"] == error
    assert (record["actor"], record["actor_error"], record["request_repr"]["user"]) == (
        "unknown",
        "CancelledError",
        None,
    )
    assert spy.call_args_list == []  # a client leaving is no fault of the audit's


# --- execution_time ends when the stack below answered ----------------------------------------------------


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_execution_time_leaves_out_the_audits_own_read_of_the_user(settings, audit_records, kind):
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = [AUDIT, f"{__name__}.SlowUserMiddleware"]
    with mock.patch.object(middleware, "time", CLOCK):
        if kind == "wsgi":
            Client().get("/quarter/")
        else:
            async_to_sync(AsyncClient().get)("/aquarter/")

    record = only_record(audit_records)
    assert (record["execution_time"], record["actor"]) == (0.25, "anonymous")


# --- one response object answered to several requests -----------------------------------------------------


def test_a_response_object_answered_again_carries_each_requests_own_id(stack, audit_records):
    client = Client()
    sent = ["client-a-0001", "client-b-0002", "client-c-0003"]

    echoed = [
        client.get("/maintenance/", HTTP_X_REQUEST_ID=request_id)["X-Request-ID"] for request_id in sent
    ]

    assert echoed == sent
    records = audit_records.of("audit.request")
    assert [(r["request_id"], r["response_repr"]["headers"]["X-Request-ID"]) for r in records] == [
        (request_id, request_id) for request_id in sent
    ]
    assert [r["response_repr"]["status_code"] for r in records] == [503, 503, 503]


def test_an_id_header_the_view_set_on_a_shared_response_is_left_alone(stack, audit_records):
    client = Client()

    echoed = [
        client.get("/traced/", HTTP_X_REQUEST_ID=rid)["X-Request-ID"] for rid in ("req-0001", "req-0002")
    ]

    assert echoed == ["set-by-the-view", "set-by-the-view"]
    records = audit_records.of("audit.request")
    assert [(r["request_id"], r["response_repr"]["headers"]["X-Request-ID"]) for r in records] == [
        ("req-0001", "set-by-the-view"),
        ("req-0002", "set-by-the-view"),
    ]


def test_a_response_served_from_the_cache_middleware_carries_each_requests_own_id(settings, audit_records):
    settings.ROOT_URLCONF = __name__
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "lifecycle-gaps"}
    }
    settings.MIDDLEWARE = [
        "django.middleware.cache.UpdateCacheMiddleware",
        *STACK,
        "django.middleware.cache.FetchFromCacheMiddleware",
    ]
    client = Client()
    sent = ["cache-miss-0001", "cache-hit-0002", "cache-hit-0003"]

    responses = [client.get("/cacheable/", HTTP_X_REQUEST_ID=request_id) for request_id in sent]

    assert [response["X-Request-ID"] for response in responses] == sent
    assert [response.content for response in responses] == [b"the same for everybody"] * 3
    records = audit_records.of("audit.request")
    assert [(r["request_id"], r["response_repr"]["headers"]["X-Request-ID"]) for r in records] == [
        (request_id, request_id) for request_id in sent
    ]


# --- a request body of undeclared length ------------------------------------------------------------------


def post_asgi(url: str, headers: list[tuple[bytes, bytes]]) -> None:
    """POST ``JSON_BYTES`` through Django's ASGI handler in two pieces, as a chunked body arrives."""
    async_to_sync(serve_asgi)(url, method="POST", headers=headers, body=[JSON_BYTES[:5], JSON_BYTES[5:]])


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
            {"type": "application/json", "size": None, "unread": True},
        ),
        (  # HTTP/2: a body streamed without Content-Length and without Transfer-Encoding
            [(b"content-type", b"application/json")],
            {"type": "application/json", "size": None, "unread": True},
        ),
        (
            [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")],
            {"type": "application/json", "size": None, "content_encoding": "gzip"},
        ),
    ],
    ids=["chunked", "http2 stream", "compressed"],
)
def test_an_asgi_body_of_undeclared_length_the_view_did_not_read_is_unread(
    stack, audit_records, headers, expected
):
    post_asgi("/ignores-body/", headers)

    assert only_record(audit_records)["request_repr"]["body"] == expected


def test_an_asgi_chunked_body_the_view_read_is_recorded_as_read(stack, audit_records):
    post_asgi("/reads-body/", [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")])

    assert only_record(audit_records)["request_repr"]["body"] == JSON


@pytest.mark.parametrize(
    ("method", "headers"),
    [("GET", []), ("GET", [(b"content-type", b"application/json")]), ("POST", [(b"content-length", b"0")])],
    ids=["plain GET", "GET with a content type", "empty POST"],
)
def test_an_asgi_request_without_a_body_has_body_null(stack, audit_records, method, headers):
    async_to_sync(serve_asgi)("/ignores-body/", method=method, headers=headers)

    assert only_record(audit_records)["request_repr"]["body"] is None


def chunked_wsgi_request() -> WSGIRequest:
    """A POST as gunicorn and ``runserver`` hand a chunked request to Django: no ``CONTENT_LENGTH``, the
    ``Transfer-Encoding`` header, and the chunked body in ``wsgi.input``."""
    meta = RequestFactory().post("/", data=JSON_BYTES, content_type="application/json").META
    meta.pop("CONTENT_LENGTH", None)
    meta["HTTP_TRANSFER_ENCODING"] = "chunked"
    meta["wsgi.input"] = io.BytesIO(b"%x\r\n%s\r\n0\r\n\r\n" % (len(JSON_BYTES), JSON_BYTES))
    return WSGIRequest(meta)


@pytest.mark.parametrize(
    ("view", "answer"),
    [(sync_ignores_body, b"not read"), (sync_reads_body, b"b''")],
    ids=["view does not read", "view reads"],
)
def test_a_wsgi_chunked_body_is_unread_as_django_never_reads_it(audit_records, view, answer):
    response = AuditLoggingMiddleware(view)(chunked_wsgi_request())

    assert response.content == answer  # Django's WSGIRequest reads nothing of a body without a length
    assert only_record(audit_records)["request_repr"]["body"] == {
        "type": "application/json",
        "size": None,
        "unread": True,
    }


def test_a_wsgi_get_without_a_body_has_body_null(stack, audit_records):
    Client().get("/ignores-body/", CONTENT_TYPE="application/json")

    assert only_record(audit_records)["request_repr"]["body"] is None


# --- a user the view loaded with ``await request.auser()`` --------------------------------------------------


@pytest.mark.skipif(django.VERSION < (5, 0), reason="HttpRequest.auser() is Django 5.0+")
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_user_loaded_with_auser_costs_no_second_query(stack, audit_records, kind):
    user = User.objects.create_user("ada")
    client = Client()
    client.force_login(user)
    audit_records.clear()

    with CaptureQueriesContext(connection) as queries:
        if kind == "wsgi":
            response = client.get("/auser/")
        else:
            aclient = AsyncClient()
            aclient.cookies = client.cookies
            response = async_to_sync(aclient.get)("/auser/")

    assert response.content == b"hello ada"
    assert len([q for q in queries.captured_queries if USER_QUERY.search(q["sql"])]) == 1  # the view's own
    record = only_record(audit_records)
    assert (record["actor"], record["request_repr"]["user"]) == (
        f"user:{user.pk}",
        {"id": user.pk, "username": "ada"},
    )


@pytest.mark.skipif(django.VERSION < (5, 0), reason="HttpRequest.auser() is Django 5.0+")
def test_an_anonymous_user_loaded_with_auser_is_recorded_anonymous(stack, audit_records):
    response = async_to_sync(AsyncClient().get)("/auser/")

    assert response.content == b"hello "
    record = only_record(audit_records)
    assert (record["actor"], record["request_repr"]["user"]) == ("anonymous", None)
