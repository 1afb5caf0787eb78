"""HTTPClient and audit_session where urllib3, requests and the record could part ways.

- a ``Content-Encoding`` urllib3 does not match exactly (``gzip `` with a space) is handed over compressed:
  the record describes the body, never keeps its bytes;
- ``session.get_adapter(url)`` reads and configures the adapter that sends (``max_retries``);
- ``response.elapsed`` is the time until the headers, as with plain ``requests``, though the record waits for
  the body;
- a ``Content-Length`` that is no number, or a part of the record that cannot be captured, leaves the rest
  of the record (URL, status, headers) as it is;

Real HTTP server on loopback (the routes of :mod:`tests.support.outbound_http`, plus those below).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from activity_audit.clients import http as http_client
from activity_audit.clients.http import HTTPClient, audit_session
from tests.support.outbound_http import (
    FIXED_DATE,
    GZIPPED_TOKEN,
    TOKEN,
    Handler,
    OutboundServer,
    response_headers,
)

pytest_plugins = ["tests.support.outbound_http_fixtures"]  # the per-test ``server`` fixture

SENT_BY_REQUESTS = dict(requests.utils.default_headers())
BODY_DELAY = 1.0  # seconds /slow-body waits between its headers and the end of its body


class GapsHandler(Handler):
    """The shared routes, plus:

    * ``/gzip-space``: :data:`GZIPPED_TOKEN` declared ``Content-Encoding: gzip `` (a trailing space, which
      urllib3 does not match, so it hands the bytes over compressed); ``/gzip-upper``: declared ``GZIP``,
      which urllib3 decodes;
    * ``/slow-body``: 200 ``text/plain``, the headers and ``ab`` at once, ``cd`` :data:`BODY_DELAY` later;
    * ``/odd-length``: 200 ``text/plain`` ``hello`` with ``Content-Length: ²`` (no number to ``int``),
      then the connection is closed;
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
        elif route == "/slow-body":
            self.slow_body()
        elif route == "/odd-length":
            self.odd_length()
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
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), GapsHandler)
    httpd.daemon_threads = True
    state = OutboundServer(f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()


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
