"""HTTPClient and audit_session where urllib3, requests and the record could part ways.

- a ``Content-Encoding`` urllib3 does not match exactly (``gzip `` with a space) is handed over compressed:
  the record describes the body, never keeps its bytes;
- UTF-16 and UTF-32 bodies without a charset that says so are read as what they are, so the redactor sees
  their keys (or, when no such charset fits, described as binary), outbound and incoming;
- ``session.get_adapter(url)`` reads and configures the adapter that sends (``max_retries``);
- ``response.elapsed`` is the time until the headers, as with plain ``requests``, though the record waits for
  the body;
- a ``Content-Length`` that is no number, or a part of the record that cannot be captured, leaves the rest
  of the record (URL, status, headers) as it is;
- integers beyond 64 bits in a JSON body are recorded exactly.

Real HTTP server on loopback (the routes of :mod:`tests.support.outbound_http`, plus those below).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from activity_audit import bodies
from activity_audit.clients import http as http_client
from activity_audit.clients.http import HTTPClient, audit_session
from tests.support.outbound_http import (
    FIXED_DATE,
    FORM_WITH_TOKEN,
    GZIPPED_TOKEN,
    TOKEN,
    Handler,
    OutboundServer,
    response_headers,
    serving,
)

pytest_plugins = ["tests.support.outbound_http_fixtures"]  # the per-test ``server`` fixture

SENT_BY_REQUESTS = dict(requests.utils.default_headers())
PASSWORD = "hunter2-never-logged"
SECRETS = {"access_token": TOKEN, "password": PASSWORD}
REDACTED = {"access_token": "[REDACTED]", "password": "[REDACTED]"}
UNICODE_CODECS = ["utf-16-le", "utf-16-be", "utf-16", "utf-32-le", "utf-32-be", "utf-32"]
# Text with NUL bytes that is no UTF-16 or UTF-32 either (its first four bytes hold one NUL).
NUL_JUNK = b"ab\x00c" + "access_token=".encode("utf-16-le")
BIG_JSON = b'{"account": 123456789012345678901234567890, "neg": -9223372036854775809, "n": 1}'
BODY_DELAY = 1.0  # seconds /slow-body waits between its headers and the end of its body


class GapsHandler(Handler):
    """The shared routes, plus:

    * ``/gzip-space``: :data:`GZIPPED_TOKEN` declared ``Content-Encoding: gzip `` (a trailing space, which
      urllib3 does not match, so it hands the bytes over compressed); ``/gzip-upper``: declared ``GZIP``,
      which urllib3 decodes;
    * ``/unicode/<codec>``: :data:`SECRETS` as JSON in ``codec``, ``application/vnd.api+json`` without a
      charset (``requests`` reads ``application/json`` as UTF-8, this as RFC 4627 says);
      ``/unicode-form/<codec>``: :data:`FORM_WITH_TOKEN` in ``codec`` as ``text/plain``;
    * ``/nul-junk``: :data:`NUL_JUNK` as ``text/plain``;
    * ``/slow-body``: 200 ``text/plain``, the headers and ``ab`` at once, ``cd`` :data:`BODY_DELAY` later;
    * ``/odd-length``: 200 ``text/plain`` ``hello`` with ``Content-Length: ²`` (no number to ``int``),
      then the connection is closed;
    * ``/big-json``: :data:`BIG_JSON`.
    """

    def do_GET(self) -> None:
        route = self.path.split("?", 1)[0]
        if route == "/gzip-space":
            self.send_body(
                200, {"Content-Type": "application/json", "Content-Encoding": "gzip "}, GZIPPED_TOKEN
            )
        elif route == "/gzip-upper":
            self.send_body(
                200, {"Content-Type": "application/json", "Content-Encoding": "GZIP"}, GZIPPED_TOKEN
            )
        elif route.startswith("/unicode/"):
            self.reply(200, "application/vnd.api+json", json.dumps(SECRETS).encode(route.rsplit("/", 1)[1]))
        elif route.startswith("/unicode-form/"):
            self.reply(200, "text/plain", FORM_WITH_TOKEN.encode(route.rsplit("/", 1)[1]))
        elif route == "/nul-junk":
            self.reply(200, "text/plain", NUL_JUNK)
        elif route == "/slow-body":
            self.slow_body()
        elif route == "/odd-length":
            self.odd_length()
        elif route == "/big-json":
            self.reply(200, "application/json", BIG_JSON)
        else:
            super().do_GET()

    do_POST = do_PUT = do_DELETE = do_GET

    def slow_body(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"ab")
        self.wfile.flush()
        time.sleep(BODY_DELAY)
        self.wfile.write(b"cd")

    def odd_length(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "\xb2")  # SUPERSCRIPT TWO: str.isdigit() is True, int() fails
        self.end_headers()
        self.wfile.write(b"hello")
        self.close_connection = True


@pytest.fixture(scope="module")
def outbound_server() -> Iterator[OutboundServer]:
    """The shared fixture's server (``server`` uses it), answering with :class:`GapsHandler`."""
    with serving(GapsHandler) as state:
        yield state


