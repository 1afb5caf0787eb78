"""AuditLoggingMiddleware in a WSGI stack, through Django's test client: exact records."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest
from django.contrib.auth.models import User
from django.test import Client

from activity_audit.context import current
from activity_audit.dispatch import pipeline
from tests import request_urls
from tests.request_support import MIDDLEWARE, incoming, stable

pytestmark = pytest.mark.django_db

COOKIE = {"Cookie": ""}  # the test client always sends a (here empty) Cookie header


def only_record(audit_records) -> dict:
    records = audit_records.of("audit.request")
    assert len(records) == 1, records
    return stable(records[0])


def test_json_post_gives_the_seed_fields_and_more(http, audit_records):
    body = {"title": "hello", "tags": ["a", "b"]}
    response = http.post(
        "/echo/?page=2&tag=x&tag=y",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_USER_AGENT="curl/8.5",
    )
    assert response.status_code == 201
    record = only_record(audit_records)
    assert response["X-Request-ID"] == audit_records.of("audit.request")[0]["request_id"]
    assert record == incoming(
        "POST",
        "/echo/",
        query={"page": "2", "tag": ["x", "y"]},
        request_headers={
            **COOKIE,
            "Content-Length": str(len(json.dumps(body))),
            "Content-Type": "application/json",
            "User-Agent": "curl/8.5",
        },
        body=body,
        status=201,
        response_headers={"Content-Type": "application/json"},
        response_body={"received": body},
        route="echo/",
        user_agent="curl/8.5",
    )


def test_a_valid_request_id_is_kept_and_echoed_and_a_bad_one_replaced(http, audit_records):
    kept = http.get("/whoami/", HTTP_X_REQUEST_ID="req-42.abc:1")
    replaced = http.get("/whoami/", HTTP_X_REQUEST_ID="bad id\r\nInjected: yes")
    first, second = audit_records.of("audit.request")
    assert kept["X-Request-ID"] == first["request_id"] == "req-42.abc:1"
    assert second["request_id"] != "bad id\r\nInjected: yes"
    assert replaced["X-Request-ID"] == second["request_id"]
    assert stable(second)["request_id"] == "<uuid4>"


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [(0, "10.0.0.9"), (1, "203.0.113.7"), (2, "198.51.100.1"), (5, "1.1.1.1")],
)
def test_client_ip_goes_through_trusted_proxies_only(http, audit_records, settings, trusted, expected):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "TRUSTED_PROXIES": trusted}
    forwarded = "1.1.1.1, 198.51.100.1, 203.0.113.7"  # 1.1.1.1 is whatever the client claimed
    http.get("/whoami/", REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR=forwarded)
    record = audit_records.of("audit.request")[0]
    assert (record["client_ip"], record["forwarded_for"]) == (expected, forwarded)


def test_a_forwarded_entry_that_is_not_an_address_falls_back_to_remote_addr(http, audit_records, settings):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "TRUSTED_PROXIES": 1}
    http.get("/whoami/", REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR="<script>")
    assert audit_records.of("audit.request")[0]["client_ip"] == "10.0.0.9"


def test_the_user_is_read_after_the_view(http, audit_records):
    user = User.objects.create_user("ada", password="pw-not-logged")
    http.force_login(user)
    audit_records.clear()
    http.get("/authors/3/")
    record = only_record(audit_records)
    assert (record["actor"], record["request_repr"]["user"], record["route"]) == (
        f"user:{user.pk}",
        {"id": user.pk, "username": "ada"},
        "authors/<int:pk>/",
    )
    assert record["request_repr"]["headers"]["Cookie"] == "[REDACTED]"
    assert record["redacted"] == ["request_repr.headers.Cookie"]


def test_a_view_exception_is_recorded_with_500_and_still_propagates(http, audit_records):
    with pytest.raises(ValueError, match="the view failed"):
        http.get("/boom/")
    record = only_record(audit_records)
    assert record == incoming(
        "GET",
        "/boom/",
        request_headers=COOKIE,
        status=500,
        response_headers={"Content-Type": "text/html; charset=utf-8"},
        response_body=record["response_repr"]["body"],  # Django's own 500 page
        route="boom/",
        error="ValueError: the view failed",
    )
    assert current().request is None


def test_skipped_paths_give_no_record_and_leave_no_context(http, audit_records):
    response = http.get("/health/")
    assert response.content == b"up"
    assert audit_records.of("audit.request") == []
    assert current().request is None and current().request_id is None


def test_regex_skip_paths(http, audit_records, settings):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "SKIP_PATHS": [r"^/authors/\d+/$"]}
    http.get("/authors/7/")
    http.get("/authors/")
    assert [record["request_repr"]["path"] for record in audit_records.of("audit.request")] == ["/authors/"]


def test_bodies_only_for_configured_methods_and_paths(http, audit_records, settings):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "BODY_METHODS": ["post"], "BODY_PATHS": ["/echo/"]}
    http.get("/chunked-text/")
    http.post("/echo/", data='{"a": 1}', content_type="application/json")
    http.post("/read-stream/", data="kept out", content_type="text/plain")
    bodies = [
        (r["request_repr"]["body"], r["response_repr"]["body"]) for r in audit_records.of("audit.request")
    ]
    assert bodies == [(None, None), ({"a": 1}, {"received": {"a": 1}}), (None, None)]


def test_multipart_upload_records_names_and_sizes_and_the_view_gets_the_file_intact(http, audit_records):
    content = os.urandom(300_000)
    upload = io.BytesIO(content)
    upload.name = "scan.bin"
    response = http.post("/upload/", {"title": "scan", "file": upload})
    assert response.json() == {
        "sha256": hashlib.sha256(content).hexdigest(),
        "size": 300_000,
        "title": "scan",
    }
    record = only_record(audit_records)
    assert record["request_repr"]["body"] == {
        "fields": {"title": "scan"},
        "files": [
            {
                "field": "file",
                "filename": "scan.bin",
                "content_type": "application/octet-stream",
                "size": 300_000,
            }
        ],
    }
    assert len(json.dumps(record)) < 5_000  # no file content


def test_a_view_reading_the_stream_gets_every_byte_of_a_large_body(http, audit_records):
    content = b"line of text\n" * 20_000  # 260 kB, over MAX_BODY_BYTES
    response = http.post("/read-stream/", data=content, content_type="text/plain")
    assert response.json() == {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
    record = only_record(audit_records)
    assert record["request_repr"]["body"] == {"type": "text/plain", "size": len(content), "unread": True}


def test_a_small_text_body_is_kept_and_the_streaming_view_still_reads_it(http, audit_records):
    response = http.post("/read-stream/", data=b"hello", content_type="text/plain")
    assert response.json() == {"sha256": hashlib.sha256(b"hello").hexdigest(), "size": 5}
    assert only_record(audit_records)["request_repr"]["body"] == "hello"


def test_a_large_body_the_view_read_is_truncated_with_its_size(http, audit_records):
    payload = json.dumps({"note": "x " * 60_000})  # 120 kB; both cuts below fall at a word end
    http.post("/echo/", data=payload, content_type="application/json")
    body = only_record(audit_records)["request_repr"]["body"]
    # the first MAX_BODY_BYTES are kept, and then cut to MAX_FIELD_CHARS like every string of a record
    assert body == {
        "truncated": True,
        "size": len(payload),
        "text": payload[:8192] + "…[truncated: 65536 chars]",
    }


def test_invalid_utf8_and_malformed_json_are_kept_as_safe_text(http, audit_records):
    http.post("/read-stream/", data=b"caf\xe9 \xff", content_type="text/plain")
    http.post("/read-stream/", data=b'{"a": 1,', content_type="application/json")
    first, second = (r["request_repr"]["body"] for r in audit_records.of("audit.request"))
    assert first == {"invalid_utf8": True, "text": "caf\\xe9 \\xff"}
    assert second == {"malformed_json": True, "text": '{"a": 1,'}


def test_streaming_responses_are_never_consumed(http, audit_records):
    request_urls.STREAM_PROGRESS.clear()
    response = http.get("/stream/")
    assert request_urls.STREAM_PROGRESS == []  # nothing pulled by the middleware
    assert b"".join(response.streaming_content) == b"".join(request_urls.STREAM_CHUNKS)
    body = only_record(audit_records)["response_repr"]["body"]
    assert body == {"type": "text/plain", "size": None, "streaming": True}


def test_response_bodies_binary_large_and_in_chunks(http, audit_records):
    http.get("/binary/")
    http.get("/big-text/")
    http.get("/chunked-text/")
    bodies = [r["response_repr"]["body"] for r in audit_records.of("audit.request")]
    assert bodies == [
        {"type": "image/png", "size": 8 + 1024},
        {"truncated": True, "size": 200_000, "text": "x " * 4096 + "…[truncated: 65536 chars]"},
        {"a": "y" * 100},
    ]


def test_sensitive_post_parameters_are_honoured(http, audit_records):
    http.post("/login/", {"username": "ada", "password": "hunter2", "maiden_name": "Byron"})
    http.post("/login-all/", {"username": "ada", "nickname": "countess"})
    named, everything = audit_records.of("audit.request")
    assert named["sensitive_post_parameters"] == ["password", "maiden_name"]
    assert named["request_repr"]["body"]["fields"] == {
        "username": "ada",
        "password": "[REDACTED]",
        "maiden_name": "[REDACTED]",
    }
    assert everything["sensitive_post_parameters"] == "__ALL__"
    assert everything["request_repr"]["body"]["fields"] == {
        "username": "[REDACTED]",
        "nickname": "[REDACTED]",
    }


def test_a_failure_inside_auditing_is_reported_and_the_request_goes_on(http, audit_records):
    before = pipeline.reporter.totals.get(("ACTOR_UNKNOWN", "AuditLoggingMiddleware"))
    response = http.get("/unreadable/")
    assert (response.status_code, response.content) == (200, b"still fine")
    assert "X-Request-ID" in response
    assert ("ACTOR_UNKNOWN", "AuditLoggingMiddleware") in pipeline.reporter.totals
    assert before in (None, 0)
    # Failing to read the user costs the record nothing but its user (tests/test_request_actor_faults.py).
    [record] = audit_records.of("audit.request")
    assert (record["actor"], record["actor_error"]) == ("unknown", "RuntimeError")
    assert current().request is None


def test_set_cookie_is_recorded_masked(http, audit_records):
    http.get("/sets-cookie/")
    record = only_record(audit_records)
    assert record["response_repr"]["headers"]["Set-Cookie"] == "[REDACTED]"
    assert "s3cr3t" not in json.dumps(record)


def test_the_request_id_reaches_records_made_during_the_request(http, audit_records, settings):
    import logging

    from activity_audit.logconfig import PipelineHandler

    logger = logging.getLogger("tests.middleware.during")
    handler = PipelineHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        from django.urls import path

        def logs(request):
            logger.info("inside the view")
            from django.http import HttpResponse

            return HttpResponse("ok")

        request_urls.urlpatterns.append(path("logs/", logs))
        from django.urls import clear_url_caches

        clear_url_caches()
        http.get("/logs/", HTTP_X_REQUEST_ID="trace-1")
    finally:
        request_urls.urlpatterns.pop()
        logger.removeHandler(handler)
    app = [r for r in audit_records.records if r.get("name") == "tests.middleware.during"]
    assert [r["request"] for r in app] == ["trace-1"]


def test_django_s_own_line_about_an_error_response_carries_the_request_id(http, audit_records):
    """Django logs ``Not Found: /x`` once the middleware chain has returned: the audit logs it first, inside
    the request, and Django's call then does nothing (one line, not two)."""
    import logging

    from activity_audit.logconfig import PipelineHandler

    logger = logging.getLogger("django.request")
    handler = PipelineHandler()
    logger.addHandler(handler)
    try:
        response = http.get("/no-such-page/", HTTP_X_REQUEST_ID="trace-404")
    finally:
        logger.removeHandler(handler)

    assert response.status_code == 404
    lines = [r for r in audit_records.records if r.get("name") == "django.request"]
    assert [(r["message"], r["request"]) for r in lines] == [("Not Found: /no-such-page/", "trace-404")]


