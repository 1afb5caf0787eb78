"""urllib3 retries and interrupted calls: what the one record of such an exchange says.

urllib3 retries inside the transport adapter (``HTTPAdapter(max_retries=Retry(...))``): ``requests`` sees one
exchange, so there is one record, whose ``retries`` lists what the earlier attempts got. A call interrupted by
``KeyboardInterrupt`` (any ``BaseException``) is recorded with the interruption, then the exception goes on
unchanged. Real HTTP server on loopback; exact records.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from activity_audit import audit_context
from activity_audit.clients.http import HTTPClient, audit_session
from tests.support.outbound_http import OutboundServer, response_headers

pytest_plugins = ["tests.support.outbound_http_fixtures"]  # the server fixture

VOLATILE = ("timestamp", "event_id", "stream_id", "seq", "execution_time")
SENT_BY_REQUESTS = dict(requests.utils.default_headers())

pytestmark = pytest.mark.usefixtures("as_tests_actor")


@pytest.fixture
def as_tests_actor() -> Iterator[None]:
    with audit_context(actor="system:tests"):
        yield


def only_record(audit_records: Any) -> dict[str, Any]:
    records = audit_records.of("audit.request")
    assert len(records) == 1, records
    record = records[0]
    assert isinstance(record["execution_time"], float) and record["execution_time"] >= 0
    return {key: value for key, value in record.items() if key not in VOLATILE}


def outbound(
    request_repr: dict[str, Any], response_repr: dict[str, Any] | None, error: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "level": "API",
        "name": "audit.request",
        "message": "Audit External Service",
        "service_name": "partner",
        "request_type": "external",
        "protocol": "http",
        "request_repr": request_repr,
        "response_repr": response_repr,
        **extra,
        "error_message": error,
        "request_id": None,
        "actor": "system:tests",
    }


def retrying(session: requests.Session, **retry: Any) -> requests.Session:
    retries = Retry(status_forcelist=[503], backoff_factor=0, **retry)
    session.mount("http://", HTTPAdapter(max_retries=retries))
    return session


def flaky(server: OutboundServer, failures: int) -> str:
    # 12 hex digits: never a run of 13 digits, which the redactor could take for a card number
    return f"{server.base_url}/flaky/{failures}/{uuid.uuid4().hex[:12]}"


def get_request(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"method": "GET", "url": url, "params": {}, "headers": headers or SENT_BY_REQUESTS, "body": None}


@pytest.mark.parametrize(
    "audited",
    [HTTPClient, lambda name: audit_session(requests.Session(), name)],
    ids=["HTTPClient", "audit_session"],
)
def test_a_retried_exchange_is_one_record_listing_the_earlier_attempts(
    audited: Any, server: OutboundServer, audit_records: Any
) -> None:
    url = flaky(server, 2)
    response = retrying(audited("partner"), total=3).get(url)

    assert response.status_code == 200 and response.text == "fine"
    assert len(server.received) == 3  # 503, 503, 200
    assert only_record(audit_records) == outbound(
        get_request(url),
        {"status_code": 200, "headers": response_headers("text/plain", 4), "body": "fine"},
        retries=[{"status": 503}, {"status": 503}],
    )


def test_retries_given_up_with_the_last_response_list_every_earlier_attempt(
    server: OutboundServer, audit_records: Any
) -> None:
    url = flaky(server, 5)
    response = retrying(HTTPClient("partner"), total=2, raise_on_status=False).get(url)

    assert response.status_code == 503 and len(server.received) == 3
    assert only_record(audit_records) == outbound(
        get_request(url),
        {"status_code": 503, "headers": response_headers("text/plain", 4), "body": "busy"},
        retries=[{"status": 503}, {"status": 503}],
    )


def test_retries_exhausted_with_an_exception_are_recorded_as_that_exception(
    server: OutboundServer, audit_records: Any
) -> None:
    url = flaky(server, 5)
    with pytest.raises(requests.exceptions.RetryError):
        retrying(HTTPClient("partner"), total=2).get(url, params={"token": "t0k3n-in-the-query"})

    assert len(server.received) == 3
    port = server.base_url.rsplit(":", 1)[1]
    path = url.split(port, 1)[1]
    assert only_record(audit_records) == outbound(
        {**get_request(url), "params": {"token": "[REDACTED]"}},
        None,
        f"RetryError: HTTPConnectionPool(host='127.0.0.1', port={port}): Max retries exceeded with url: "
        f"{path}?… (Caused by ResponseError('too many 503 error responses'))",
        redacted=["request_repr.params.token"],
    )


def test_an_exchange_without_retries_has_no_retries_field(server: OutboundServer, audit_records: Any) -> None:
    retrying(HTTPClient("partner"), total=3).get(f"{server.base_url}/json")

    assert "retries" not in only_record(audit_records)


def interrupted_upload() -> Iterator[bytes]:
    yield b"first part,"
    raise KeyboardInterrupt


def test_keyboard_interrupt_while_sending_is_recorded_then_raised(
    server: OutboundServer, audit_records: Any
) -> None:
    url = f"{server.base_url}/json"
    with pytest.raises(KeyboardInterrupt):
        HTTPClient("partner").post(url, data=interrupted_upload())

    assert only_record(audit_records) == outbound(
        {
            "method": "POST",
            "url": url,
            "params": {},
            "headers": {**SENT_BY_REQUESTS, "Transfer-Encoding": "chunked"},
            "body": {"streamed": True, "type": None, "size": None},
        },
        None,
        "KeyboardInterrupt",
    )


def reading_the_body(thread_id: int) -> bool:
    """Whether that thread is inside the audit's read of a response body."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame.f_code.co_name == "_read_body":
            return True
        frame = frame.f_back
    return False


@pytest.fixture
def interrupt_when_in_body(server: OutboundServer) -> Iterator[None]:
    """SIGINT to this process once the server has sent part of a body (``/hang-in-body``) and the test's
    thread is reading it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    assert threading.get_ident() == main  # signals are handled on the main thread

    def interrupt() -> None:
        deadline = time.monotonic() + 10
        server.in_body.wait(10)
        while time.monotonic() < deadline and not reading_the_body(main):
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.release.set()
        thread.join(10)
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("interrupt_when_in_body")
def test_keyboard_interrupt_while_reading_the_body_is_recorded_then_raised(
    server: OutboundServer, audit_records: Any
) -> None:
    url = f"{server.base_url}/hang-in-body"
    with pytest.raises(KeyboardInterrupt):
        HTTPClient("partner").get(url, timeout=20)

    assert only_record(audit_records) == outbound(
        get_request(url),
        {
            "status_code": 200,
            "headers": response_headers("text/plain", 100),
            "body": {"unreadable": "KeyboardInterrupt"},
        },
        "KeyboardInterrupt",
    )