def only_record(audit_records: Any) -> dict[str, Any]:
    records = audit_records.of("audit.request")
    assert len(records) == 1, records
    return records[0]


def all_lines(audit_records: Any) -> str:
    return "\n".join(entry.line.decode() for entry in audit_records.entries)


# --- a body urllib3 did not decode -------------------------------------------------------------------


def test_a_body_urllib3_hands_over_compressed_is_described_never_kept(
    server: OutboundServer, audit_records: Any
) -> None:
    url = f"{server.base_url}/gzip-space"
    assert requests.get(url).content == GZIPPED_TOKEN  # plain requests: still compressed

    response = HTTPClient("oauth").get(url)

    assert response.content == GZIPPED_TOKEN
    assert only_record(audit_records)["response_repr"] == {
        "status_code": 200,
        "headers": {
            **response_headers("application/json", len(GZIPPED_TOKEN)),
            "Content-Encoding": "gzip ",
        },
        "body": {"type": "application/json", "size": len(GZIPPED_TOKEN), "content_encoding": "gzip"},
    }
    assert "\\x8b" not in all_lines(audit_records)  # no escaped gzip bytes (1f 8b ...) to unpack


def test_a_body_urllib3_decoded_is_still_recorded_as_json(server: OutboundServer, audit_records: Any) -> None:
    response = HTTPClient("oauth").get(f"{server.base_url}/gzip-upper")

    assert response.json() == {"access_token": TOKEN, "expires_in": 3600}
    record = only_record(audit_records)
    assert record["response_repr"]["body"] == {"access_token": "[REDACTED]", "expires_in": 3600}
    assert TOKEN not in all_lines(audit_records)


# --- UTF-16 and UTF-32 without a charset that says so --------------------------------------------------


@pytest.mark.parametrize("codec", UNICODE_CODECS)
def test_a_unicode_json_response_without_charset_is_read_and_redacted(
    codec: str, server: OutboundServer, audit_records: Any
) -> None:
    response = HTTPClient("oauth").get(f"{server.base_url}/unicode/{codec}")

    assert response.json() == SECRETS
    record = only_record(audit_records)
    assert record["response_repr"]["body"] == REDACTED
    assert record["redacted"] == ["response_repr.body.access_token", "response_repr.body.password"]
    lines = all_lines(audit_records).replace("\\u0000", "")
    assert TOKEN not in lines and PASSWORD not in lines


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-32-be"])
def test_a_unicode_text_response_without_charset_is_read_and_redacted(
    codec: str, server: OutboundServer, audit_records: Any
) -> None:
    HTTPClient("oauth").get(f"{server.base_url}/unicode-form/{codec}")

    assert only_record(audit_records)["response_repr"]["body"] == "access_token=[REDACTED]&x=1"
    assert TOKEN not in all_lines(audit_records).replace("\\u0000", "")


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_a_unicode_request_body_is_read_and_redacted(
    content_type: str, server: OutboundServer, audit_records: Any
) -> None:
    sent = json.dumps(SECRETS).encode("utf-16-le")
    HTTPClient("oauth").post(f"{server.base_url}/echo", data=sent, headers={"Content-Type": content_type})

    assert server.received[-1].body == sent
    record = only_record(audit_records)
    assert (record["request_repr"]["body"], record["response_repr"]["body"]) == (REDACTED, REDACTED)
    assert TOKEN not in all_lines(audit_records).replace("\\u0000", "")


