"""Secrets in places the redactor once missed: each test shows the exact text written for one such place.

Nested-form keys, secrets in dict keys, database error details, URL fragments and percent-encoded keys, cut or
malformed JSON, plural and AWS key names, XML, URL passwords holding ``@`` or ``/``, card numbers after a dot,
``@sensitive_post_parameters`` on a cut body, and the top-level ``request_id``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.http import HttpResponseRedirect
from django.urls import path

from activity_audit.logconfig import PipelineHandler
from activity_audit.plugins import redaction as plugin
from activity_audit.redaction import MASK, Redactor

M = MASK
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


def redacted(value: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``value`` after the default redactor (it is changed in place), and the paths reported."""
    found = Redactor().redact(value)
    return value, found


# --- 1. nested-form keys ----------------------------------------------------------------------------------


def test_nested_form_keys_are_judged_by_their_bracketed_parts() -> None:
    record = {
        "user[password]": "hunter2",
        "user[credentials][token]": "t-1",
        "items[0][api_key]": "k-1",
        "password[]": "p-1",
        "user[email]": "ada@example.com",
        "items[0][name]": "pen",
        "filter[token_type]": "Bearer",
    }
    assert redacted(record) == (
        {
            "user[password]": M,
            "user[credentials][token]": M,
            "items[0][api_key]": M,
            "password[]": M,
            "user[email]": "ada@example.com",
            "items[0][name]": "pen",
            "filter[token_type]": "Bearer",
        },
        ["user[password]", "user[credentials][token]", "items[0][api_key]", "password[]"],
    )


def test_nested_form_keys_in_text_are_masked_encoded_or_not() -> None:
    record = {"a": "user[password]=hunter2&user[name]=ada", "b": "user%5Bpassword%5D=hunter2&x=1"}
    assert redacted(record) == (
        {"a": f"user[password]={M}&user[name]=ada", "b": f"user%5Bpassword%5D={M}&x=1"},
        ["a", "b"],
    )


@pytest.mark.django_db
def test_nested_form_keys_of_a_form_body_and_a_query_string(http, audit_records) -> None:
    form = "user%5Bemail%5D=a%40b.c&user%5Bpassword%5D=hunter2"
    http.post(
        "/login/?auth[token]=tok123456&page=2", data=form, content_type="application/x-www-form-urlencoded"
    )
    (record,) = audit_records.of("audit.request")
    assert record["request_repr"]["body"] == {"user[email]": "a@b.c", "user[password]": M}
    assert record["request_repr"]["query_params"] == {"auth[token]": M, "page": "2"}
    assert "hunter2" not in json.dumps(record) and "tok123456" not in json.dumps(record)


def test_nested_form_keys_in_the_extra_of_a_log_call(audit_records) -> None:
    logger = logging.getLogger("tests.redaction.leaks")
    handler = PipelineHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("form", extra={"form": {"user[password]": "hunter2", "user[name]": "ada"}})
    finally:
        logger.removeHandler(handler)
    (record,) = [r for r in audit_records.records if r["name"] == "tests.redaction.leaks"]
    assert record["extra_fields"]["form"] == {"user[password]": M, "user[name]": "ada"}


# --- 2. secrets in dict keys ------------------------------------------------------------------------------


def test_secret_shaped_keys_are_replaced_by_their_masked_text() -> None:
    record: dict[Any, Any] = {
        JWT: "",
        "4111111111111111": "",
        '{"username":"ada","password":"hunter2"}': "",
        4012888888881881: "visa",
        "2024-01-15T10:00:00Z": "a timestamp is no secret",
    }
    assert redacted(record) == (
        {
            M: "",
            "411111******1111": "",
            f'{{"username":"ada","password":"{M}"}}': "",
            "401288******1881": "visa",
            "2024-01-15T10:00:00Z": "a timestamp is no secret",
        },
        [M, "411111******1111", f'{{"username":"ada","password":"{M}"}}', "401288******1881"],
    )


