"""Strange requests: a cut inside a card number, an empty ``REMOTE_ADDR``, a client gone mid-body, a complete
body ending in an invalid byte, request ids that are secrets. Exact outcomes."""

from __future__ import annotations

import io

import pytest
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpResponse, RawPostDataException, UnreadablePostError
from django.test import RequestFactory

from activity_audit.bodies import summarize_body
from activity_audit.dispatch import pipeline
from activity_audit.encoding import Limits, Snapshotter, clean_cut
from activity_audit.middleware import AuditLoggingMiddleware
from activity_audit.request_capture import client_address
from tests.request_support import UUID4

pytestmark = pytest.mark.django_db

CARD = "4111111111111111"  # a Visa test number: passes the Luhn check


def only_record(audit_records) -> dict:
    records = audit_records.of("audit.request")
    assert len(records) == 1, records
    return records[0]


# --- a cut never keeps part of a card number ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "cut"),
    [
        ("ab 4111111111111111 x", 8, 3),  # inside the digits: back to the run's start
        ("ab 4111 1111 1111 1111 x", 10, 3),  # grouped with spaces
        ("ab 4111-1111-1111-1111 x", 8, 3),  # grouped with dashes, cut just after a dash
        ("ab 4111 1111 1111 1111 x", 7, 3),  # cut just before a separator that goes on with digits
        ("ab 4111111111111111", 3, 3),  # cut just before the run: nothing of it kept anyway
        ("ab 4111 x", 7, 7),  # the run ends before the cut ("4111" then " x")
        ("ab 4111  1111", 8, 8),  # a double space ends a run
        ("ab 4111  1111", 9, 9),
        ("12 -4111 1111", 10, 3),  # " -" ends the run "12"; the word "-4111" goes too (a dash ends no word)
        ("4111111111111111", 8, 0),
        ("x.4111111111111111", 8, 0),  # "x." starts the word the run is part of: nothing before it ends one
        ("1111-2222-3333-4444-4111-1111-1111-1111", 30, 0),  # a run longer than a card: all of it goes
        ("short", 10, 5),
        ("abc", 0, 0),
    ],
)
def test_clean_cut_moves_back_to_the_start_of_a_split_run_of_digits(text, limit, cut):
    assert clean_cut(text, limit) == cut
    assert clean_cut(text.encode(), limit) == cut


def test_a_string_cut_at_max_field_chars_keeps_no_part_of_a_card_number():
    copier = Snapshotter(Limits(max_chars=10))
    assert copier.copy("ab 4111 1111 1111 1111 end") == "ab …[truncated: 26 chars]"
    assert copier.copy(b"ab " + CARD.encode()) == "ab …[truncated: 19 bytes]"
    assert copier.copy("ab 4111 x and more") == "ab 4111 x …[truncated: 18 chars]"  # no run split
    assert copier.truncated is True


def test_a_text_body_over_max_field_chars_cut_inside_a_card_number(http, audit_records):
    body = "x" * (8192 - 15) + " " + CARD + " tail" + "y" * 100  # the cut at 8192 falls after 14 digits
    http.post("/read-stream/", data=body, content_type="text/plain")
    record = only_record(audit_records)
    assert record["request_repr"]["body"] == "x" * 8177 + " …[truncated: 8299 chars]"
    assert record["truncated"] is True


def test_a_body_over_max_body_bytes_cut_inside_a_card_number(http, audit_records, settings):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "MAX_BODY_BYTES": 1000}
    card = "5555555555554444"
    body = '{"note": "' + "x " * 489 + card + '"}'  # the cut at 1000 bytes falls after 12 digits
    http.post("/echo/", data=body, content_type="application/json")  # the view reads request.body
    assert only_record(audit_records)["request_repr"]["body"] == {
        "truncated": True,
        "size": len(body),
        "text": '{"note": "' + "x " * 489,
    }


# --- client address with an empty REMOTE_ADDR ---------------------------------------------------------------


@pytest.mark.parametrize(("trusted", "expected"), [(1, "203.0.113.7"), (2, "198.51.100.1"), (5, "6.6.6.6")])
def test_an_empty_remote_addr_still_counts_as_the_nearest_hop(
    http, audit_records, settings, trusted, expected
):
    # gunicorn on a unix socket behind nginx sets REMOTE_ADDR to ""
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "TRUSTED_PROXIES": trusted}
    forwarded = "6.6.6.6, 198.51.100.1, 203.0.113.7"  # 6.6.6.6 is whatever the client claimed
    http.get("/whoami/", REMOTE_ADDR="", HTTP_X_FORWARDED_FOR=forwarded)
    record = only_record(audit_records)
    assert (record["client_ip"], record["forwarded_for"]) == (expected, forwarded)


def test_a_missing_remote_addr_still_counts_as_the_nearest_hop():
    # uvicorn --uds gives no client address at all
    assert client_address({"HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7"}, 1) == "203.0.113.7"
    assert client_address({"HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7"}, 2) == "6.6.6.6"


def test_a_forwarded_header_without_entries_and_no_remote_addr(http, audit_records, settings):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "TRUSTED_PROXIES": 1}
    response = http.get("/whoami/", REMOTE_ADDR="", HTTP_X_FORWARDED_FOR=" , ")
    record = only_record(audit_records)
    assert (record["client_ip"], record["forwarded_for"]) == (None, " , ")
    assert response["X-Request-ID"] == record["request_id"]


# --- a client that goes away while sending its body --------------------------------------------------------


