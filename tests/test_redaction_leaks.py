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
            "aws_access_key_id": f"AKIA{M}",  # not for its key (an identifier), for its shape
        },
        [
            "tokens",
            "api_keys",
            "passwords",
            "client_secrets",
            "refresh_tokens",
            "aws_secret_access_key",
            "secretAccessKey",
            "aws_access_key_id",
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
    # the cut at 200 bytes falls inside the bio: a word is never kept in part (clean_cut), so it goes whole
    assert record["request_repr"]["body"]["text"] == f"maiden_name={M}&username=ada&bio="


# --- request_id -------------------------------------------------------------------------------------------


def test_a_secret_shaped_request_id_is_masked_and_an_ordinary_one_kept() -> None:
    shaped = {"name": "audit.request", "request_id": JWT}
    ordinary = {"name": "audit.request", "request_id": "0b7e5c1e-2f0e-4a51-9d55-8f1f4f0f2a11"}
    plugin.redact(shaped)
    plugin.redact(ordinary)
    assert shaped == {"name": "audit.request", "request_id": M, "redacted": ["request_id"]}
    assert ordinary == {"name": "audit.request", "request_id": "0b7e5c1e-2f0e-4a51-9d55-8f1f4f0f2a11"}


# --- 8. Digest parameters, quoted URL passwords, escaped JSON, URL user names, percent-encoding, pairs, ---
# vendor tokens, more key names, header lines, fields of API-level records


def written(text: str) -> str:
    """``text`` as the default redactor writes it when it is a value of a record."""
    record = {"x": text}
    Redactor().redact(record)
    return record["x"]


RESPONSE = "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'Authorization: Digest username="bob", realm="api", nonce="dcd98b7102dd2f0e", '
            'uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", '
            f'response="{RESPONSE}", opaque="5ccc069c"',
            f"Authorization: Digest {M}",
        ),
        (f'sent Digest username="bob", response="{RESPONSE}" to the api', f"sent Digest {M} to the api"),
        (f"DIGEST username=ada response={RESPONSE}", f"DIGEST {M}"),  # separated by spaces, as some logs do
        (
            '{"h": "Digest username=\\"bob\\", response=\\"' + RESPONSE + '\\"", "n": 1}',
            f'{{"h": "Digest {M}", "n": 1}}',
        ),
        ('WWW-Authenticate: Digest realm="api", nonce="dcd98b7102dd2f0e"', f"WWW-Authenticate: Digest {M}"),
        ("the weekly digest count=5 was sent", "the weekly digest count=5 was sent"),
        ("Digest of the day: 5 new posts", "Digest of the day: 5 new posts"),
    ],
)
def test_digest_credentials_are_masked_whole(text: str, expected: str) -> None:
    assert written(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://app:pa'ss123@db.internal:5432/app", f"postgres://app:{M}@db.internal:5432/app"),
        ('redis://:ab"cd123@cache:6379/0', f"redis://:{M}@cache:6379/0"),
        ("amqp://u:a\\b123@mq/vhost", f"amqp://u:{M}@mq/vhost"),
        ("amqp://u:a<b123@mq/vhost", f"amqp://u:{M}@mq/vhost"),
        (
            "cannot reach postgres://app:pa'ss@db:5432/app, retrying",
            f"cannot reach postgres://app:{M}@db:5432/app, retrying",
        ),
        ("smtp://u:" + "p" * 256 + "@mail.example", f"smtp://u:{M}@mail.example"),  # the longest password
        # a port, then the end of a quoted string: no password, whatever "@" comes later
        (
            '{"url":"https://h:8080","mail":"ada@example.com"}',
            '{"url":"https://h:8080","mail":"ada@example.com"}',
        ),
        (
            "{'url': 'https://h:8080', 'mail': 'ada@example.com'}",
            "{'url': 'https://h:8080', 'mail': 'ada@example.com'}",
        ),
        ('<a href="https://h:8080">ada@example.com</a>', '<a href="https://h:8080">ada@example.com</a>'),
        (
            '{\\"u\\":\\"https://h:8080\\",\\"m\\":\\"a@b.com\\"}',
            '{\\"u\\":\\"https://h:8080\\",\\"m\\":\\"a@b.com\\"}',
        ),
        ("http://[::1]:8000/@ada", "http://[::1]:8000/@ada"),
        ("http://localhost:8000/@ada", "http://localhost:8000/@ada"),
    ],
)
def test_url_passwords_holding_a_quote_a_backslash_or_a_less_than_sign(text: str, expected: str) -> None:
    assert written(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            json.dumps({"event": "user.created", "raw": json.dumps({"password": "hunter2", "name": "ada"})}),
            '{"event": "user.created", "raw": "{\\"password\\": \\"' + M + '\\", \\"name\\": \\"ada\\"}"}',
        ),
        (  # the inner string holds an escaped quote and backslash
            json.dumps({"raw": json.dumps({"password": 'pa"ss\\word', "name": "ada"})}),
            '{"raw": "{\\"password\\": \\"' + M + '\\", \\"name\\": \\"ada\\"}"}',
        ),
        (
            json.dumps({"raw": json.dumps({"tokens": ["a", "]b"], "name": "ada"})}),
            '{"raw": "{\\"tokens\\": \\"' + M + '\\", \\"name\\": \\"ada\\"}"}',
        ),
        (json.dumps({"raw": json.dumps({"api_key": 12345})}), '{"raw": "{\\"api_key\\": \\"' + M + '\\"}"}'),
        (  # an object that the end of the inner string cuts
            '{"raw": "{\\"secret\\": {\\"a\\": \\"b\\"", "n": 1}',
            '{"raw": "{\\"secret\\": \\"' + M + '\\"", "n": 1}',
        ),
        (
            '{"raw": "{\\"password\\": \\"hunter2-is-l',
            '{"raw": "{\\"password\\": \\"' + M + '\\"',
        ),  # cut body
        (
            json.dumps({"raw": json.dumps({"password": "", "n": 1})}),
            '{"raw": "{\\"password\\": \\"\\", \\"n\\": 1}"}',
        ),
        (
            json.dumps({"raw": json.dumps({"tokenizer": "bert", "max_tokens": 5})}),
            '{"raw": "{\\"tokenizer\\": \\"bert\\", \\"max_tokens\\": 5}"}',
        ),
    ],
)
def test_pairs_of_json_held_in_a_json_string_are_masked(text: str, expected: str) -> None:
    assert written(text) == expected