def test_keys_equal_once_masked_keep_every_value_and_their_order() -> None:
    record = {"n": 1, JWT: "a", JWT + "x": "b", M: "c"}
    assert redacted(record) == ({"n": 1, f"{M} (2)": "a", f"{M} (3)": "b", M: "c"}, [f"{M} (2)", f"{M} (3)"])


def test_values_under_a_masked_key_are_still_scanned_and_reported_under_the_new_name() -> None:
    record = {"q": {JWT: {"token": "t-1", "note": "Bearer abc.def-123"}}}
    assert redacted(record) == (
        {"q": {M: {"token": M, "note": f"Bearer {M}"}}},
        [f"q.{M}", f"q.{M}.token", f"q.{M}.note"],
    )


def test_keys_under_a_sensitive_key_are_scanned_too() -> None:
    assert redacted({"credentials": {JWT: "x", "user": "ada"}}) == (
        {"credentials": {M: M, "user": M}},
        ["credentials", f"credentials.{M}"],
    )


def test_harmless_keys_are_remembered_and_secret_keys_are_not() -> None:
    redactor = Redactor()
    redactor.redact({"title": "x", JWT: ""})
    assert "title" in redactor._harmless_keys
    assert JWT not in redactor._harmless_keys
    second = {JWT: ""}
    assert redactor.redact(second) == [M] and second == {M: ""}


@pytest.mark.django_db
def test_a_bare_query_string_and_json_posted_as_a_form(http, audit_records) -> None:
    http.get(f"/whoami/?{JWT}")
    http.post(
        "/login/",
        data='{"username":"ada","password":"hunter2"}',
        content_type="application/x-www-form-urlencoded",
    )
    first, second = audit_records.of("audit.request")
    assert first["request_repr"]["query_params"] == {M: ""}
    assert first["redacted"] == [f"request_repr.query_params.{M}"]
    assert second["request_repr"]["body"] == {f'{{"username":"ada","password":"{M}"}}': ""}
    assert "hunter2" not in json.dumps(second)


# --- 3. database error details ----------------------------------------------------------------------------


def test_database_error_details_mask_the_values_of_sensitive_columns() -> None:
    error = (
        'duplicate key value violates unique constraint "acct_api_token_key"\n'
        "DETAIL:  Key (api_token)=(tok_live_9f8e7d6c5b4a) already exists."
    )
    record = {
        "error_message": error,
        "composite": "Key (tenant_id, api_token)=(42, tok_1) already exists.",
        "unclear": "Key (name, password)=(Lovelace, Ada, hunter2) already exists.",
        "cut": "DETAIL:  Key (password)=(hunter2",
        "harmless": "Key (tenant_id, email)=(42, ada@example.com) already exists.",
    }
    assert redacted(record) == (
        {
            "error_message": error.replace("tok_live_9f8e7d6c5b4a", M),
            "composite": f"Key (tenant_id, api_token)=(42, {M}) already exists.",
            "unclear": f"Key (name, password)=({M}) already exists.",
            "cut": f"DETAIL:  Key (password)=({M}",
            "harmless": "Key (tenant_id, email)=(42, ada@example.com) already exists.",
        },
        ["error_message", "composite", "unclear", "cut"],
    )


# --- 4. URL fragments and percent-encoded keys ------------------------------------------------------------


def test_pairs_after_a_url_fragment_mark_are_masked() -> None:
    record = {"Location": "https://app.example/cb#access_token=SECRETVALUE123&token_type=Bearer&state=xyz"}
    assert redacted(record) == (
        {"Location": f"https://app.example/cb#access_token={M}&token_type=Bearer&state=xyz"},
        ["Location"],
    )


def to_fragment(request: Any) -> HttpResponseRedirect:
    return HttpResponseRedirect("https://app.example/cb#access_token=SECRETVALUE123&x=1")


urlpatterns = [path("to-fragment/", to_fragment)]


@pytest.mark.django_db
def test_a_redirect_to_a_fragment_with_a_token(http, audit_records, settings) -> None:
    settings.ROOT_URLCONF = __name__  # this module's urlpatterns
    http.get("/to-fragment/")
    (record,) = audit_records.of("audit.request")
    assert record["response_repr"]["headers"]["Location"] == f"https://app.example/cb#access_token={M}&x=1"