class ChangesTheRequestAfterwards:
    """An outer middleware that rewrites headers and query after the inner stack answered."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        request.META["HTTP_X_TRACE"] = "rewritten"
        request.META["QUERY_STRING"] = "page=99"
        response["X-Served-By"] = "rewritten"
        return response


def test_headers_and_query_are_recorded_as_they_were_when_the_view_answered(http, audit_records, settings):
    settings.MIDDLEWARE = [f"{__name__}.ChangesTheRequestAfterwards", *MIDDLEWARE]
    http.get("/whoami/?page=2&q=%C3%A9t%C3%A9&tag=x&tag=y", HTTP_X_TRACE="original")
    record = only_record(audit_records)
    assert record["request_repr"]["headers"]["X-Trace"] == "original"
    assert record["request_repr"]["query_params"] == {"page": "2", "q": "été", "tag": ["x", "y"]}
    assert "X-Served-By" not in record["response_repr"]["headers"]


def test_an_oversized_header_is_cut_and_marks_the_record_truncated(http, audit_records):
    http.get("/whoami/", HTTP_X_HUGE="h " * 10_000, HTTP_USER_AGENT="u;" * 4500)
    record = only_record(audit_records)
    assert record["request_repr"]["headers"]["X-Huge"] == "h " * 4096 + "…[truncated: 20000 chars]"
    assert record["user_agent"] == "u;" * 4096 + "…[truncated: 9000 chars]"
    assert record["truncated"] is True


def test_a_record_without_anything_oversized_has_no_truncated_marker(http, audit_records):
    http.get("/whoami/?page=1", HTTP_X_TRACE="t" * 100)
    assert "truncated" not in only_record(audit_records)


def test_the_headers_kept_for_the_worker_leave_the_servers_streams_and_socket_out():
    from activity_audit.deferred import realise_pending
    from activity_audit.encoding import Snapshotter
    from activity_audit.request_capture import deferred_request_headers

    stream, errors, sock = io.BytesIO(b"{}"), io.StringIO(), object()
    meta = {
        "HTTP_HOST": "example.test",
        "CONTENT_TYPE": "application/json",
        "wsgi.input": stream,
        "wsgi.errors": errors,
        "wsgi.file_wrapper": io.BufferedReader,
        "gunicorn.socket": sock,
        "REMOTE_ADDR": "127.0.0.1",
    }
    pending = deferred_request_headers(meta, Snapshotter())
    held = pending.args[0]
    assert [key for key in held if "." in key] == []
    assert all(value is not stream and value is not errors and value is not sock for value in held.values())
    assert "wsgi.input" in meta  # the request's own META is untouched
    record = {"request_repr": {"headers": pending}}
    realise_pending(record)
    assert record["request_repr"]["headers"] == {"Host": "example.test", "Content-Type": "application/json"}


# The recommended place: first in MIDDLEWARE, so the record shows the response the client got.
OUTERMOST = [
    "activity_audit.middleware.AuditLoggingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


@pytest.mark.django_db(transaction=True)
def test_first_in_the_stack_the_record_is_the_response_the_client_got(settings, audit_records):
    settings.ROOT_URLCONF = "tests.request_urls"
    settings.MIDDLEWARE = OUTERMOST
    settings.ALLOWED_HOSTS = ["testserver"]
    client = Client()
    client.force_login(User.objects.create_user("ada", password="pw-of-ada"))
    audit_records.clear()

    redirected = client.get("/authors")  # CommonMiddleware adds the slash
    created = client.post("/authors/", data={"name": "Le Guin"}, content_type="application/json")
    refused = client.get("/authors/", headers={"Host": "evil.example"})
    with pytest.raises(ValueError, match="the view failed"):
        client.get("/boom/")

    records = audit_records.of("audit.request")
    assert [(r["request_repr"]["path"], r["response_repr"]["status_code"]) for r in records] == [
        ("/authors", 301),
        ("/authors/", 201),
        ("/authors/", 400),
        ("/boom/", 500),
    ]
    for response, record in zip((redirected, created, refused), records):
        assert response["X-Request-ID"] == record["request_id"]
    assert records[0]["response_repr"]["headers"]["Location"] == "/authors/"
    assert records[1]["response_repr"]["headers"]["X-Frame-Options"] == "DENY"
    ada = records[1]["request_repr"]["user"]
    assert ada["username"] == "ada"
    # Also for the refused host, which never reached AuthenticationMiddleware: looked up as it would.
    assert [(r["request_repr"]["user"], r["actor"]) for r in records] == [(ada, f"user:{ada['id']}")] * 4
    assert records[3]["error_message"] == "ValueError: the view failed"
    [create] = audit_records.of("audit.crud", model="Author")
    assert (create["actor"], create["request_id"]) == (f"user:{ada['id']}", records[1]["request_id"])
