"""A view that reads the server's stream itself, ``request.META["wsgi.input"]``, reads what it reads without
the audit, also when the audit read a small body before the view. Exact outcomes, with and without the
audit."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from activity_audit.middleware import AuditLoggingMiddleware

pytestmark = pytest.mark.django_db

BODY = json.dumps({"title": "Dune", "pages": 412}).encode()


@csrf_exempt
def raw_input(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.META["wsgi.input"].read(), content_type="text/plain")


@csrf_exempt
def raw_input_in_pieces(request: HttpRequest) -> HttpResponse:
    stream = request.META["wsgi.input"]
    pieces = [stream.read(5), stream.read(7), stream.read()]
    return HttpResponse(repr(pieces), content_type="text/plain")


@csrf_exempt
def read_then_raw_input(request: HttpRequest) -> HttpResponse:
    first = request.read()
    return HttpResponse(repr([first, request.META["wsgi.input"].read()]), content_type="text/plain")


urlpatterns = [
    path("raw/", raw_input),
    path("pieces/", raw_input_in_pieces),
    path("read-then-raw/", read_then_raw_input),
]


@pytest.fixture(params=[True, False], ids=["with audit", "without audit"])
def audited(settings, request) -> bool:
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = ["activity_audit.middleware.AuditLoggingMiddleware"] if request.param else []
    return request.param


def only_body(audit_records) -> object:
    [record] = audit_records.of("audit.request")
    return record["request_repr"]["body"]


def test_a_view_reading_wsgi_input_gets_the_body(audited, audit_records):
    response = Client().post("/raw/", BODY, content_type="application/json")

    assert response.content == BODY
    if audited:
        assert only_body(audit_records) == {"title": "Dune", "pages": 412}


def test_a_view_reading_wsgi_input_in_pieces_gets_the_same_pieces(audited, audit_records):
    response = Client().post("/pieces/", BODY, content_type="application/json")

    assert response.content == repr([BODY[:5], BODY[5:12], BODY[12:]]).encode()
    if audited:
        assert only_body(audit_records) == {"title": "Dune", "pages": 412}


def test_what_request_read_consumed_is_gone_from_wsgi_input_too(audited, audit_records):
    response = Client().post("/read-then-raw/", BODY, content_type="application/json")

    assert response.content == repr([BODY, b""]).encode()


# --- bodies the audit never reads keep the server's own stream ----------------------------------------------


def _stream_seen_by_view(request: WSGIRequest) -> tuple[bool, bytes]:
    """Run ``request`` through the middleware: whether the view found the server's stream, what it read."""
    server_stream = request.META["wsgi.input"]
    seen = {}

    def view(request: HttpRequest) -> HttpResponse:
        stream = request.META["wsgi.input"]
        seen["same"], seen["data"] = stream is server_stream, stream.read()
        return HttpResponse("ok")

    AuditLoggingMiddleware(view)(request)
    return seen["same"], seen["data"]


def test_a_body_over_max_body_bytes_is_left_in_the_servers_stream(settings, audit_records):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "MAX_BODY_BYTES": 16}
    request = RequestFactory().post("/raw/", BODY, content_type="application/json")

    assert _stream_seen_by_view(request) == (True, BODY)
    assert only_body(audit_records) == {"type": "application/json", "size": len(BODY), "unread": True}


def test_a_multipart_upload_is_left_in_the_servers_stream(audit_records):
    upload = SimpleUploadedFile("notes.txt", b"file content", content_type="text/plain")
    request = RequestFactory().post("/raw/", {"doc": upload})
    size = int(request.META["CONTENT_LENGTH"])

    same, data = _stream_seen_by_view(request)

    assert (same, len(data)) == (True, size)
    assert b"file content" in data
    assert only_body(audit_records)["unread"] is True


# --- a client gone while sending: the view meets the server's error -----------------------------------------


class _BrokenInput(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise OSError("client went away")


def _disconnecting_request() -> WSGIRequest:
    meta = (
        RequestFactory().post("/raw/", data=b"a=1&b=2", content_type="application/x-www-form-urlencoded").META
    )
    meta["wsgi.input"] = _BrokenInput()
    return WSGIRequest(meta)


def _reads_wsgi_input(request: HttpRequest) -> HttpResponse:
    try:
        return HttpResponse(request.META["wsgi.input"].read())
    except Exception as exc:
        return HttpResponse(f"{type(exc).__name__}{exc.args!r}")


def test_a_view_reading_wsgi_input_after_the_client_went_away_meets_the_same_error(audit_records):
    without = _reads_wsgi_input(_disconnecting_request())
    audited = AuditLoggingMiddleware(_reads_wsgi_input)(_disconnecting_request())

    assert audited.content == without.content == b"OSError('client went away',)"
    assert only_body(audit_records) == {
        "type": "application/x-www-form-urlencoded",
        "size": 7,
        "error": "UnreadablePostError",
    }
