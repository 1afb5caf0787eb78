"""Strange query strings and names: a body charset that is not the URL's, more parameters than Django
accepts, names longer than ``MAX_FIELD_CHARS``. The record is kept, capped and readable. Exact outcomes."""

from __future__ import annotations

import json

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from activity_audit.encoding import Limits, Snapshotter
from activity_audit.request_capture import parse_query

pytestmark = pytest.mark.django_db

API_KEY = "sk_live_0123456789abcd"


@csrf_exempt
def ok(request):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("ok/", ok)]


@pytest.fixture
def client(settings) -> Client:
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = ["activity_audit.middleware.AuditLoggingMiddleware"]
    return Client()


def only_record(audit_records) -> dict:
    records = audit_records.of("audit.request")
    assert len(records) == 1, records
    return records[0]


# --- the query string is UTF-8, whatever the body's charset ----------------------------------------------


@pytest.mark.parametrize("charset", ["utf-16", "utf-32", "cp037"])
def test_a_body_charset_does_not_change_how_the_query_string_is_read(client, audit_records, charset):
    body = json.dumps({"title": "hello"}).encode(charset)
    client.generic(
        "POST",
        f"/ok/?api_key={API_KEY}&q=caf%C3%A9",
        body,
        content_type=f"application/json; charset={charset}",
    )
    record = only_record(audit_records)
    assert record["request_repr"]["query_params"] == {"api_key": "[REDACTED]", "q": "café"}
    assert record["redacted"] == ["request_repr.query_params.api_key"]


def test_bytes_that_are_not_utf8_are_replaced_as_django_does():
    wsgi_text = b"q=caf%E9&r=\xe9t\xe9".decode("iso-8859-1")  # WSGI hands the raw bytes as latin-1 text
    assert parse_query(wsgi_text, True, 1000) == ({"q": "caf\ufffd", "r": "été"}, 0)
    assert parse_query("q=café", False, 1000) == ({"q": "café"}, 0)  # ASGI: already text


# --- more parameters than DATA_UPLOAD_MAX_NUMBER_FIELDS -----------------------------------------------------


def test_more_query_parameters_than_django_accepts_still_give_the_record(client, audit_records):
    query = "&".join(f"f{index}=v" for index in range(1500))
    response = client.get(f"/ok/?{query}")
    assert response.status_code == 200
    record = only_record(audit_records)
    assert (record["request_repr"]["method"], record["request_repr"]["path"]) == ("GET", "/ok/")
    assert (record["response_repr"]["status_code"], record["actor"]) == (200, "anonymous")
    assert record["request_repr"]["query_params"] == {
        **{f"f{index}": "v" for index in range(1000)},
        "…truncated": "500 more parameters",
    }
    assert record["truncated"] is True


def test_parameters_are_counted_not_keys_and_empty_pieces_are_none():
    query = "&".join(["a=1"] * 3 + ["", "b=2", "", "c"])
    assert parse_query(query, False, 2) == ({"a": ["1", "1"]}, 3)  # "a=1", "b=2", "c" left out
    assert parse_query(query, False, 10) == ({"a": ["1", "1", "1"], "b": "2", "c": ""}, 0)


def test_a_repeated_key_keeps_at_most_max_items_values(client, audit_records):
    client.get("/ok/?" + "&".join(["tag=x"] * 1002))
    assert only_record(audit_records)["request_repr"]["query_params"] == {
        "tag": ["x"] * 1000,
        "…truncated": "2 more parameters",
    }


# --- names over MAX_FIELD_CHARS ---------------------------------------------------------------------------


def test_a_query_key_over_max_field_chars_is_cut_like_a_value(client, audit_records):
    client.get(f"/ok/?{'k+' * 25_000}=1&a=2")  # the key reads "k k k ... k "
    record = only_record(audit_records)
    assert record["request_repr"]["query_params"] == {
        "k " * 4096 + "…[truncated: 50000 chars]": "1",
        "a": "2",
    }
    assert record["truncated"] is True


def test_a_header_name_over_max_field_chars_is_cut_like_a_value(client, audit_records):
    client.get("/ok/", **{"HTTP_" + "X" * 20_000: "1"})
    record = only_record(audit_records)
    # Django's header name: "Xxxx...", one word (a header name holds no word end), so the cut that never
    # splits a word gives up after WORD_LOOKBACK characters: at MAX_FIELD_CHARS - 512 = 7680.
    cut = "X" + "x" * 7679 + "…[truncated: 20000 chars]"
    assert {name: value for name, value in record["request_repr"]["headers"].items() if len(name) > 100} == {
        cut: "1"
    }
    assert record["truncated"] is True


def test_keys_cut_to_the_same_text_are_kept_apart():
    copier = Snapshotter(Limits(max_chars=4))
    cut = "abcd…[truncated: 7 chars]"  # both cut at a word end, after "abcd"
    source = {"abcd ef": 1, "abcd XY": 2, "ab": 3, 5: "v", "5": "w"}
    assert copier.copy(source) == {cut: 1, f"{cut} (2)": 2, "ab": 3, "5": "v", "5 (2)": "w"}
    assert copier.truncated is True


def test_a_key_equal_to_an_earlier_cut_key_is_kept_apart():
    copier = Snapshotter(Limits(max_chars=24))
    cut = "…[truncated: 30 chars]"  # a run of digits is cut at its start, leaving only the marker
    assert copier.copy({"1" * 30: "a", cut: "b"}) == {cut: "a", f"{cut} (2)": "b"}


def test_short_keys_are_kept_as_they_are():
    copier = Snapshotter(Limits(max_chars=4))
    assert copier.copy({"abcd": "x", 1: "y"}) == {"abcd": "x", "1": "y"}
    assert copier.truncated is False