class _BrokenInput(io.RawIOBase):
    def readable(self):
        return True

    def readinto(self, buffer):
        raise OSError("client went away")


def _disconnecting_request() -> WSGIRequest:
    meta = (
        RequestFactory().post("/x/", data=b"a=1&b=2", content_type="application/x-www-form-urlencoded").META
    )
    meta["wsgi.input"] = _BrokenInput()
    return WSGIRequest(meta)


def _reads(*steps):
    """A view running ``steps`` on the request in turn; it answers with what each one gave or raised."""

    def view(request):
        outcomes = []
        for step in steps:
            try:
                outcomes.append(repr(step(request)))
            except Exception as exc:
                outcomes.append(f"{type(exc).__name__}{exc.args!r} from {type(exc.__cause__).__name__}")
        return HttpResponse(" | ".join(outcomes))

    return view


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            [lambda request: dict(request.POST)],
            b"UnreadablePostError('client went away',) from UnreadablePostError",
        ),
        (
            [lambda request: request.body, lambda request: request.body],
            b"UnreadablePostError('client went away',) from UnreadablePostError"
            b' | RawPostDataException("You cannot access body after reading from request\'s data stream",)'
            b" from NoneType",
        ),
        (
            [lambda request: request.read(), lambda request: request.read()],
            b"UnreadablePostError('client went away',) from OSError"
            b" | UnreadablePostError('client went away',) from OSError",
        ),
    ],
    ids=["POST", "body twice", "read twice"],
)
def test_a_client_gone_mid_body_gives_the_view_the_error_it_meets_without_auditing(
    audit_records, steps, expected
):
    view = _reads(*steps)
    assert view(_disconnecting_request()).content == expected  # without the middleware
    before = pipeline.reporter.totals.get(("CAPTURE_FAILED", "AuditLoggingMiddleware"), 0)
    assert AuditLoggingMiddleware(view)(_disconnecting_request()).content == expected
    assert only_record(audit_records)["request_repr"]["body"] == {
        "type": "application/x-www-form-urlencoded",
        "size": 7,
        "error": "UnreadablePostError",
    }
    assert pipeline.reporter.totals.get(("CAPTURE_FAILED", "AuditLoggingMiddleware"), 0) == before


def test_the_stream_error_keeps_its_class_and_chain(audit_records):
    seen = []

    def view(request):
        try:
            request.body
        except UnreadablePostError as exc:
            seen.append(exc)
        return HttpResponse()

    AuditLoggingMiddleware(view)(_disconnecting_request())
    (error,) = seen
    assert not isinstance(error, RawPostDataException)
    assert error.args == ("client went away",)
    assert type(error.__cause__.__cause__) is OSError
    assert error.__cause__.__cause__.args == ("client went away",)


# --- a complete body is never treated as cut ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [(b"caf\xe9", "caf\\xe9"), (b"caf\xc3", "caf\\xc3"), (b"\xe2\x82", "\\xe2\\x82")],
)
def test_a_complete_body_ending_in_an_invalid_byte_keeps_it(http, audit_records, data, text):
    http.post("/read-stream/", data=data, content_type="text/plain")
    assert only_record(audit_records)["request_repr"]["body"] == {"invalid_utf8": True, "text": text}


def test_a_body_cut_inside_a_character_drops_only_that_character():
    # A cut moves back to a word end, which is never inside a character; it stays inside one only in a word
    # longer than WORD_LOOKBACK (512): cut at 599 - 512 = 87 bytes, inside the 44th "é" (bytes 86 and 87).
    assert summarize_body("text/plain", "é".encode() * 300, max_bytes=599) == {
        "truncated": True,
        "size": 600,
        "text": "é" * 43,
    }


# --- request ids --------------------------------------------------------------------------------------------


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    ("sent", "header_in_record"),
    [
        ("-abc", "-abc"),  # a leading "-" could be read as an option by a tool handed the id
        (JWT, "[REDACTED]"),
        (CARD, "411111******1111"),
        ("4111-1111-1111-1111", "411111******1111"),
        ("password=hunter2", "password=[REDACTED]"),
    ],
    ids=["leading dash", "JWT", "card", "grouped card", "key=value"],
)
def test_a_request_id_that_starts_with_a_dash_or_holds_a_secret_is_replaced(
    http, audit_records, sent, header_in_record
):
    response = http.get("/whoami/", HTTP_X_REQUEST_ID=sent)
    record = only_record(audit_records)
    assert UUID4.fullmatch(record["request_id"])
    assert response["X-Request-ID"] == record["request_id"]
    assert record["response_repr"]["headers"]["X-Request-ID"] == record["request_id"]
    assert record["request_repr"]["headers"]["X-Request-Id"] == header_in_record


@pytest.mark.parametrize(
    "sent", ["req-42.abc:1", "0b7e5c1e-2f0e-4a51-9d55-8f1f4f0f2a11", "1700000000000", "a=b"]
)
def test_an_ordinary_request_id_is_kept(http, audit_records, sent):
    response = http.get("/whoami/", HTTP_X_REQUEST_ID=sent)
    assert only_record(audit_records)["request_id"] == response["X-Request-ID"] == sent


def test_a_request_id_matching_redact_patterns_is_replaced(http, audit_records, settings):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "REDACT_PATTERNS": [r"tenant-key-\w+"]}
    http.get("/whoami/", HTTP_X_REQUEST_ID="tenant-key-abc123")
    assert UUID4.fullmatch(only_record(audit_records)["request_id"])