def test_percent_encoded_keys_in_text_are_decoded_before_they_are_judged() -> None:
    record = {"cut_form": "pass%77ord=hunter2&api%2Dkey=k-1&bio=%70%61ss", "prose": "100%=full"}
    assert redacted(record) == (
        {"cut_form": f"pass%77ord={M}&api%2Dkey={M}&bio=%70%61ss", "prose": "100%=full"},
        ["cut_form"],
    )


# --- 5. cut or malformed JSON -----------------------------------------------------------------------------


def test_a_list_or_object_after_a_sensitive_key_in_json_text_is_masked_whole() -> None:
    record = {
        "list": '{"password": ["hunter2XYZ"], oops',
        "cut_object": '{"token": {"a": "b"',
        "brackets_in_strings": '{"secret": {"a": "]}", "b": ["x"]}, "n": 1}',
        "python_repr": "{'api_keys': ['k1', 'k2'], 'n': 1}",
        "nested": '{"items": [{"password": "x", "id": 7}], "n": 1',
        "empty": '{"password": [], "token": {}, "n": 1',
    }
    assert redacted(record) == (
        {
            "list": f'{{"password": "{M}", oops',
            "cut_object": f'{{"token": "{M}"',
            "brackets_in_strings": f'{{"secret": "{M}", "n": 1}}',
            "python_repr": f"{{'api_keys': \"{M}\", 'n': 1}}",
            "nested": f'{{"items": [{{"password": "{M}", "id": 7}}], "n": 1',
            "empty": '{"password": [], "token": {}, "n": 1',
        },
        ["list", "cut_object", "brackets_in_strings", "python_repr", "nested"],
    )


# --- 6. plural and AWS keys, XML, URL passwords, card numbers after a dot ---------------------------------


