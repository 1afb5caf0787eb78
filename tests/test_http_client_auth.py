"""Requests resent through ``response.connection`` (HTTPDigestAuth answering a 401) are recorded too.

``HTTPDigestAuth.handle_401`` sends the authenticated request again with ``r.connection.send``: the adapter
that sent the first one. The auditing adapter is that connection, so the server's two exchanges are two
records, in order, with the status each one got. Real HTTP server on loopback; exact records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from requests.auth import HTTPDigestAuth

from activity_audit import audit_context
from activity_audit.clients.http import AuditingAdapter, HTTPClient, audit_session
from tests.support.outbound_http import FIXED_DATE, OutboundServer, response_headers

pytest_plugins = ["tests.support.outbound_http_fixtures"]  # the server fixture

VOLATILE = ("timestamp", "event_id", "stream_id", "seq", "execution_time")
SENT_BY_REQUESTS = dict(requests.utils.default_headers())
PASSWORD = "digest-pa55word-never-logged"


def stable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for record in records:
        assert isinstance(record["execution_time"], float) and record["execution_time"] >= 0
    return [{key: value for key, value in record.items() if key not in VOLATILE} for record in records]


def outbound(request_repr: dict[str, Any], response_repr: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "level": "API",
        "name": "audit.request",
        "message": "Audit External Service",
        "service_name": "partner",
        "request_type": "external",
        "protocol": "http",
        "request_repr": request_repr,
        "response_repr": response_repr,
        "error_message": None,
        "request_id": None,
        "actor": "system:tests",
        **extra,
    }


SESSIONS: dict[str, Callable[[], requests.Session]] = {
    "HTTPClient": lambda: HTTPClient("partner"),
    "audit_session": lambda: audit_session(requests.Session(), "partner"),
}


@pytest.mark.parametrize("make_session", SESSIONS.values(), ids=SESSIONS.keys())
@audit_context(actor="system:tests")
def test_digest_challenge_and_authenticated_resend_are_both_recorded(
    make_session: Callable[[], requests.Session], server: OutboundServer, audit_records: Any
) -> None:
    response = make_session().get(f"{server.base_url}/digest", auth=HTTPDigestAuth("bob", PASSWORD))

    assert response.status_code == 200 and response.json() == {"ok": True}
    assert [r.status_code for r in response.history] == [401]
    assert [received.path for received in server.received] == ["/digest", "/digest"]
    url = f"{server.base_url}/digest"
    assert stable(audit_records.of("audit.request")) == [
        outbound(
            {"method": "GET", "url": url, "params": {}, "headers": SENT_BY_REQUESTS, "body": None},
            {
                "status_code": 401,
                "headers": {
                    "Server": "test-server",
                    "Date": FIXED_DATE,
                    # the challenge holds no secret, but it is masked with the Digest credentials' pattern
                    "WWW-Authenticate": "Digest [REDACTED]",
                    "Content-Length": "0",
                },
                "body": {"type": None, "size": 0},
            },
            redacted=["response_repr.headers.WWW-Authenticate"],
        ),
        outbound(
            {
                "method": "GET",
                "url": url,
                "params": {},
                "headers": {**SENT_BY_REQUESTS, "Authorization": "[REDACTED]"},
                "body": None,
            },
            {"status_code": 200, "headers": response_headers("application/json", 12), "body": {"ok": True}},
            redacted=["request_repr.headers.Authorization"],
        ),
    ]
    assert PASSWORD not in "\n".join(entry.line.decode() for entry in audit_records.entries)


@audit_context(actor="system:tests")
def test_a_response_s_connection_is_the_auditing_adapter(server: OutboundServer, audit_records: Any) -> None:
    session = HTTPClient("partner")
    first = session.get(f"{server.base_url}/json")

    assert isinstance(first.connection, AuditingAdapter)
    again = first.connection.send(first.request, timeout=5)  # what an auth handler does with it

    assert again.status_code == 200 and again.json() == {"items": [1, 2]}
    assert [r["response_repr"]["status_code"] for r in audit_records.of("audit.request")] == [200, 200]
