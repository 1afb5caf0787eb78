"""HTTPClient and audit_session against a real HTTP server on loopback: the exact record of each exchange."""

from __future__ import annotations

import copy
import importlib
import io
import json
import pickle
import socket
import sys
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from activity_audit import audit_context
from activity_audit.bodies import DEFAULT_MAX_BODY_BYTES
from activity_audit.clients.http import HTTPClient, audit_session
from activity_audit.context import process_source
from tests.support.outbound_http import (
    FIXED_DATE,
    GZIPPED_TOKEN,
    NOT_GZIP,
    TOKEN,
    OutboundServer,
    response_headers,
)

VOLATILE = ("timestamp", "event_id", "stream_id", "seq", "execution_time")
SENT_BY_REQUESTS = dict(requests.utils.default_headers())

pytest_plugins = ["tests.support.outbound_http_fixtures"]  # the server fixture


class Catalogue(HTTPClient):
    def __init__(self) -> None:
        super().__init__("catalogue")


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """The record without the fields that differ on every run (execution_time is checked apart)."""
    assert isinstance(record["execution_time"], float) and record["execution_time"] >= 0
    return {key: value for key, value in record.items() if key not in VOLATILE}


def outbound(
    request_repr: dict[str, Any],
    response_repr: dict[str, Any] | None,
    error_message: str | None = None,
    service_name: str = "catalogue",
    request_id: str | None = None,
    actor: str = "system:tests",
) -> dict[str, Any]:
    return {
        "level": "API",
        "name": "audit.request",
        "message": "Audit External Service",
        "service_name": service_name,
        "request_type": "external",
        "protocol": "http",
        "request_repr": request_repr,
        "response_repr": response_repr,
        "error_message": error_message,
        "request_id": request_id,
        "actor": actor,
    }


def only_record(audit_records: Any) -> dict[str, Any]:
    records = audit_records.of("audit.request")
    assert len(records) == 1, records
    return stable(records[0])


@audit_context(actor="system:tests")
def test_get_records_method_url_params_headers_and_parsed_json(
    server: OutboundServer, audit_records: Any
) -> None:
    response = Catalogue().get(f"{server.base_url}/json", params={"q": "a b", "tag": ["x", "y"]})

    assert response.json() == {"items": [1, 2]}
    assert only_record(audit_records) == outbound(
        {
            "method": "GET",
            "url": f"{server.base_url}/json",
            "params": {"q": "a b", "tag": ["x", "y"]},
            "headers": SENT_BY_REQUESTS,
            "body": None,
        },
        {
            "status_code": 200,
            "headers": response_headers("application/json", 17),
            "body": {"items": [1, 2]},
        },
    )


def test_actor_defaults_to_the_process(server: OutboundServer, audit_records: Any) -> None:
    Catalogue().get(f"{server.base_url}/json")

    assert only_record(audit_records)["actor"] == f"system:{process_source()}"


@audit_context(actor="system:tests")
def test_post_json(server: OutboundServer, audit_records: Any) -> None:
    Catalogue().post(f"{server.base_url}/echo", json={"name": "Ada", "tags": ["x"], "n": 1})

    sent = b'{"name": "Ada", "tags": ["x"], "n": 1}'
    assert server.received[-1].body == sent
    assert only_record(audit_records) == outbound(
        {
            "method": "POST",
            "url": f"{server.base_url}/echo",
            "params": {},
            "headers": {
                **SENT_BY_REQUESTS,
                "Content-Length": str(len(sent)),
                "Content-Type": "application/json",
            },
            "body": {"name": "Ada", "tags": ["x"], "n": 1},
        },
        {
            "status_code": 201,
            "headers": response_headers("application/json", len(sent)),
            "body": {"name": "Ada", "tags": ["x"], "n": 1},
        },
    )


@audit_context(actor="system:tests")
def test_post_form_keeps_repeated_keys(server: OutboundServer, audit_records: Any) -> None:
    Catalogue().post(f"{server.base_url}/echo", data={"a": "1", "b": ["2", "3"]})

    form = "application/x-www-form-urlencoded"
    assert server.received[-1].body == b"a=1&b=2&b=3"
    assert only_record(audit_records) == outbound(
        {
            "method": "POST",
            "url": f"{server.base_url}/echo",
            "params": {},
            "headers": {**SENT_BY_REQUESTS, "Content-Length": "11", "Content-Type": form},
            "body": {"a": "1", "b": ["2", "3"]},
        },
        {"status_code": 201, "headers": response_headers(form, 11), "body": {"a": "1", "b": ["2", "3"]}},
    )