TOKEN_HEX = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"https://{TOKEN_HEX}@github.com/org/repo.git", f"https://{M}@github.com/org/repo.git"),
        (
            "git clone https://a1b2c3d4e5f6a7b8c9d0@git.example.com/x.git now",
            f"git clone https://{M}@git.example.com/x.git now",
        ),
        (f"https://{TOKEN_HEX}:x-oauth-basic@github.com/org/repo", f"https://{M}:{M}@github.com/org/repo"),
        ("https://user@example.com/", "https://user@example.com/"),
        ("ssh://git@github.com:22/org/repo.git", "ssh://git@github.com:22/org/repo.git"),
        ("https://www.example-company.com@evil.example/", "https://www.example-company.com@evil.example/"),
        ("write to ada.lovelace1815@example.com", "write to ada.lovelace1815@example.com"),  # no scheme URL
        ("https://example.com/users/ada2024@example.com", "https://example.com/users/ada2024@example.com"),
    ],
)
def test_url_user_names_that_look_like_tokens_are_masked(text: str, expected: str) -> None:
    assert written(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "https%3A%2F%2Fapp.example%2Fcb%3Faccess_token%3Dhunter2",
            f"https%3A%2F%2Fapp.example%2Fcb%3Faccess_token%3D{M}",
        ),
        (
            "https%3A%2F%2Fa.example%2Fcb%3Ftoken%3Dhunter2%26state%3Dxyz",
            f"https%3A%2F%2Fa.example%2Fcb%3Ftoken%3D{M}%26state%3Dxyz",
        ),
        (
            "https://a.example/login?next=%2Fcb%3Ftoken%3Dhunter2",
            f"https://a.example/login?next=%2Fcb%3Ftoken%3D{M}",
        ),
        (
            "/login?next=/cb?token=hunter2&x=1",
            f"/login?next=/cb?token={M}&x=1",
        ),  # a kept value is searched too
        ("pin%3D1", f"pin%3D{M}"),  # short, but a "%" gets it scanned
        ("%E2%9C%93%20Bearer%20abc.def-123%20ok", f"%E2%9C%93%20Bearer%20{M}%20ok"),
        ("pin%3D%E2%9C%93%26a%3D1", f"pin{M}a%3D1"),  # a change inside a run of escapes takes the whole run
        (
            "a%3D1%26token%3Dx%26b%3D2%26secret%3Dy",
            f"a%3D1%26token%3D{M}&b=2&secret={M}",
        ),  # one stretch, decoded
        ("50%25 off, 100%", "50%25 off, 100%"),
        (
            "https%3A%2F%2Fa.example%2Fsearch%3Fq%3Dtokenizer%26page%3D2",
            "https%3A%2F%2Fa.example%2Fsearch%3Fq%3Dtokenizer%26page%3D2",
        ),
    ],
)
def test_secrets_in_percent_encoded_text_are_masked_in_place(text: str, expected: str) -> None:
    assert written(text) == expected


