"""A charset that does not encode ASCII as ASCII cannot hide ASCII text from the redactor.

``access_token=...`` sent as ASCII bytes but labelled ``charset=utf-16-le`` (or ``cp500``, ``utf-32``...)
decodes into unrelated characters (CJK for UTF-16) that the redactor cannot match, yet that encode back to
the secret. Bodies whose bytes are printable UTF-8 are read as UTF-8 whatever such a label says; genuine text
in those charsets is still decoded with them. Outbound (real HTTP server on loopback) and incoming (Django
test client through the middleware) bodies; exact records.
"""

from __future__ import annotations

from typing import Any

import pytest

from activity_audit import bodies
from activity_audit.clients.http import HTTPClient
from tests.support.outbound_http import FORM_WITH_TOKEN, TOKEN, OutboundServer

pytest_plugins = ["tests.support.outbound_http_fixtures"]  # the server fixture

ASCII_INCOMPATIBLE = ["utf-16-le", "utf-16", "utf-32", "cp500", "utf-7"]
REDACTED_FORM = "access_token=[REDACTED]&x=1"


def all_lines(audit_records: Any) -> str:
    return "\n".join(entry.line.decode() for entry in audit_records.entries)


@pytest.mark.parametrize("charset", ASCII_INCOMPATIBLE)
def test_an_outbound_response_of_ascii_bytes_under_a_false_charset_is_redacted(
    charset: str, server: OutboundServer, audit_records: Any
) -> None:
    response = HTTPClient("partner").get(f"{server.base_url}/charset/{charset}")

    assert response.content == FORM_WITH_TOKEN.encode()
    [record] = audit_records.of("audit.request")
    assert record["response_repr"]["body"] == REDACTED_FORM
    assert record["redacted"] == ["response_repr.body"]
    assert TOKEN not in all_lines(audit_records)


@pytest.mark.parametrize("charset", ASCII_INCOMPATIBLE)
@pytest.mark.django_db
def test_an_incoming_body_of_ascii_bytes_under_a_false_charset_is_redacted(
    charset: str, http: Any, audit_records: Any
) -> None:
    # generic(), not post(): post() would re-encode the bytes in the declared charset
    response = http.generic(
        "POST", "/ignores-body/", FORM_WITH_TOKEN.encode(), content_type=f"text/plain; charset={charset}"
    )

    assert response.wsgi_request.body == FORM_WITH_TOKEN.encode()

    [record] = audit_records.of("audit.request")
    assert record["request_repr"]["body"] == REDACTED_FORM
    assert TOKEN not in all_lines(audit_records)


@pytest.mark.parametrize("charset", ["utf-16-le", "utf-32", "cp500"])
def test_genuine_text_in_an_ascii_incompatible_charset_is_still_decoded_with_it(charset: str) -> None:
    text = "Grüße, access_token=abc"
    assert bodies.summarize_body(f"text/plain; charset={charset}", text.encode(charset)) == text


@pytest.mark.parametrize(
    ("declared", "data", "used"),
    [
        ("utf-16-le", b"plain ascii\r\n\tline", "utf-8"),
        ("cp500", "café=1".encode(), "utf-8"),  # printable UTF-8 too
        ("utf-16-le", "ab".encode("utf-16-le"), "utf-16-le"),  # NUL bytes: genuine UTF-16
        ("cp500", "abc".encode("cp500"), "cp500"),  # not UTF-8
        ("latin-1", b"plain", "latin-1"),  # ASCII-compatible: the label is kept
        ("no-such-charset", b"plain", "no-such-charset"),
    ],
)
def test_text_charset(declared: str, data: bytes, used: str) -> None:
    assert bodies.text_charset(declared, data) == used