@audit_context(actor="system:tests")
def test_binary_bodies_give_type_and_size_only(server: OutboundServer, audit_records: Any) -> None:
    payload = bytes(range(256)) * 2
    Catalogue().put(
        f"{server.base_url}/echo", data=payload, headers={"Content-Type": "application/octet-stream"}
    )
    Catalogue().get(f"{server.base_url}/binary")

    first, second = (stable(r) for r in audit_records.of("audit.request"))
    assert first["request_repr"]["body"] == {"type": "application/octet-stream", "size": 512}
    assert first["response_repr"]["body"] == {"type": "application/octet-stream", "size": 512}
    assert second["response_repr"] == {
        "status_code": 200,
        "headers": response_headers("image/png", 1024),
        "body": {"type": "image/png", "size": 1024},
    }


def test_encoded_bodies_are_described_never_kept(server: OutboundServer, audit_records: Any) -> None:
    Catalogue().post(
        f"{server.base_url}/echo",
        data=GZIPPED_TOKEN,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    undecoded = Catalogue().get(f"{server.base_url}/br-token")
    decoded = Catalogue().get(f"{server.base_url}/gzip-token")

    assert undecoded.content == GZIPPED_TOKEN and decoded.json()["access_token"] == TOKEN
    sent, kept_encoded, unpacked = (stable(r) for r in audit_records.of("audit.request"))
    size = len(GZIPPED_TOKEN)
    assert sent["request_repr"]["body"] == {
        "type": "application/json",
        "size": size,
        "content_encoding": "gzip",
    }
    assert kept_encoded["response_repr"]["body"] == {
        "type": "application/json",
        "size": size,
        "content_encoding": "br",
    }
    # urllib3 decoded this one: the record holds the JSON, redacted like any other
    assert unpacked["response_repr"]["body"] == {"access_token": "[REDACTED]", "expires_in": 3600}
    assert TOKEN not in json.dumps(audit_records.of("audit.request"))


@audit_context(actor="system:tests")
def test_large_bodies_are_cut_at_the_cap_with_their_size(server: OutboundServer, audit_records: Any) -> None:
    big = {"text": "é " * 25_000}  # 75_000 bytes of UTF-8 inside the JSON; the cut falls before a space
    sent = json.dumps(big).encode()
    Catalogue().post(f"{server.base_url}/echo", data=sent, headers={"Content-Type": "application/json"})
    Catalogue().get(f"{server.base_url}/large")

    post, get = (stable(r) for r in audit_records.of("audit.request"))
    cap = DEFAULT_MAX_BODY_BYTES
    assert post["request_repr"]["body"] == {
        "truncated": True,
        "size": len(sent),
        "text": sent[:cap].decode("ascii"),  # json.dumps escapes é as \u00e9: pure ASCII
    }
    assert get["response_repr"]["body"] == {"truncated": True, "size": 100_000, "text": "a " * (cap // 2)}


@audit_context(actor="system:tests")
def test_error_statuses_are_recorded_and_not_raised(server: OutboundServer, audit_records: Any) -> None:
    client = Catalogue()
    assert client.get(f"{server.base_url}/status/404").status_code == 404
    assert client.delete(f"{server.base_url}/status/500").status_code == 500

    records = [stable(r) for r in audit_records.of("audit.request")]
    assert [(r["request_repr"]["method"], r["response_repr"], r["error_message"]) for r in records] == [
        (
            "GET",
            {
                "status_code": 404,
                "headers": response_headers("text/plain; charset=utf-8", 10),
                "body": "status 404",
            },
            None,
        ),
        (
            "DELETE",
            {
                "status_code": 500,
                "headers": response_headers("text/plain; charset=utf-8", 10),
                "body": "status 500",
            },
            None,
        ),
    ]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@audit_context(actor="system:tests")
def test_connection_refused_is_recorded_then_raised_as_requests_raises_it(audit_records: Any) -> None:
    url = f"http://127.0.0.1:{closed_port()}/orders"
    with pytest.raises(requests.ConnectionError) as plain:
        requests.Session().get(url, params={"page": "2"})
    with pytest.raises(requests.ConnectionError) as audited:
        Catalogue().get(url, params={"page": "2"})

    assert type(audited.value) is type(plain.value)
    record = only_record(audit_records)
    error = record.pop("error_message")
    assert error.startswith("ConnectionError: ") and "Connection refused" in error
    assert "page=2" not in error  # the query is in params, not repeated in the message
    expected = outbound(
        {"method": "GET", "url": url, "params": {"page": "2"}, "headers": SENT_BY_REQUESTS, "body": None},
        None,
    )
    del expected["error_message"]
    assert record == expected


@audit_context(actor="system:tests")
def test_timeout_is_recorded_then_raised(server: OutboundServer, audit_records: Any) -> None:
    with pytest.raises(requests.ReadTimeout):
        Catalogue().get(f"{server.base_url}/slow", timeout=0.3)
    server.release.set()

    record = only_record(audit_records)
    assert record["response_repr"] is None
    assert record["error_message"].startswith("ReadTimeout: ")
    assert "read timeout=0.3" in record["error_message"]


@audit_context(actor="system:tests")
def test_streamed_responses_are_never_consumed(server: OutboundServer, audit_records: Any) -> None:
    client = Catalogue()
    sized = client.get(f"{server.base_url}/large", stream=True)
    chunked = client.get(f"{server.base_url}/chunked", stream=True)

    # The records exist before the caller read a byte; the caller still gets every byte.
    records = [stable(r) for r in audit_records.of("audit.request")]
    assert [r["response_repr"]["body"] for r in records] == [
        {"streamed": True, "type": "text/plain", "size": 100_000},
        {"streamed": True, "type": "text/plain", "size": None},
    ]
    assert sized.content == b"a " * 50_000
    assert chunked.content == b"first second"


@audit_context(actor="system:tests")
def test_uploads_from_files_are_not_read_for_the_record(server: OutboundServer, audit_records: Any) -> None:
    Catalogue().post(
        f"{server.base_url}/echo", data=io.BytesIO(b"x" * 1000), headers={"Content-Type": "text/plain"}
    )

    assert server.received[-1].body == b"x" * 1000
    assert only_record(audit_records)["request_repr"]["body"] == {
        "streamed": True,
        "type": "text/plain",
        "size": 1000,
    }


def test_request_id_is_sent_on_and_recorded(server: OutboundServer, audit_records: Any) -> None:
    with audit_context(request_id="req-7f3a", actor="system:tests"):
        Catalogue().get(f"{server.base_url}/json")
        Catalogue().get(f"{server.base_url}/json", headers={"X-Request-ID": "chosen-by-caller"})

    assert [r.headers.get("X-Request-ID") for r in server.received] == ["req-7f3a", "chosen-by-caller"]
    first, second = (stable(r) for r in audit_records.of("audit.request"))
    assert first["request_id"] == second["request_id"] == "req-7f3a"
    assert first["request_repr"]["headers"] == {**SENT_BY_REQUESTS, "X-Request-ID": "req-7f3a"}
    assert second["request_repr"]["headers"] == {**SENT_BY_REQUESTS, "X-Request-ID": "chosen-by-caller"}


def test_request_id_that_is_not_a_safe_header_value_is_not_sent(
    server: OutboundServer, audit_records: Any
) -> None:
    with audit_context(request_id="evil\r\nX-Injected: 1"):
        Catalogue().get(f"{server.base_url}/json")

    assert "X-Request-ID" not in server.received[-1].headers
    assert "X-Injected" not in server.received[-1].headers
    assert only_record(audit_records)["request_id"] == "evil\r\nX-Injected: 1"


def test_no_request_id_outside_a_request(server: OutboundServer, audit_records: Any) -> None:
    Catalogue().get(f"{server.base_url}/json")

    assert "X-Request-ID" not in server.received[-1].headers
    assert only_record(audit_records)["request_id"] is None


@audit_context(actor="system:tests")
def test_each_redirect_hop_is_one_record(server: OutboundServer, audit_records: Any) -> None:
    response = Catalogue().get(f"{server.base_url}/redirect")

    assert response.status_code == 200 and len(response.history) == 1
    records = [stable(r) for r in audit_records.of("audit.request")]
    assert [(r["request_repr"]["url"], r["response_repr"]["status_code"]) for r in records] == [
        (f"{server.base_url}/redirect", 302),
        (f"{server.base_url}/json", 200),
    ]


@audit_context(actor="system:tests")
def test_audit_session_audits_an_existing_session_including_adapters_mounted_later(
    server: OutboundServer, audit_records: Any
) -> None:
    session = requests.Session()
    assert audit_session(session, "inventory") is session
    session.get(f"{server.base_url}/json")
    session.mount("http://", HTTPAdapter(max_retries=2))
    session.get(f"{server.base_url}/status/404")
    audit_session(session, "inventory-v2")  # renames, does not wrap twice
    session.get(f"{server.base_url}/json")

    records = [stable(r) for r in audit_records.of("audit.request")]
    assert [(r["service_name"], r["response_repr"]["status_code"]) for r in records] == [
        ("inventory", 200),
        ("inventory", 404),
        ("inventory-v2", 200),
    ]
    assert records[0] == outbound(
        {
            "method": "GET",
            "url": f"{server.base_url}/json",
            "params": {},
            "headers": SENT_BY_REQUESTS,
            "body": None,
        },
        {"status_code": 200, "headers": response_headers("application/json", 17), "body": {"items": [1, 2]}},
        service_name="inventory",
    )


def plain_outcome(url: str, **options: Any) -> tuple[str, str] | tuple[int, str, list[int]]:
    """What plain requests gives for ``GET url``: the exception (class, message) or the response."""
    try:
        response = requests.Session().get(url, **options)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return response.status_code, response.text, [hop.status_code for hop in response.history]


def audited_outcome(session: requests.Session, url: str, **options: Any) -> Any:
    try:
        response = session.get(url, **options)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return response.status_code, response.text, [hop.status_code for hop in response.history]


def sessions() -> list[requests.Session]:
    return [Catalogue(), audit_session(requests.Session(), "catalogue")]


@audit_context(actor="system:tests")
@pytest.mark.parametrize("session", sessions(), ids=["HTTPClient", "audit_session"])
def test_a_redirect_hop_whose_body_cannot_be_decoded_is_followed_as_requests_follows_it(
    server: OutboundServer, audit_records: Any, session: requests.Session
) -> None:
    url = f"{server.base_url}/redirect-bad-gzip"
    assert plain_outcome(url) == (200, '{"items": [1, 2]}', [302])
    audit_records.clear()

    assert audited_outcome(session, url) == (200, '{"items": [1, 2]}', [302])

    hop, final = (stable(r) for r in audit_records.of("audit.request"))
    assert hop["response_repr"] == {
        "status_code": 302,
        "headers": {
            "Server": "test-server",
            "Date": FIXED_DATE,
            "Location": "/json",
            "Content-Encoding": "gzip",
            "Content-Length": str(len(NOT_GZIP)),
        },
        "body": {"unreadable": "ContentDecodingError"},
    }
    assert hop["error_message"].startswith(
        "ContentDecodingError: ('Received response with content-encoding: gzip"
    )
    assert (final["response_repr"]["body"], final["error_message"]) == ({"items": [1, 2]}, None)


@audit_context(actor="system:tests")
@pytest.mark.parametrize("session", sessions(), ids=["HTTPClient", "audit_session"])
@pytest.mark.parametrize(
    ("route", "options", "error", "plain"),
    [
        ("/bad-gzip", {}, "ContentDecodingError", "ContentDecodingError"),
        ("/cut-off", {}, "ChunkedEncodingError", "ChunkedEncodingError"),
        # requests reads a redirect's body as if it would follow it, ignores the error, and returns the 302
        ("/redirect-bad-gzip", {"allow_redirects": False}, "ContentDecodingError", (302, "", [])),
    ],
)
def test_a_body_that_cannot_be_read_gives_exactly_what_requests_gives(
    server: OutboundServer,
    audit_records: Any,
    session: requests.Session,
    route: str,
    options: dict[str, Any],
    error: str,
    plain: Any,
) -> None:
    url = f"{server.base_url}{route}"
    expected = plain_outcome(url, **options)
    assert (expected[0] if isinstance(plain, str) else expected) == plain
    audit_records.clear()

    assert audited_outcome(session, url, **options) == expected

    [record] = [stable(r) for r in audit_records.of("audit.request")]
    assert record["response_repr"]["body"] == {"unreadable": error}
    assert record["error_message"].startswith(f"{error}: ")


@audit_context(actor="system:tests")
def test_copies_and_unpickled_sessions_stay_audited(server: OutboundServer, audit_records: Any) -> None:
    client = HTTPClient("copied")
    session = audit_session(requests.Session(), "pickled")
    for made in (
        copy.copy(client),
        copy.deepcopy(client),
        pickle.loads(pickle.dumps(client)),
        copy.copy(session),
        copy.deepcopy(session),
        pickle.loads(pickle.dumps(session)),
    ):
        assert made.get(f"{server.base_url}/json").json() == {"items": [1, 2]}
    audit_session(session, "renamed")  # the copies kept their own name
    session.get(f"{server.base_url}/json")

    records = [stable(r) for r in audit_records.of("audit.request")]
    assert [(r["service_name"], r["response_repr"]["body"]) for r in records] == [
        *[("copied", {"items": [1, 2]})] * 3,
        *[("pickled", {"items": [1, 2]})] * 3,
        ("renamed", {"items": [1, 2]}),
    ]


def test_public_names_import_lazily() -> None:
    from activity_audit import HTTPClient as LazyHTTPClient
    from activity_audit import audit_session as lazy_audit_session

    assert LazyHTTPClient is HTTPClient
    assert lazy_audit_session is audit_session


def test_missing_requests_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "requests", None)
    monkeypatch.delitem(sys.modules, "activity_audit.clients.http")

    with pytest.raises(ImportError, match=r'pip install "activity-audit\[http\]"'):
        importlib.import_module("activity_audit.clients.http")
    with pytest.raises(ImportError, match=r'pip install "activity-audit\[http\]"'):
        from activity_audit import HTTPClient  # noqa: F401
