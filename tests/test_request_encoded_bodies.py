"""Bodies with a ``Content-Encoding`` (gzip, br ...): described, never kept as text, never decompressed.

Escaped compressed bytes can be turned back into the stream and decompressed: a record that kept them would
hand its readers every secret the redactor could not see. Exact outcomes.
"""

from __future__ import annotations

import gzip
import json

import pytest
from django.http import HttpResponse, JsonResponse
from django.test import Client
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from activity_audit.bodies import summarize_body

pytestmark = pytest.mark.django_db

SECRET = "tok_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
PASSWORD = "correct-horse-battery-staple"
# Long enough for GZipMiddleware to compress it (it leaves bodies under 200 bytes alone).
TOKEN_RESPONSE = {"access_token": SECRET, "token_type": "bearer", "scope": " ".join(["read:books"] * 20)}


def token(request):
    return JsonResponse(TOKEN_RESPONSE)


@csrf_exempt
def gzip_login(request):
    data = json.loads(gzip.decompress(request.body))
    return JsonResponse({"user": data["username"]})


@csrf_exempt
def ignores_body(request):
    return HttpResponse("ok", content_type="text/plain")


@csrf_exempt
def precompressed(request):
    """Serves content stored compressed, as a view serving pre-compressed files does."""
    response = HttpResponse(
        gzip.compress(json.dumps(TOKEN_RESPONSE).encode()), content_type="application/json"
    )
    response["Content-Encoding"] = "gzip"
    return response


@csrf_exempt
def echo(request):
    return HttpResponse(request.body, content_type="application/json")


urlpatterns = [
    path("token/", token),
    path("gzip-login/", gzip_login),
    path("ignores-body/", ignores_body),
    path("echo/", echo),
    path("precompressed/", precompressed),
]


@pytest.fixture
def client(settings) -> Client:
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = [
        "activity_audit.middleware.AuditLoggingMiddleware",  # first, as the README says
        "django.middleware.gzip.GZipMiddleware",
    ]
    return Client()


def only_record(audit_records) -> dict:
    records = audit_records.of("audit.request")
    assert len(records) == 1, records
    return records[0]


def test_a_response_compressed_by_gzip_middleware_is_described_not_kept(client, audit_records):
    response = client.get("/token/", HTTP_ACCEPT_ENCODING="gzip")
    assert response["Content-Encoding"] == "gzip"
    record = only_record(audit_records)
    assert record["response_repr"]["body"] == {
        "type": "application/json",
        "size": len(response.content),
        "content_encoding": "gzip",
    }
    assert json.loads(gzip.decompress(response.content)) == TOKEN_RESPONSE  # the client got it all
    assert SECRET not in json.dumps(record)


def test_the_same_response_uncompressed_is_parsed_and_masked(client, audit_records):
    client.get("/token/")  # no Accept-Encoding: GZipMiddleware leaves it alone
    body = only_record(audit_records)["response_repr"]["body"]
    assert body == {**TOKEN_RESPONSE, "access_token": "[REDACTED]"}


def test_a_gzipped_request_body_read_by_the_view_is_described_not_kept(client, audit_records):
    compressed = gzip.compress(json.dumps({"username": "ada", "password": PASSWORD}).encode())
    response = client.generic(
        "POST", "/gzip-login/", compressed, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )
    assert response.json() == {"user": "ada"}
    record = only_record(audit_records)
    assert record["request_repr"]["body"] == {
        "type": "application/json",
        "size": len(compressed),
        "content_encoding": "gzip",
    }
    assert record["request_repr"]["headers"]["Content-Encoding"] == "gzip"


def test_an_encoded_request_body_the_view_did_not_read_is_described_by_its_length(client, audit_records):
    client.generic(
        "POST",
        "/ignores-body/",
        b"\x1b\x07\x00" * 40,
        content_type="text/plain",
        HTTP_CONTENT_ENCODING=" BR ",
    )
    assert only_record(audit_records)["request_repr"]["body"] == {
        "type": "text/plain",
        "size": 120,
        "content_encoding": "BR",
    }


def test_a_response_the_view_compressed_itself_is_described_not_kept(client, audit_records):
    response = client.get("/precompressed/")  # no Accept-Encoding: GZipMiddleware has nothing to do with it
    record = only_record(audit_records)
    assert record["response_repr"]["body"] == {
        "type": "application/json",
        "size": len(response.content),
        "content_encoding": "gzip",
    }
    assert SECRET not in json.dumps(record)


def test_identity_is_no_encoding(client, audit_records):
    client.generic(
        "POST", "/echo/", b'{"a": 1}', content_type="application/json", HTTP_CONTENT_ENCODING="Identity"
    )
    record = only_record(audit_records)
    assert (record["request_repr"]["body"], record["response_repr"]["body"]) == ({"a": 1}, {"a": 1})


@pytest.mark.parametrize(
    ("encoding", "body", "size", "expected"),
    [
        (
            "gzip",
            b'{"password": "x"}',
            None,
            {"type": "application/json", "size": 17, "content_encoding": "gzip"},
        ),
        ("br", b"\xff" * 10, 500, {"type": "application/json", "size": 500, "content_encoding": "br"}),
        ("identity", b'{"a": 1}', None, {"a": 1}),
        ("", b'{"a": 1}', None, {"a": 1}),
        (None, b'{"a": 1}', None, {"a": 1}),
    ],
)
def test_summarize_body_describes_an_encoded_body(encoding, body, size, expected):
    assert summarize_body("application/json", body, size=size, content_encoding=encoding) == expected
