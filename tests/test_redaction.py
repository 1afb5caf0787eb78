"""The built-in redactor: a table of secrets and look-alikes, sent through every capture path.

Each case is (key, value, expected value in the written record). The same table goes through the request body,
the response body, the query string, a CRUD record and a container log's ``extra``; headers have a table of
their own. The records checked are the lines the sinks received.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import pytest

from activity_audit.emit import emit_crud
from activity_audit.logconfig import PipelineHandler
from activity_audit.records import new_record
from activity_audit.redaction import Redactor, has_card_prefix, luhn_valid, mask_card_number

M = "[REDACTED]"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n-----END RSA PRIVATE KEY-----"
PRESIGNED = (
    "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20240101&X-Amz-Signature=deadbeefcafe"
)

CASES = [
    # --- sensitive keys, any spelling -------------------------------------------------------------------
    ("password", "hunter2", M),
    ("Password", "hunter2", M),
    ("PASSWD", "hunter2", M),
    ("new_password1", "hunter2", M),
    ("secret", "s", M),
    ("client_secret", "cs-123", M),
    ("clientSecret", "cs-123", M),
    ("token", "t0k", M),
    ("access_token", "at-1", M),
    ("refreshToken", "rt-1", M),
    ("api_key", "k-1", M),
    ("apiKey", "k-1", M),
    ("X-Api-Key", "k-1", M),
    ("csrfmiddlewaretoken", "abc", M),
    ("sessionid", "sess", M),
    ("code", "oauth-code", M),
    ("sig", "abc", M),
    ("X-Amz-Signature", "abc", M),
    ("X-Amz-Credential", "AKIA/2024", M),
    ("card_number", "4111111111111111", M),
    ("cvv", "123", M),
    ("github_token", "ghp_abc", M),
    ("otp", 123456, M),
    ("private_key", "k", M),
    ("password_confirmation", "hunter2", M),
    ("password_hash", "pbkdf2_sha256$hunter2", M),
    ("pass", "hunter2", M),
    ("db_pass", "hunter2", M),
    ("MYSQL_PWD", "hunter2", M),
    ("access_key", "hunter2", M),
    ("auth", "hunter2", M),
    # --- nothing to hide --------------------------------------------------------------------------------
    ("passphrase", "", ""),
    ("pwd", None, None),
    # --- look-alike keys that stay ----------------------------------------------------------------------
    ("token_type", "Bearer", "Bearer"),
    ("max_tokens", 100, 100),
    ("author", "Ada", "Ada"),
    ("monkey", "George", "George"),
    ("secretary", "Bob", "Bob"),
    ("keyword", "tokenization basics", "tokenization basics"),
    ("summary", "password reset instructions", "password reset instructions"),
    ("authority", "ca.example", "ca.example"),
    ("passenger", "Ada", "Ada"),
    ("compass", "north", "north"),
    ("bypass", "cache", "cache"),
    ("password_changed_at", "2024-01-15", "2024-01-15"),
    # --- secrets inside strings --------------------------------------------------------------------------
    ("note01", JWT, M),
    ("note02", f"token is {JWT}.", f"token is {M}."),
    ("note03", "Authorization: Bearer abc.def-ghi_jkl", f"Authorization: Bearer {M}"),
    ("note04", "basic dXNlcjpwYXNzd29yZA==", f"basic {M}"),
    ("note05", "postgres://app:s3cr3t@db.internal:5432/app", f"postgres://app:{M}@db.internal:5432/app"),
    ("note06", PRESIGNED, PRESIGNED.replace("AKIAEXAMPLE%2F20240101", M).replace("deadbeefcafe", M)),
    ("note07", "https://example.com/cb?code=abc123&state=xyz", f"https://example.com/cb?code={M}&state=xyz"),
    ("note08", PEM, M),
    ("note09", f"key:\n{PEM}\nend", f"key:\n{M}\nend"),
    ("note10", "pay with 4111 1111 1111 1111 today", "pay with 411111******1111 today"),
    ("note11", "5500-0000-0000-0004", "550000******0004"),
    ("note12", "378282246310005", "378282*****0005"),
    ("note13", "6011111111111117", "601111******1117"),
    ("note14", '{"password": "hunter2", "name": "x"', f'{{"password": "{M}", "name": "x"'),
    ("note15", "a=1&password=hunter2&b=2", f"a=1&password={M}&b=2"),
    ("note16", "{'api_key': 'k-123'}", f"{{'api_key': \"{M}\"}}"),
    ("note17", 4111111111111111, "411111******1111"),
    ("note18", 'Digest username="bob", response="6629fae4939"', f"Digest {M}"),
    ("note19", "ghp_" + "Ab1" * 12, f"ghp_{M}"),
    ("note33", "Authorization: Token hunter2", f"Authorization: Token {M}"),
    (
        "note34",
        "https%3A%2F%2Fa.example%2Fcb%3Ftoken%3Dhunter2",
        f"https%3A%2F%2Fa.example%2Fcb%3Ftoken%3D{M}",
    ),
    ("note35", "postgres://app:pa'ss@db/app", f"postgres://app:{M}@db/app"),
    ("note38", "model key sk-proj-Ab1Cd2Ef3Gh4Ab1Cd2Ef3Gh4Ab1Cd2Ef3Gh4", f"model key sk-{M}"),
    (
        "note39",
        "https://hooks.slack.com/services/T0AB/B0CD/aBcDeF12",
        f"https://hooks.slack.com/services/{M}",
    ),
    # --- look-alike strings that stay --------------------------------------------------------------------
    ("note20", "1718000000000", "1718000000000"),
    ("note21", 1718000000000, 1718000000000),
    ("note22", "order 1234567890123456", "order 1234567890123456"),
    ("note23", "4111111111111112", "4111111111111112"),
    ("note24", "https://example.com/path?page=2&sort=name", "https://example.com/path?page=2&sort=name"),
    ("note25", "https://user@example.com/", "https://user@example.com/"),
    ("note26", "Basic authentication is used", "Basic authentication is used"),
    ("note27", "version 2.0.1 released 2024-01-15", "version 2.0.1 released 2024-01-15"),
    ("note28", "+1 (555) 123-4567", "+1 (555) 123-4567"),
    ("note29", "uuid 550e8400-e29b-41d4-a716-446655440000", "uuid 550e8400-e29b-41d4-a716-446655440000"),
    ("note30", "eyJ is how base64 JSON starts", "eyJ is how base64 JSON starts"),
    ("note31", "total=15&count=3", "total=15&count=3"),
    ("note32", "the token expired", "the token expired"),
    (
        "note36",
        "https%3A%2F%2Fa.example%2Fsearch%3Fq%3Dtokenizer",
        "https%3A%2F%2Fa.example%2Fsearch%3Fq%3Dtokenizer",
    ),
    ("note37", "the weekly digest count=5", "the weekly digest count=5"),
]
HEADER_CASES = [
    ("Authorization", "Bearer abc.def.ghi", M),
    ("Proxy-Authorization", "Basic dXNlcjpwYXNz", M),
    ("Cookie", "sessionid=abc; csrftoken=def", M),
    ("X-Api-Key", "k-1", M),
    ("X-CSRFToken", "abc", M),
    ("X-Auth-Token", "abc", M),
    ("X-Amz-Security-Token", "abc", M),
    ("X-Note", f"forwarded {JWT}", f"forwarded {M}"),
    ("X-Token-Type", "Bearer", "Bearer"),
    ("Accept", "application/json", "application/json"),
    ("X-Count", "4111111111111112", "4111111111111112"),
]


def payload() -> dict:
    return {key: value for key, value, _ in CASES}


def expected() -> dict:
    return {key: value for key, _, value in CASES}


def test_the_table_is_large_enough():
    assert len(CASES) + len(HEADER_CASES) >= 50
    assert len({key for key, _, _ in CASES}) == len(CASES)


def assert_table(actual: dict, where: str) -> None:
    wrong = {key: (actual.get(key), want) for key, want in expected().items() if actual.get(key) != want}
    assert not wrong, f"{where}: {wrong}"


def assert_no_secret_left(record: dict) -> None:
    line = json.dumps(record)
    for secret in ("hunter2", "s3cr3t", "dXNlcjpwYXNz", "deadbeefcafe", "MIIEow", "4111 1111", JWT[:20]):
        assert secret not in line


@pytest.mark.django_db
def test_request_and_response_bodies(http, audit_records):
    http.post("/echo/", data=json.dumps(payload()), content_type="application/json")
    (record,) = audit_records.of("audit.request")
    assert_table(record["request_repr"]["body"], "request body")
    assert_table(record["response_repr"]["body"]["received"], "response body")
    assert_no_secret_left(record)
    masked = [key for key, value, want in CASES if value != want]
    assert record["redacted"] == [f"request_repr.body.{key}" for key in masked] + [
        f"response_repr.body.received.{key}" for key in masked
    ]


@pytest.mark.django_db
def test_form_body_and_query_string(http, audit_records):
    strings = {key: str(value) for key, value, _ in CASES if value is not None}
    http.post("/login/?" + urlencode(strings), data=strings)
    (record,) = audit_records.of("audit.request")
    want = {key: str(value) if isinstance(value, int) else value for key, value in expected().items()}
    want.update(otp=M, note21="1718000000000")
    for where, actual in (
        ("query", record["request_repr"]["query_params"]),
        ("form", record["request_repr"]["body"]["fields"]),
    ):
        wrong = {
            key: (actual.get(key), value)
            for key, value in want.items()
            if key in actual and actual[key] != value
        }
        assert not wrong, f"{where}: {wrong}"
    assert_no_secret_left(record)


@pytest.mark.django_db
def test_request_and_response_headers(http, audit_records):
    meta = {"HTTP_" + name.upper().replace("-", "_"): value for name, value, _ in HEADER_CASES}
    http.get("/sets-cookie/", **meta)
    (record,) = audit_records.of("audit.request")
    headers = record["request_repr"]["headers"]
    assert {
        name: headers[name.title() if name != "X-CSRFToken" else "X-Csrftoken"] for name, _, _ in HEADER_CASES
    } == {name: want for name, _, want in HEADER_CASES}
    assert record["response_repr"]["headers"]["Set-Cookie"] == M
    assert_no_secret_left(record)


def test_crud_record_values(audit_records):
    changes = {key: {"old": None, "new": value} for key, value, _ in CASES}
    emit_crud(new_record("AUDIT", "audit.crud", "UPDATE event for Author", model="Author", changes=changes))
    (record,) = audit_records.of("audit.crud")
    assert_table({key: change["new"] for key, change in record["changes"].items()}, "crud")
    assert all(change["old"] is None for change in record["changes"].values())
    assert_no_secret_left(record)


def test_container_log_extra_and_message(audit_records):
    logger = logging.getLogger("tests.redaction.container")
    handler = PipelineHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("connecting to postgres://app:s3cr3t@db/app", extra={"payload": payload()})
    finally:
        logger.removeHandler(handler)
    (record,) = [r for r in audit_records.records if r["name"] == "tests.redaction.container"]
    assert record["message"] == f"connecting to postgres://app:{M}@db/app"
    assert_table(record["extra_fields"]["payload"], "container log")
    assert "message" in record["redacted"]
    assert_no_secret_left(record)


def test_project_keys_and_patterns_from_settings(settings, audit_records):
    settings.ACTIVITY_AUDIT = {
        **settings.ACTIVITY_AUDIT,
        "REDACT_KEYS": ["national_id"],
        "REDACT_PATTERNS": [r"\bEMP-\d{6}\b"],
    }
    emit_crud(
        new_record(
            "AUDIT",
            "audit.crud",
            "x",
            changes={"National-ID": "AB123", "note": "badge EMP-123456 ok", "n": "EMP-12"},
        )
    )
    (record,) = audit_records.of("audit.crud")
    assert record["changes"] == {"National-ID": M, "note": f"badge {M} ok", "n": "EMP-12"}
    assert record["redacted"] == ["changes.National-ID", "changes.note"]


def test_the_cheap_test_never_skips_a_record_with_a_secret():
    import orjson

    redactor = Redactor(["national_id"], [r"EMP-\d{6}"])
    for key, value, want in [*CASES, *HEADER_CASES, ("National-ID", "x", M), ("note", "EMP-123456", M)]:
        if value != want:
            assert redactor.may_hold_secrets(orjson.dumps({key: value})), (key, value)
    assert not redactor.may_hold_secrets(orjson.dumps({"name": "Author 1", "id": 17, "status_code": 201}))


def test_envelope_fields_are_not_scanned_and_nested_lists_are():
    redactor = Redactor()
    record = {"request_id": "a=1&token=keep", "items": [[{"token": "x"}], "Bearer abc.def.ghi"]}
    assert redactor.redact(record, skip=frozenset({"request_id"})) == ["items[0][0].token", "items[1]"]
    assert record == {"request_id": "a=1&token=keep", "items": [[{"token": M}], f"Bearer {M}"]}


def test_structures_nested_deeper_than_the_walk_are_masked_whole():
    deep: list = ["secret-free"]
    for _ in range(200):
        deep = [deep]
    record = {"body": deep}
    found = Redactor().redact(record)
    assert len(found) == 1 and found[0].startswith("body[0]")
    assert "secret-free" not in json.dumps(record)


def test_a_sensitive_key_over_a_structure_keeps_its_shape():
    record = {"credentials": {"user": "ada", "keys": ["a", "b"], "flag": True}}
    Redactor().redact(record)
    assert record == {"credentials": {"user": M, "keys": [M, M], "flag": True}}


@pytest.mark.parametrize(
    ("number", "card"),
    [
        ("4111111111111111", True),
        ("4012888888881881", True),
        ("5555555555554444", True),
        ("2223003122003222", True),
        ("378282246310005", True),
        ("30569309025904", True),
        ("6011111111111117", True),
        ("3530111333300000", True),
        ("6200000000000005", True),
        ("1718000000000", False),  # a millisecond timestamp, whatever its check digit
        ("7992739871300000", False),  # passes Luhn, no card prefix
        ("4111111111111112", False),  # card prefix, fails Luhn
    ],
)
def test_card_numbers_need_luhn_and_an_issuer_prefix(number, card):
    assert (luhn_valid(number) and has_card_prefix(number)) is card
    assert (mask_card_number(number) is not None) is card


def test_millisecond_timestamps_never_look_like_cards():
    start = 1_700_000_000_000
    assert not any(mask_card_number(str(start + step * 7919)) for step in range(20_000))


def test_the_documented_project_redactor_works(audit_records):
    import re
    import types
    from pathlib import Path

    from activity_audit.testing import registered_plugin

    text = (Path(__file__).resolve().parents[1] / "docs" / "redaction.md").read_text()
    (source,) = [
        block for block in re.findall(r"```python\n(.*?)```", text, re.DOTALL) if "@hookimpl" in block
    ]
    module = types.ModuleType("docs_redaction_example")
    exec(compile(source, "docs/redaction.md", "exec"), module.__dict__)
    with registered_plugin(module, name="docs_redaction_example"):
        emit_crud(new_record("AUDIT", "audit.crud", "patient MRN-1234567 updated", changes={"password": "x"}))
        (record,) = audit_records.of("audit.crud")
    assert record["message"] == f"patient {M} updated"
    assert record["changes"] == {"password": M}
    assert sorted(record["redacted"]) == ["changes.password", "message"]