def test_text_with_nul_bytes_in_no_unicode_form_is_described_as_binary(
    server: OutboundServer, audit_records: Any
) -> None:
    response = HTTPClient("oauth").get(f"{server.base_url}/nul-junk")

    assert response.content == NUL_JUNK
    assert only_record(audit_records)["response_repr"]["body"] == {
        "type": "text/plain",
        "size": len(NUL_JUNK),
    }
    assert "access_token" not in all_lines(audit_records).replace("\\u0000", "")


@pytest.mark.django_db
def test_an_incoming_unicode_json_body_without_charset_is_read_and_redacted(
    http: Any, audit_records: Any
) -> None:
    sent = json.dumps(SECRETS).encode("utf-16")
    http.generic("POST", "/ignores-body/", sent, content_type="application/json")

    [record] = audit_records.of("audit.request")
    assert record["request_repr"]["body"] == REDACTED
    assert TOKEN not in all_lines(audit_records).replace("\\u0000", "")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"a": 1}'.encode("utf-16-le"), "utf-16-le"),
        ('{"a": 1}'.encode("utf-16-be"), "utf-16-be"),
        ('{"a": 1}'.encode("utf-16"), "utf-16"),
        ('{"a": 1}'.encode("utf-32-le"), "utf-32-le"),
        ('{"a": 1}'.encode("utf-32-be"), "utf-32-be"),
        ('{"a": 1}'.encode("utf-32"), "utf-32"),
        ("中{".encode("utf-16-le"), None),  # a first character beyond ASCII: no NUL pattern to tell by
        (b"a\x00", None),
    ],
)
def test_sniff_utf16_32(data: bytes, expected: str | None) -> None:
    assert bodies.sniff_utf16_32(data) == expected


# --- get_adapter ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda: HTTPClient("partner"), lambda: audit_session(requests.Session(), "partner")]
)
def test_get_adapter_reads_and_configures_the_adapter_that_sends(
    make: Any, server: OutboundServer, audit_records: Any
) -> None:
    session = make()
    real = session.adapters["http://"]

    assert session.get_adapter(server.base_url).max_retries is real.max_retries
    session.get_adapter(server.base_url).max_retries = Retry(
        total=3, status_forcelist=[503], backoff_factor=0
    )
    response = session.get(f"{server.base_url}/flaky/2/{uuid.uuid4().hex[:12]}")

    assert (response.status_code, response.text) == (200, "fine")
    assert real.max_retries.total == 3
    assert response.connection.poolmanager is real.poolmanager
    record = only_record(audit_records)
    assert record["response_repr"]["status_code"] == 200
    assert record["retries"] == [{"status": 503}, {"status": 503}]


def test_get_adapter_gives_a_mounted_adapter_and_it_is_audited(
    server: OutboundServer, audit_records: Any
) -> None:
    session = HTTPClient("partner")
    retry = Retry(total=2, status_forcelist=[503], backoff_factor=0)
    session.mount(server.base_url, HTTPAdapter(max_retries=retry))

    assert session.get_adapter(f"{server.base_url}/json").max_retries is retry
    session.get(f"{server.base_url}/flaky/1/{uuid.uuid4().hex[:12]}")

    assert only_record(audit_records)["retries"] == [{"status": 503}]


# --- elapsed -------------------------------------------------------------------------------------------


def test_elapsed_is_the_time_until_the_headers_as_without_auditing(
    server: OutboundServer, audit_records: Any
) -> None:
    seen_by_hook: list[timedelta] = []

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        seen_by_hook.append(response.elapsed)

    response = HTTPClient("partner").get(f"{server.base_url}/slow-body", hooks={"response": hook})

    assert response.content == b"abcd"
    assert timedelta(0) < response.elapsed < timedelta(seconds=BODY_DELAY / 2)
    assert seen_by_hook == [response.elapsed]
    record = only_record(audit_records)
    assert record["response_repr"]["body"] == "abcd"
    assert record["execution_time"] >= BODY_DELAY * 0.9  # the record's time runs to the end of the body