def test_lists_of_named_values_and_of_pairs() -> None:
    record: dict[str, Any] = {
        "env": [
            {"name": "DB_PASSWORD", "value": "hunter2"},
            {"name": "DEBUG", "value": "1"},
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
            {"name": "SECRET_KEY", "value": ""},
        ],
        "settings": [
            {"key": "smtp_password", "value": {"old": "a", "new": "b"}},
            {"key": "max_tokens", "value": 5},
        ],
        "Tags": [{"Key": "api_key", "Value": "k-1"}, {"Key": "team", "Value": "core"}],
        "har": {
            "headers": [
                {"name": "Authorization", "value": "Token hunter2"},
                {"name": "Accept", "value": "*/*"},
            ]
        },
        "headers": [["Authorization", "Token hunter2"], ["Accept", "*/*"], ["Cookie", ["a=1", "b=2"]]],
        "params": [["password", "hunter2"], ["page", "2"], ["token_type", "bearer"]],
        "words": ["token", "abc"],  # not in a list of pairs
    }
    assert redacted(record) == (
        {
            "env": [
                {"name": "DB_PASSWORD", "value": M},
                {"name": "DEBUG", "value": "1"},
                {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
                {"name": "SECRET_KEY", "value": ""},
            ],
            "settings": [
                {"key": "smtp_password", "value": {"old": M, "new": M}},
                {"key": "max_tokens", "value": 5},
            ],
            "Tags": [{"Key": "api_key", "Value": M}, {"Key": "team", "Value": "core"}],
            "har": {"headers": [{"name": "Authorization", "value": M}, {"name": "Accept", "value": "*/*"}]},
            "headers": [["Authorization", M], ["Accept", "*/*"], ["Cookie", [M, M]]],
            "params": [["password", M], ["page", "2"], ["token_type", "bearer"]],
            "words": ["token", "abc"],
        },
        [
            "env[0].value",
            "settings[0].value",
            "Tags[0].Value",
            "har.headers[0].value",
            "headers[0][1]",
            "headers[2][1]",
            "params[0][1]",
        ],
    )


GITHUB = "ghp_" + "Ab1" * 12
STRIPE = "4eC39HqLyjWDarjtT1zdp7dc"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"configured client with {GITHUB}", f"configured client with ghp_{M}"),
        (
            "gho_" + "a1" * 18 + " ghu_" + "b2" * 18 + " ghs_" + "c3" * 18 + " ghr_" + "d4" * 18,
            f"gho_{M} ghu_{M} ghs_{M} ghr_{M}",
        ),
        ("pat github_pat_11ABCDEFG0_abcdefghijklmnopqrstuvwxyz0123 ok", f"pat github_pat_{M} ok"),
        (
            f"keys sk_live_{STRIPE}, rk_live_{STRIPE}; sk_test_{STRIPE}.",
            f"keys sk_live_{M}, rk_live_{M}; sk_test_{M}.",
        ),
        (
            "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx xoxp-1-2-3-abcdef123456 xoxa-2-abcdefgh1",
            f"xoxb-{M} xoxp-{M} xoxa-{M}",
        ),
        ("xoxr-1-abcdefgh2 xoxs-1-abcdefgh3", f"xoxr-{M} xoxs-{M}"),
        (f"https://{GITHUB}@github.com/org/repo.git", f"https://ghp_{M}@github.com/org/repo.git"),
        (
            "ghs_config_file_name, sk_live_mode and the xoxo greeting",
            "ghs_config_file_name, sk_live_mode and the xoxo greeting",
        ),
    ],
)
def test_vendor_tokens_are_masked_wherever_they_appear(text: str, expected: str) -> None:
    assert written(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # what django.db.backends logs at DEBUG for a user's save
            "(0.000) INSERT INTO auth_user (password) VALUES ('pbkdf2_sha256$1000000$RujtX6$YCg4bQ='); "
            "args=('pbkdf2_sha256$1000000$RujtX6$YCg4bQ=',)",
            f"(0.000) INSERT INTO auth_user (password) VALUES ('pbkdf2_sha256${M}'); "
            f"args=('pbkdf2_sha256${M}',)",
        ),
        (
            "argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdA$aGFzaA bcrypt_sha256$$2b$12$abcdefghijklmnopqrstuv",
            f"argon2${M} bcrypt_sha256${M}",
        ),
        ("scrypt$16384$salt$hash and pbkdf2_sha1$260000$s$h", f"scrypt${M} and pbkdf2_sha1${M}"),
        ("the price is $5 and bcrypt is a library", "the price is $5 and bcrypt is a library"),
    ],
)
def test_django_password_hashes_are_masked_wherever_they_appear(text: str, expected: str) -> None:
    assert written(text) == expected


