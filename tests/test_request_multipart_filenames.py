"""Multipart parts whose file name is given as ``filename*=`` (RFC 5987/2231): files, as Django's parser has
them, never fields holding the file's content. Exact outcomes."""

from __future__ import annotations

import pytest
from django.http import JsonResponse
from django.test import Client
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from activity_audit.bodies import summarize_multipart

pytestmark = pytest.mark.django_db

BOUNDARY = "BOUND"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def part(disposition: str, content: bytes, content_type: str | None = "text/plain") -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + content + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


@csrf_exempt
def raw_body(request):
    return JsonResponse({"size": len(request.body)})  # a webhook checking a signature over the raw body


@csrf_exempt
def parsed(request):
    return JsonResponse({"files": {name: upload.name for name, upload in request.FILES.items()}})


urlpatterns = [path("raw/", raw_body), path("parsed/", parsed)]


@pytest.fixture
def client(settings) -> Client:
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = ["activity_audit.middleware.AuditLoggingMiddleware"]
    return Client()


STAR_NAMED = body(
    part('form-data; name="title"', b"Report", content_type=None),
    part(
        "form-data; name=\"doc\"; filename*=UTF-8''secret%20plan%20%E2%82%AC.txt", b"FILE-CONTENT-TOP-SECRET"
    ),
)


def test_a_file_named_with_filename_star_read_as_raw_body_is_a_file(client, audit_records):
    client.generic("POST", "/raw/", STAR_NAMED, content_type=CONTENT_TYPE)
    (record,) = audit_records.of("audit.request")
    assert record["request_repr"]["body"] == {
        "fields": {"title": "Report"},
        "files": [
            {"field": "doc", "filename": "secret plan €.txt", "content_type": "text/plain", "size": 23}
        ],
    }


def test_the_record_names_the_file_as_django_does(client, audit_records):
    response = client.generic("POST", "/parsed/", STAR_NAMED, content_type=CONTENT_TYPE)
    assert response.json() == {"files": {"doc": "secret plan €.txt"}}
    (record,) = audit_records.of("audit.request")
    assert record["request_repr"]["body"]["files"] == [
        {"field": "doc", "filename": "secret plan €.txt", "content_type": "text/plain", "size": 23}
    ]


@pytest.mark.parametrize(
    ("disposition", "filename"),
    [
        ("form-data; name=\"doc\"; filename*=utf-8''r%C3%A9sum%C3%A9.pdf", "résumé.pdf"),
        ("form-data; name=\"doc\"; FILENAME*=UTF-8'en'a.txt", "a.txt"),
        ('form-data; name="doc"; filename="a;b.txt"', "a;b.txt"),  # a quoted ";" is part of the name
        ("form-data; name=\"doc\"; filename*=x-no-such-charset''a%20b.txt", "x-no-such-charset''a%20b.txt"),
    ],
)
def test_filename_forms_all_make_a_file(disposition, filename):
    data = body(part(disposition, b"FILE-CONTENT"))
    assert summarize_multipart(CONTENT_TYPE, data) == {
        "fields": {},
        "files": [{"field": "doc", "filename": filename, "content_type": "text/plain", "size": 12}],
    }