# --- parts that cannot be captured ---------------------------------------------------------------------


def test_a_streamed_response_with_a_content_length_that_is_no_number_is_recorded_whole(
    server: OutboundServer, audit_records: Any
) -> None:
    response = HTTPClient("partner").get(f"{server.base_url}/odd-length?page=2", stream=True)

    assert (response.status_code, response.content) == (200, b"hello")
    record = only_record(audit_records)
    assert record["request_repr"] == {
        "method": "GET",
        "url": f"{server.base_url}/odd-length",
        "params": {"page": "2"},
        "headers": SENT_BY_REQUESTS,
        "body": None,
    }
    assert record["response_repr"] == {
        "status_code": 200,
        "headers": {
            "Server": "test-server",
            "Date": FIXED_DATE,
            "Content-Type": "text/plain",
            "Content-Length": "²",
        },
        "body": {"streamed": True, "type": "text/plain", "size": None},
    }
    assert record["error_message"] is None


def test_a_body_that_cannot_be_captured_leaves_the_rest_of_the_record(
    server: OutboundServer, audit_records: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("capture bug")

    monkeypatch.setattr(http_client, "summarize_body", fails)
    response = HTTPClient("partner").post(f"{server.base_url}/echo?page=2", json={"a": 1})

    assert response.json() == {"a": 1}
    record = only_record(audit_records)
    failed = {"type": "application/json", "size": None, "error": "RuntimeError"}
    assert record["request_repr"] == {
        "method": "POST",
        "url": f"{server.base_url}/echo",
        "params": {"page": "2"},
        "headers": {**SENT_BY_REQUESTS, "Content-Length": "8", "Content-Type": "application/json"},
        "body": failed,
    }
    assert record["response_repr"] == {
        "status_code": 201,
        "headers": response_headers("application/json", 8),
        "body": failed,
    }
    assert record["error_message"] is None
    line = fails.__code__.co_firstlineno + 1
    [report] = audit_records.of("activity_audit.pipeline", event_type="CAPTURE_FAILED", source="http")
    assert report["error"] == f"RuntimeError in fails (test_http_client_gaps.py:{line})"  # no message


def test_headers_that_cannot_be_captured_leave_the_url_and_status(
    server: OutboundServer, audit_records: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("capture bug")

    monkeypatch.setattr(http_client, "capture_headers", fails)
    HTTPClient("partner").get(f"{server.base_url}/json?token=abc")

    record = only_record(audit_records)
    assert record["request_repr"] == {
        "method": "GET",
        "url": f"{server.base_url}/json",
        "capture_error": "RuntimeError: capture bug",
    }
    assert record["response_repr"] == {"status_code": 200, "capture_error": "RuntimeError: capture bug"}


# --- big integers ----------------------------------------------------------------------------------------


def test_integers_beyond_64_bits_are_recorded_exactly(server: OutboundServer, audit_records: Any) -> None:
    response = HTTPClient("partner").get(f"{server.base_url}/big-json")

    exact = {"account": 123456789012345678901234567890, "neg": -9223372036854775809, "n": 1}
    assert response.json() == exact
    assert bodies.summarize_body("application/json", BIG_JSON) == exact
    # The file encoder writes integers beyond 64 bits as strings (JSON readers would round them).
    assert only_record(audit_records)["response_repr"]["body"] == {
        "account": "123456789012345678901234567890",
        "neg": "-9223372036854775809",
        "n": 1,
    }


def test_a_run_of_19_digits_inside_a_string_changes_nothing() -> None:
    assert bodies.parse_json('{"id": "1234567890123456789012", "f": 1.5}') == {
        "id": "1234567890123456789012",
        "f": 1.5,
    }
    assert bodies.has_long_digit_run("x" * 40 + "1" * 19) and not bodies.has_long_digit_run("1" * 18 + "-1")