def test_a_password_hash_among_sql_parameters_is_masked() -> None:
    record = {"extra_fields": {"params": ["pbkdf2_sha256$1000000$RujtX6$YCg4bQ=", None, "ada"]}}
    Redactor().redact(record)
    assert record["extra_fields"] == {"params": [f"pbkdf2_sha256${M}", None, "ada"]}


def test_more_secret_key_names_and_their_look_alikes() -> None:
    secret = {
        key: "hunter2"
        for key in (
            "password_confirmation",
            "passwordConfirmation",
            "user[password_confirmation]",
            "password_hash",
            "password_digest",
            "pass",
            "db_pass",
            "dbPass",
            "MYSQL_PWD",
            "access_key",
            "AccessKey",
            "auth",
            "basic_auth",
            "auth_key",
            "api.key",
            "apiKeyValue",
        )
    }
    look_alikes = {
        key: "kept"
        for key in (
            "author",
            "authority",
            "authored_by",
            "oauth",
            "authentication",
            "passenger",
            "compass",
            "bypass",
            "passport",
            "token_type",
            "max_tokens",
            "OLDPWD",
            "accesskey",
            "aws_access_key_id",
            "password_changed_at",
            "commit_hash",
            "key_value",
        )
    }
    record, found = redacted({**secret, **look_alikes})
    assert record == {**{key: M for key in secret}, **look_alikes}
    assert found == list(secret)


def test_more_secret_key_names_in_text() -> None:
    text = "user[password_confirmation]=hunter2&db_pass=hunter2&auth=hunter2&bypass=1&author=ada"
    assert written(text) == f"user[password_confirmation]={M}&db_pass={M}&auth={M}&bypass=1&author=ada"
    assert written('{"pass": "hunter2", "compass": "north"}') == f'{{"pass": "{M}", "compass": "north"}}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET / HTTP/1.1\r\nAuthorization: Token hunter2\r\n"
            "Cookie: sessionid=hunter2; csrftoken=x\r\nAccept: */*",
            f"GET / HTTP/1.1\r\nAuthorization: Token {M}\r\nCookie: {M}\r\nAccept: */*",
        ),
        ("X-Api-Key: hunter2", f"X-Api-Key: {M}"),
        ("Cookie: hunter2", f"Cookie: {M}"),
        ("Set-Cookie: sessionid=abc; Path=/", f"Set-Cookie: {M}"),
        ("retrying with X-Auth-Token: hunter2 (attempt 2)", f"retrying with X-Auth-Token: {M}"),  # to the end
        ("Proxy-Authorization: Basic Zm9v", f"Proxy-Authorization: Basic {M}"),
        ("authorization: hunter2", f"authorization: {M}"),  # no scheme word
        (
            '{"msg": "sent Authorization: Token hunter2", "n": 1}',
            f'{{"msg": "sent Authorization: Token {M}", "n": 1}}',
        ),
        (
            "status code: 200, token: expired, X-Token-Type: Bearer",
            "status code: 200, token: expired, X-Token-Type: Bearer",
        ),
        ("password: hunter2 (attempt 2)", f"password: {M} (attempt 2)"),  # not a header: one word
    ],
)
def test_header_lines_in_text(text: str, expected: str) -> None:
    assert written(text) == expected


def test_fields_of_records_logged_at_the_api_level_are_scanned() -> None:
    record = {
        "name": "myapp.partner",
        "service_name": "https://bob:hunter2@partner.example",
        "protocol": "amqp://u:hunter2@mq/vhost",
        "request_type": "x-api-key=hunter2",
    }
    ordinary = {
        "name": "audit.request",
        "service_name": "billing",
        "protocol": "http",
        "request_type": "internal",
    }
    plugin.redact(record)
    plugin.redact(ordinary)
    assert record == {
        "name": "myapp.partner",
        "service_name": f"https://bob:{M}@partner.example",
        "protocol": f"amqp://u:{M}@mq/vhost",
        "request_type": f"x-api-key={M}",
        "redacted": ["service_name", "protocol", "request_type"],
    }
    assert ordinary == {
        "name": "audit.request",
        "service_name": "billing",
        "protocol": "http",
        "request_type": "internal",
    }