def test_plural_and_aws_secret_keys() -> None:
    record = {
        "tokens": ["t-1", "t-2"],
        "api_keys": ["k-1"],
        "passwords": ["p-1"],
        "client_secrets": {"a": "s-1"},
        "refresh_tokens": ["r-1"],
        "aws_secret_access_key": "wJalrXUtnFEMI",
        "secretAccessKey": "wJalrXUtnFEMI",
        "max_tokens": 100,
        "total_tokens": 250,
        "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    }
    assert redacted(record) == (
        {
            "tokens": [M, M],
            "api_keys": [M],
            "passwords": [M],
            "client_secrets": {"a": M},
            "refresh_tokens": [M],
            "aws_secret_access_key": M,
            "secretAccessKey": M,
            "max_tokens": 100,
            "total_tokens": 250,
            "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
        },
        [
            "tokens",
            "api_keys",
            "passwords",
            "client_secrets",
            "refresh_tokens",
            "aws_secret_access_key",
            "secretAccessKey",
        ],
    )


def test_xml_elements_and_attributes_of_sensitive_names() -> None:
    record = {
        "body": "<login><user>ada</user><password>hunter2</password></login>",
        "attribute": "<login user=\"ada\" password='hunter2'/>",
        "cdata": "<ns:ApiKey><![CDATA[k<1>]]></ns:ApiKey>",
        "cut": "<auth><token>abc123",
        "short": "<pin>1</pin>",
        "html": '<p class="token-list">tokens</p><token_type>Bearer</token_type><password> </password>',
    }
    assert redacted(record) == (
        {
            "body": f"<login><user>ada</user><password>{M}</password></login>",
            "attribute": f"<login user=\"ada\" password='{M}'/>",
            "cdata": f"<ns:ApiKey>{M}</ns:ApiKey>",
            "cut": f"<auth><token>{M}",
            "short": f"<pin>{M}</pin>",
            "html": '<p class="token-list">tokens</p><token_type>Bearer</token_type><password> </password>',
        },
        ["body", "attribute", "cdata", "cut", "short"],
    )


def test_xml_of_a_project_key() -> None:
    record = {"x": "<person><NationalId>AB123</NationalId></person>"}
    Redactor(["national_id"]).redact(record)
    assert record == {"x": f"<person><NationalId>{M}</NationalId></person>"}


def test_url_passwords_holding_an_at_sign_or_a_slash() -> None:
    record = {
        "at": "postgres://app:p@ss@db.internal:5432/app",
        "slash": "redis://:pa/ss@cache:6379/0",
        "json": '{"url": "https://u:pw@host/x", "mail": "ada@example.com"}',
        "port_then_path": "http://localhost:8000/@ada",
        "ipv6_host": "http://[::1]:8000/@ada",
        "user_only": "https://user@example.com/",
    }
    assert redacted(record) == (
        {
            "at": f"postgres://app:{M}@db.internal:5432/app",
            "slash": f"redis://:{M}@cache:6379/0",
            "json": f'{{"url": "https://u:{M}@host/x", "mail": "ada@example.com"}}',
            "port_then_path": "http://localhost:8000/@ada",
            "ipv6_host": "http://[::1]:8000/@ada",
            "user_only": "https://user@example.com/",
        },
        ["at", "slash", "json"],
    )


def test_a_card_number_after_a_dot_is_masked_and_decimals_are_not() -> None:
    record = {
        "ref": "ref.4111111111111111",
        "decimal": "0.4111111111111111",
        "version": "v1.4111111111111111",
    }
    assert redacted(record) == (
        {"ref": "ref.411111******1111", "decimal": "0.4111111111111111", "version": "v1.4111111111111111"},
        ["ref"],
    )


# --- 7. @sensitive_post_parameters on body text -----------------------------------------------------------


def request_record(body: Any, declared: list[str]) -> dict[str, Any]:
    return {"name": "audit.request", "request_repr": {"body": body}, "sensitive_post_parameters": declared}


def test_declared_parameters_are_masked_in_a_cut_or_malformed_body() -> None:
    cut = request_record(
        {"truncated": True, "size": 3038, "text": "ssn=078-05-1120&pin_code=9876&comment=ccc"},
        ["ssn", "pin_code"],
    )
    malformed = request_record(
        {"malformed_json": True, "text": '{"ssn": "078-05-1120", "pin_code": 9876, "n": [1'},
        ["ssn", "pin_code"],
    )
    text = request_record("ssn=078-05-1120&comment=ok", ["ssn"])
    for record in (cut, malformed, text):
        plugin.redact(record)
    assert cut["request_repr"]["body"]["text"] == f"ssn={M}&pin_code={M}&comment=ccc"
    assert cut["redacted"] == ["request_repr.body.text"]
    assert malformed["request_repr"]["body"]["text"] == f'{{"ssn": "{M}", "pin_code": "{M}", "n": [1'
    assert text["request_repr"]["body"] == f"ssn={M}&comment=ok"
    assert text["redacted"] == ["request_repr.body"]


@pytest.mark.django_db
def test_declared_parameters_of_a_form_over_the_body_limit(http, audit_records, settings) -> None:
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "MAX_BODY_BYTES": 200}
    form = "maiden_name=Byron&username=ada&bio=" + "b" * 300
    http.post("/login/", data=form, content_type="application/x-www-form-urlencoded")
    (record,) = audit_records.of("audit.request")
    assert record["request_repr"]["body"]["text"] == f"maiden_name={M}&username=ada&bio=" + "b" * 165


# --- request_id -------------------------------------------------------------------------------------------


def test_a_secret_shaped_request_id_is_masked_and_an_ordinary_one_kept() -> None:
    shaped = {"name": "audit.request", "request_id": JWT}
    ordinary = {"name": "audit.request", "request_id": "0b7e5c1e-2f0e-4a51-9d55-8f1f4f0f2a11"}
    plugin.redact(shaped)
    plugin.redact(ordinary)
    assert shaped == {"name": "audit.request", "request_id": M, "redacted": ["request_id"]}
    assert ordinary == {"name": "audit.request", "request_id": "0b7e5c1e-2f0e-4a51-9d55-8f1f4f0f2a11"}
