"""Secret shapes the redactor once let through, each next to look-alikes that must stay as they are.

Short ``Bearer`` tokens in free text; AWS access key ids; ``password: x`` and ``password = x`` in prose;
JSON keys spelt with ``\\u`` escapes; more header and cookie names; URLs with JSON-escaped slashes; URL
passwords longer than 256 characters; card numbers grouped with dots; short JSON Web Tokens; Python bytes
literals as values in the repr of a dict (botocore's DEBUG record of a request's headers); tokens of more
vendors (OpenAI, Anthropic, Google, GitLab, npm, PyPI, Hugging Face, SendGrid, Shopify, DigitalOcean, Stripe
webhooks) and the secret path of Slack and Discord webhook URLs.
"""

from __future__ import annotations

import time

import orjson
import pytest

from activity_audit.redaction import MASK, Redactor

M = MASK


def scrub(text: str) -> str:
    """``text`` as the default redactor writes it."""
    return Redactor().scrub_text(text) or text


def assert_scrubbed(cases: list[tuple[str, str]]) -> None:
    """Every ``(text, written)`` of ``cases`` is written so; the wrong ones are listed at once."""
    wrong = [(text, scrub(text), want) for text, want in cases if scrub(text) != want]
    assert wrong == []


def assert_kept(texts: list[str]) -> None:
    """Every text of ``texts`` is written unchanged."""
    assert [text for text in texts if Redactor().scrub_text(text) is not None] == []


# --- 1. short Bearer tokens ---------------------------------------------------------------------------------


def test_a_short_bearer_token_in_a_header_line_was_masked_already() -> None:
    assert_scrubbed(
        [
            ("Authorization: Bearer abcdefgh", f"Authorization: Bearer {M}"),
            ("sent Authorization: Bearer abcdefgh", f"sent Authorization: Bearer {M}"),
            (
                "curl -H 'Authorization: Bearer abcdefgh' https://x",
                f"curl -H 'Authorization: Bearer {M}' https://x",
            ),
        ]
    )


def test_a_short_bearer_token_in_free_text_is_masked() -> None:
    assert_scrubbed(
        [
            ("retrying with Bearer abcdefgh", f"retrying with Bearer {M}"),
            ("bearer abcdefgh rejected", f"bearer {M} rejected"),
            ("BEARER ABCDEFGH", f"BEARER {M}"),
            ('{"note": "sent Bearer abcdefgh"}', f'{{"note": "sent Bearer {M}"}}'),
            ("auth=Bearer abcdefghijklmnopq", f"auth={M} {M}"),  # the token leaked after "auth=Bearer"
            ("Basic dXNlcjpwYXNz was sent", f"Basic {M} was sent"),
        ]
    )


def test_words_after_bearer_and_basic_in_prose_stay() -> None:
    assert_kept(
        [
            "Bearer authentication failed",
            "use Bearer authorization for this API",
            "Bearer credentials required",
            "bearer tokens expire after an hour",
            "the bearer of bad news",
            "Basic information about the account",
            "basic functionality is available",
            "Digest algorithm mismatch",
            "Bearer abc rejected",
            "Basic Authentication",
        ]
    )


# --- 2. AWS access key ids ----------------------------------------------------------------------------------


def test_aws_access_key_ids_in_free_text_are_masked_their_prefix_kept() -> None:
    assert_scrubbed(
        [
            ("key AKIAIOSFODNN7EXAMPLE used", f"key AKIA{M} used"),
            ("ASIAY34FZKBOKMUTVV7A", f"ASIA{M}"),
            ("aws_access_key_id=AKIAIOSFODNN7EXAMPLE&x=1", f"aws_access_key_id=AKIA{M}&x=1"),
            ('{"AccessKeyId": "ASIAY34FZKBOKMUTVV7A", "n": 1}', f'{{"AccessKeyId": "ASIA{M}", "n": 1}}'),
            ("(AKIAIOSFODNN7EXAMPLE)", f"(AKIA{M})"),
        ]
    )
    record = {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "region": "eu-west-1"}
    assert Redactor().redact(record) == ["aws_access_key_id"]
    assert record == {"aws_access_key_id": f"AKIA{M}", "region": "eu-west-1"}


def test_words_and_ids_like_aws_key_ids_stay() -> None:
    assert_kept(
        [
            "ASIAN markets",
            "ASIA-PACIFIC region",
            "Asia/Tokyo",
            "AKIA",
            "AKIAIOSFODNN7EXAMPL",  # 15 characters after the prefix
            "AKIAIOSFODNN7EXAMPLE1",  # 17
            "XAKIAIOSFODNN7EXAMPLE",
            "akiaiosfodnn7example",
            "AKIAiosfodnn7example",
            "AROAIOSFODNN7EXAMPLE",  # a role id, not an access key
        ]
    )


def test_the_quick_test_on_encoded_records_sees_aws_access_key_ids() -> None:
    assert Redactor().may_hold_secrets(b'{"note": "AKIAIOSFODNN7EXAMPLE"}')
    assert not Redactor().may_hold_secrets(b'{"note": "ASIAN markets"}')


# --- 3. password: x and password = x in prose ---------------------------------------------------------------


def test_quoted_and_unspaced_pairs_were_masked_already() -> None:
    assert_scrubbed(
        [
            ('the "secret": "x"', f'the "secret": "{M}"'),
            ("{'password': 'hunter2'}", f"{{'password': \"{M}\"}}"),
            ("password=hunter2&x=1", f"password={M}&x=1"),
            ('password = "hunter 2"', f'password = "{M}"'),
            ("X-Api-Key: abc", f"X-Api-Key: {M}"),
        ]
    )


def test_a_secret_after_a_sensitive_name_a_colon_and_a_space_is_masked() -> None:
    assert_scrubbed(
        [
            ("password: hunter2", f"password: {M}"),
            ("login failed, password: hunter2 for ada", f"login failed, password: {M} for ada"),
            ("Password:\thunter2", f"Password:\t{M}"),
            ("secret: x", f"secret: {M}"),
            ("client_secret: abc123, retrying", f"client_secret: {M} retrying"),
            ("spring.datasource.password: s3cr3t", f"spring.datasource.password: {M}"),
            ("api_key: 'abc 123' sent", f"api_key: '{M}' sent"),
            ('db_password: "pa ss\\"word" end', f'db_password: "{M}" end'),
            ('{"msg": "password: \\"hunter 2\\""}', f'{{"msg": "password: \\"{M}\\""}}'),
            ('{"msg": "password: hunter2"}', f'{{"msg": "password: {M}"}}'),
            ("password: hunter2\nuser: ada", f"password: {M}\nuser: ada"),
            ("pin: 1234", f"pin: {M}"),
            ("session_id: 4f1c2a", f"session_id: {M}"),
            ("github_token: ab12, access_token: cd34", f"github_token: {M} access_token: {M}"),
        ]
    )


def test_a_secret_right_after_a_sensitive_name_and_a_colon_is_masked() -> None:
    assert_scrubbed(
        [
            ("login failed password:hunter2 for bob", f"login failed password:{M} for bob"),
            ("password:hunter2", f"password:{M}"),
            ("pin:1234", f"pin:{M}"),
            ("otp:123456 sent", f"otp:{M} sent"),
            ("api_key:abc-123", f"api_key:{M}"),
            ("spring.datasource.password:s3cr3t", f"spring.datasource.password:{M}"),
        ]
    )


def test_a_value_that_only_starts_like_a_port_is_masked() -> None:
    assert_scrubbed(
        [
            ("app.secret:3f9a2b7c1d", f"app.secret:{M}"),
            ("db.password:12345678", f"db.password:{M}"),  # more digits than a port has
        ]
    )


def test_a_host_and_port_or_a_weak_name_right_before_a_colon_stays() -> None:
    assert_kept(
        [
            "http://secret:8080/health",
            "redis://password:6379/0",
            "ada@secret:22",
            "db.password:5432",
            "token:expired",
            "pwd:/home/ada",
            "code:E123",
        ]
    )


def test_a_secret_after_a_sensitive_name_and_a_spaced_equals_sign_is_masked() -> None:
    assert_scrubbed(
        [
            ("password = hunter2", f"password = {M}"),
            ("connecting with password = hunter2 to db", f"connecting with password = {M} to db"),
            ("DB_PASSWORD\t=\thunter2", f"DB_PASSWORD\t=\t{M}"),
            ("secret =hunter2", f"secret ={M}"),
        ]
    )


def test_names_before_a_colon_or_a_spaced_equals_sign_in_prose_stay() -> None:
    assert_kept(
        [
            "token: expired",
            "status code: 200",
            "code: E123",
            "code = 200",
            "token = expired",
            "signature: valid",
            "credentials: invalid",
            "pwd: /home/ada",
            "Pass: 3 of 5",
            "password: [REDACTED]",
            "Password:",
            "Enter password: ",
            "max_tokens: 100, total_tokens: 250",
            "token_type: bearer",
            "password_changed_at: 2024-01-15",
            "Password reset: sent",
            "author: ada, bypass: true, compass: north",
            "at 10:00:00 the job ran",
            "http://secret:8080/health",
            "db.password:5432",
            "x = 1, y = 2",
            "if password == expected",
        ]
    )


# --- 4. JSON keys spelt with \u escapes ---------------------------------------------------------------------


def test_json_text_with_escaped_key_names_is_masked() -> None:
    assert_scrubbed(
        [
            ('{"pass\\u0077ord": "x"}', f'{{"pass\\u0077ord": "{M}"}}'),
            ('{"\\u0070assword": "hunter2", "n": 1', f'{{"\\u0070assword": "{M}", "n": 1'),  # a cut body
            ('{"API\\u005FKEY": "k-1"}', f'{{"API\\u005FKEY": "{M}"}}'),
            (
                '{"\\u0074\\u006f\\u006b\\u0065\\u006e": ["a", "b"]}',
                f'{{"\\u0074\\u006f\\u006b\\u0065\\u006e": "{M}"}}',
            ),
            (
                '{"raw": "{\\"pass\\\\u0077ord\\": \\"x\\"}"}',
                f'{{"raw": "{{\\"pass\\\\u0077ord\\": \\"{M}\\"}}"}}',
            ),
        ]
    )
    record = {"body": {"truncated": True, "text": '{"user": "ada", "pass\\u0077ord": "hunter2", "rem'}}
    assert Redactor().redact(record) == ["body.text"]
    assert record["body"]["text"] == f'{{"user": "ada", "pass\\u0077ord": "{M}", "rem'


def test_a_dict_key_with_escaped_characters_is_judged_decoded() -> None:
    record = {"pass\\u0077ord": "hunter2", "na\\u006de": "ada"}
    assert Redactor().redact(record) == ["pass\\u0077ord"]
    assert record == {"pass\\u0077ord": M, "na\\u006de": "ada"}


def test_declared_names_are_found_escaped_in_body_text() -> None:
    text = '{"user": "ada", "pass\\u0077ord": "hunter2"}'
    assert Redactor().mask_keys_in_text(text, ["password"]) == f'{{"user": "ada", "pass\\u0077ord": "{M}"}}'


def test_escaped_key_names_that_are_no_secret_stay() -> None:
    assert_kept(
        [
            '{"pass\\u0065nger": "3"}',
            '{"na\\u006de": "ada", "caf\\u00e9": "latte"}',
            '{"\\u00e9t\\u00e9": "x", "n\\u00b0": 2}',
            '{"note": "pass\\u0077ord"}',
            '{"bad\\u00zz": "x"}',
        ]
    )


def test_the_quick_test_on_encoded_records_decodes_json_escapes() -> None:
    assert Redactor().may_hold_secrets(b'{"p\\u0061ssword": "x"}')
    assert Redactor().may_hold_secrets(b'{"text": "{\\"p\\\\u0061ssword\\": 1}"}')
    assert not Redactor().may_hold_secrets(b'{"na\\u006de": "ada"}')


# --- 5. more header and cookie names ------------------------------------------------------------------------

NEW_SECRET_NAMES = [
    "Ocp-Apim-Subscription-Key",
    "subscription_key",
    "X-Functions-Key",
    "X-Master-Key",
    "RAILS_MASTER_KEY",
    "encryption_key",
    "signingKey",
    "secret_key_base",
    "PHPSESSID",
    "connect.sid",
    "laravel_session",
    "ci_session",
]
# Relatives that were masked already.
OLD_SECRET_NAMES = [
    "X-Amz-Security-Token",
    "X-Goog-Api-Key",
    "JSESSIONID",
    "ASP.NET_SessionId",
    "X-Vault-Token",
    "X-Hub-Signature-256",
    "X-RapidAPI-Key",
    "X-Auth-Key",
    "Private-Token",
    "X-Shopify-Access-Token",
    "DD-API-KEY",
    "api-key",
]
LOOK_ALIKE_NAMES = [
    "primary_key",
    "sort_key",
    "subscription_id",
    "subscription",
    "encryption",
    "encryption_algorithm",
    "signing_algorithm",
    "master",
    "session_count",
    "Sec-WebSocket-Key",
    "X-Request-Id",
    "PHPSESSID_NAME",
    "connection_id",
]


def test_more_header_and_cookie_names_are_sensitive_keys() -> None:
    record = {name: "v-1" for name in [*NEW_SECRET_NAMES, *OLD_SECRET_NAMES, *LOOK_ALIKE_NAMES]}
    assert Redactor().redact(record) == [*NEW_SECRET_NAMES, *OLD_SECRET_NAMES]


def test_more_header_and_cookie_names_in_text() -> None:
    assert_scrubbed(
        [
            ("Ocp-Apim-Subscription-Key: 0123abcd (attempt 2)", f"Ocp-Apim-Subscription-Key: {M}"),
            ("x-functions-key: abc", f"x-functions-key: {M}"),
            ("PHPSESSID=el4ukv0kqbvoirg7nkp4dncpk3; path=/", f"PHPSESSID={M}; path=/"),
            ("sid PHPSESSID: el4ukv0kqbvoirg7nkp4dncpk3", f"sid PHPSESSID: {M}"),
            ('{"connect.sid": "s%3Aabc.def"}', f'{{"connect.sid": "{M}"}}'),
            ("?subscription-key=abc123&x=1", f"?subscription-key={M}&x=1"),
        ]
    )
    assert_kept(["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ", "subscription_id=42", "session_count: 3"])


def test_the_quick_test_on_encoded_records_sees_the_new_names() -> None:
    for name in NEW_SECRET_NAMES:
        assert Redactor().may_hold_secrets(f'{{"{name}": "v"}}'.encode()), name


@pytest.mark.django_db
def test_request_headers_of_the_new_names_are_masked(http, audit_records) -> None:
    http.get(
        "/sets-cookie/",
        HTTP_OCP_APIM_SUBSCRIPTION_KEY="0123abcd",
        HTTP_X_FUNCTIONS_KEY="fk-1",
        HTTP_X_GOOG_API_KEY="gk-1",
        HTTP_X_AMZ_SECURITY_TOKEN="st-1",
        HTTP_X_REQUEST_ID="req-1",
    )
    (record,) = audit_records.of("audit.request")
    headers = record["request_repr"]["headers"]
    assert {name: headers[name] for name in headers if name.startswith(("Ocp", "X-"))} == {
        "Ocp-Apim-Subscription-Key": M,
        "X-Functions-Key": M,
        "X-Goog-Api-Key": M,
        "X-Amz-Security-Token": M,
        "X-Request-Id": "req-1",
    }


# --- 6. URLs with JSON-escaped slashes ----------------------------------------------------------------------


def test_passwords_of_urls_with_escaped_slashes_are_masked() -> None:
    assert_scrubbed(
        [
            ('{"url": "https:\\/\\/user:pass@host\\/x"}', f'{{"url": "https:\\/\\/user:{M}@host\\/x"}}'),
            ("postgres:\\/\\/app:s3cr3t@db:5432\\/app", f"postgres:\\/\\/app:{M}@db:5432\\/app"),
            ("redis:\\/\\/:s3cr3t@cache:6379\\/0", f"redis:\\/\\/:{M}@cache:6379\\/0"),
            (
                '"https:\\\\\\/\\\\\\/u:p@h\\\\\\/x"',
                f'"https:\\\\\\/\\\\\\/u:{M}@h\\\\\\/x"',
            ),  # escaped twice
            (
                "https:\\/\\/0123456789abcdef0123@github.com\\/org\\/repo.git",
                f"https:\\/\\/{M}@github.com\\/org\\/repo.git",
            ),
        ]
    )


def test_urls_with_escaped_slashes_and_no_password_stay() -> None:
    assert_kept(
        [
            '{"url": "https:\\/\\/host:8080\\/@ada"}',
            '{"url": "https:\\/\\/example.com\\/a", "mail": "ada@example.com"}',
            '{"url":"https:\\/\\/h:8080","mail":"ada@example.com"}',
            "https:\\/\\/user@example.com\\/",
            "ssh:\\/\\/git@github.com\\/org\\/repo.git",
            "at 10:\\/\\/ ada@example.com",
        ]
    )


def test_the_quick_test_on_encoded_records_sees_escaped_url_passwords() -> None:
    assert Redactor().may_hold_secrets(b'{"u": "https:\\\\/\\\\/ada:hunter2@host"}')
    assert not Redactor().may_hold_secrets(b'{"u": "https:\\\\/\\\\/user@host"}')


# --- 7. URL passwords longer than 256 characters, or holding an escaped slash -------------------------------

LONG = "p4ss" * 75  # 300 characters


def test_url_passwords_the_pattern_leaves_are_masked_to_the_last_at() -> None:
    assert_scrubbed(
        [
            (f"https://user:{LONG}@host/x", f"https://user:{M}@host/x"),
            (f"postgres://app:{'a1/b@' * 100}@db/app", f"postgres://app:{M}@db/app"),
            (f"redis://:{'x' * 5000}@cache:6379/0 and more", f"redis://:{M}@cache:6379/0 and more"),
            (f'{{"url": "https:\\/\\/u:{LONG}@host\\/x"}}', f'{{"url": "https:\\/\\/u:{M}@host\\/x"}}'),
            ("https:\\/\\/u:pa\\/ss@host\\/x", f"https:\\/\\/u:{M}@host\\/x"),
            (f"a https://u:{LONG}@h b https://v:{LONG}@i", f"a https://u:{M}@h b https://v:{M}@i"),
            # an "@" in the path: masked up to it, as when it is nearer (https://u:p@host/users/a@b.com)
            (f"https://u:p@host/{'a' * 300}@b.com", f"https://u:{M}@b.com"),
        ]
    )


def test_long_text_after_a_port_or_beyond_a_space_or_quote_is_no_password() -> None:
    assert_kept(
        [
            f"https://host:8080/{'a' * 300}@ada",
            f"https://u:{LONG} ada@example.com",
            f'{{"url": "https://h:{"x" * 300}", "mail": "ada@example.com"}}',
            f"https://u:{LONG}\\nada@example.com",
        ]
    )


def test_many_url_starts_without_at_take_linear_time() -> None:
    hostile = "@ " + "://a:" * 40_000 + "x" * 1000  # 200 KB: a quadratic search would take minutes
    started = time.perf_counter()
    Redactor().scrub_text(hostile)
    assert time.perf_counter() - started < 2.0
    hostile = "://a:" * 40_000 + "@h"  # every start reaches the same last "@": one stretch is masked
    assert scrub(hostile) == f"://a:{M}@h"


# --- 8. card numbers grouped with dots ----------------------------------------------------------------------


def test_card_numbers_grouped_with_dots_are_masked() -> None:
    assert_scrubbed(
        [
            ("card 4111.1111.1111.1111", "card 411111******1111"),
            ("5555.5555.5555.4444 charged", "555555******4444 charged"),
            ("amex 3782.822463.10005", "amex 378282*****0005"),
            ("diners 3056.930902.5904", "diners **********5904"),
            ("ref.6011.1111.1111.1117", "ref.601111******1117"),
            ('{"n": "4111.1111.1111.1111"}', '{"n": "411111******1111"}'),
        ]
    )


def test_dotted_numbers_that_are_no_card_stay() -> None:
    assert_kept(
        [
            "1.2.3.4",
            "version 1.2.3.4 of 10.0.19041.1234",
            "from 192.168.100.200 and 10.255.255.255",
            "1705312800.123456",
            "3.14159265358979323",
            "0.4111111111111111",
            "4111.1111.1111.1112",  # the Luhn check fails
            "1234.5678.9012.3456",  # no issuer starts with 1
            "1.4111.1111.1111.1111",  # after a digit and a dot
            "4111.1111.1111.1111.5",  # a dotted number that goes on
            "2.16.840.1.113730.3.1.1",
            "4111.11111111.1111",  # groups of more than six digits
            "4111..1111.1111.1111",
        ]
    )


def test_the_quick_test_on_encoded_records_sees_dotted_card_numbers() -> None:
    assert Redactor().may_hold_secrets(b'{"n": "4111.1111.1111.1111"}')
    assert not Redactor().may_hold_secrets(b'{"n": "1705312800.123456"}')


# --- 9. short JSON Web Tokens -------------------------------------------------------------------------------


def test_short_json_web_tokens_are_masked() -> None:
    assert_scrubbed(
        [
            ("eyJhbGciOi.eyJzdWIi.sig", M),
            ("jwt eyJhbGciOi.eyJzdWIi.sig here", f"jwt {M} here"),
            ('{"t": "eyJhbGciOi.eyJzdWIi."}', f'{{"t": "{M}"}}'),  # "alg": "none", no signature
            ("token=eyJhbGc.eyJzdWI.x&y=1", f"token={M}&y=1"),
            ("cookie jwt=eyJhbGciOi.eyJzdWIi.c2ln; path=/", f"cookie jwt={M}; path=/"),
            ("see eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", f"see {M}"),  # long ones, as before
        ]
    )


def test_words_starting_with_eyj_outside_the_shape_of_a_token_stay() -> None:
    assert_kept(
        [
            "eyJhbGciOi",
            "eyJump.foo.bar",
            "eyJhbGciOi.foo.bar",  # a short second part that is no JSON object
            "eyJa.eyJb.c",
            "see eyJhbGciOi.eyJzdWIi",  # no second dot
            "xeyJhbGciOi.eyJzdWIi.sig",
            "eyJhbGciOi.eyJ.sig",
        ]
    )


def test_runs_of_eyj_and_dashes_take_linear_time() -> None:
    hostile = "eyJ-" * 50_000  # 200 KB: each "eyJ" after a dash once read the run to its end
    started = time.perf_counter()
    Redactor().scrub_text(hostile)
    assert time.perf_counter() - started < 2.0


# --- 10. Python bytes literals as values in a dict's repr --------------------------------------------------

BOTOCORE_REQUEST = (
    "Sending http request: <AWSPreparedRequest stream_output=False, method=GET, "
    "url=http://127.0.0.1:5000/audit?object-lock, headers={'User-Agent': b'Boto3/1.35.0', "
    "'X-Amz-Date': b'20260115T120000Z', 'X-Amz-Security-Token': b'FwoGZXIvYXdzEBYaDHhPq3R0c2Vzc2lvbg', "
    "'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260115/us-east-1/s3/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=0123456789abcdef'}>"
)


def test_a_bytes_value_of_a_sensitive_key_is_masked() -> None:
    assert_scrubbed(
        [
            (
                BOTOCORE_REQUEST,
                "Sending http request: <AWSPreparedRequest stream_output=False, method=GET, "
                "url=http://127.0.0.1:5000/audit?object-lock, headers={'User-Agent': b'Boto3/1.35.0', "
                f"'X-Amz-Date': b'20260115T120000Z', 'X-Amz-Security-Token': \"{M}\", "
                f"'Authorization': \"{M}\"}}>",
            ),
            ("{'password': b'hunter2', 'a': 1}", f"{{'password': \"{M}\", 'a': 1}}"),
            ("{'password': b\"it's\"}", f"{{'password': \"{M}\"}}"),  # repr's double quotes
            ("{'token': b'a\\'b'}", f"{{'token': \"{M}\"}}"),  # an escaped quote inside
            ('{"api_key": b"abc"}', f'{{"api_key": "{M}"}}'),
        ]
    )


def test_bytes_values_that_hide_nothing_stay() -> None:
    assert_kept(
        [
            "{'User-Agent': b'Boto3/1.35.0', 'X-Amz-Date': b'20260115T120000Z'}",
            "{'token': b''}",  # empty
            'headers={"password": b""}',
            "{'token': bytes_of_it}",  # a name, no literal
            "{'note': b'password'}",
        ]
    )


def test_the_quick_test_on_encoded_records_sees_a_bytes_value() -> None:
    assert Redactor().may_hold_secrets(orjson.dumps({"message": BOTOCORE_REQUEST}))


def test_bytes_literals_after_sensitive_keys_take_linear_time() -> None:
    hostile = "'token': b'" * 20_000  # 220 KB: each value runs to the end, unclosed
    started = time.perf_counter()
    Redactor().scrub_text(hostile)
    assert time.perf_counter() - started < 2.0


# --- 11. ids whose digits happen to pass for a card number -------------------------------------------------
# A request id or a hex key masked by mistake no longer joins the records that carry it.


@pytest.mark.parametrize(
    "text",
    [
        "41111111-1111-1111-a1b2-c3d4e5f6a7b8",  # a UUID whose first groups are digits: 8-4-4 is no card's
        "a399e5292602475284526dc435ad8446",  # a hex id holding a Luhn-valid run with a card prefix
        "sha256:9f4111111111111111ab",
        "x 4111-111111111111 y",  # a 4-12 grouping: no card is written so
    ],
)
def test_ids_whose_digits_look_like_a_card_number_stay(text: str) -> None:
    assert Redactor().scrub_text(text) is None


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("card 4111 1111 1111 1111.", "card 411111******1111."),
        ("4111-1111-1111-1111", "411111******1111"),
        ("pan=4111111111111111&x=1", "pan=411111******1111&x=1"),
        ("amex 3782 822463 10005", "amex 378282*****0005"),
        ("(4111111111111111)", "(411111******1111)"),
    ],
)
def test_card_numbers_written_apart_are_still_masked(text: str, masked: str) -> None:
    assert Redactor().scrub_text(text) == masked


# --- 12. tokens of more vendors, and webhook URLs -----------------------------------------------------------

OPENAI_KEY = "sk-proj-" + "Ab1Cd2Ef3Gh4" * 4
ANTHROPIC_KEY = "sk-ant-api03-" + "xY9_zW8-" * 10
GOOGLE_API_KEY = "AIzaSyD" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF"
GITLAB_TOKEN = "glpat-" + "x1Y2z3A4b5C6d7E8f9G0"
NPM_TOKEN = "npm_" + "a1B2c3D4e5F6g7H8i9J0" + "k1L2m3N4o5P6q7R8"
PYPI_TOKEN = "pypi-AgEIcHlwaS5vcmcCJ" + "Gh4Ij5Kl6Mn7" * 5
HUGGING_FACE_TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh"
SENDGRID_KEY = "SG." + "aB3dE6gH9jK2mN5pQ8sT1v" + "." + "W4yZ7bC0eF3hI6kL9nO2qR5tU8wX1zA4cD7fG0iJ3lM"
SHOPIFY_TOKEN = "shpat_" + "0123456789abcdef" * 2
DIGITALOCEAN_TOKEN = "dop_v1_" + "0123456789abcdef" * 4
STRIPE_WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_tokens_of_more_vendors_are_masked_wherever_they_appear() -> None:
    assert_scrubbed(
        [
            (f"calling the model with {OPENAI_KEY}", f"calling the model with sk-{M}"),
            (f"key={ANTHROPIC_KEY}; retry", f"key=sk-{M}; retry"),
            (f"anthropic {ANTHROPIC_KEY}", f"anthropic sk-{M}"),
            (f"maps {GOOGLE_API_KEY} quota", f"maps AIza{M} quota"),
            (f"clone with {GITLAB_TOKEN}", f"clone with glpat-{M}"),
            (f"//registry.npmjs.org/:_authToken {NPM_TOKEN}", f"//registry.npmjs.org/:_authToken npm_{M}"),
            (f"upload {PYPI_TOKEN}", f"upload pypi-{M}"),
            (f"model pull {HUGGING_FACE_TOKEN}.", f"model pull hf_{M}."),
            (f"mail {SENDGRID_KEY}", f"mail SG.{M}"),
            (f"shop {SHOPIFY_TOKEN}", f"shop shpat_{M}"),
            (f"droplet {DIGITALOCEAN_TOKEN}", f"droplet dop_v1_{M}"),
            (f"verify with {STRIPE_WEBHOOK_SECRET}", f"verify with whsec_{M}"),
            (
                "POST https://hooks.slack.com/services/T0AB12CD3/B0EF45GH6/aBcDeFgHiJkLmNoPqRsTuVwX failed",
                f"POST https://hooks.slack.com/services/{M} failed",
            ),
            (
                "https://discord.com/api/webhooks/123456789012345678/AbC-dEf_GhI123",
                f"https://discord.com/api/webhooks/123456789012345678/{M}",
            ),
        ]
    )


def test_the_shortest_tokens_are_masked_when_they_are_the_whole_text() -> None:
    assert_scrubbed(
        [
            ("gldt-Ab3dEf6hIj9kLm2nOp5q", f"gldt-{M}"),  # 25 characters
            ("glrt-Ab3dEf6hIj9kLm2nOp5q", f"glrt-{M}"),
            (GITLAB_TOKEN, f"glpat-{M}"),
        ]
    )


def test_words_with_those_prefixes_that_are_no_token_stay() -> None:
    assert_kept(
        [
            "sk-learn 1.5 is installed",
            "disk-sk-0123456789abcdefghijklmnopqrstuvwxyz",  # "sk-" inside a word
            "sk-abcdefghijklmnopqrstuvwxyzabcdefghij",  # no digit: a slug, not a key
            "AIza is too short",
            "the global glossary of english",
            "npm_config_registry is set",
            "hf_hub_download(repo_id)",
            "SG.com is a site",
            "shpat_short",
            "see https://hooks.slack.com/ for webhooks",
            "https://discord.com/api/webhooks/ is the endpoint",
        ]
    )


def test_the_quick_test_on_encoded_records_sees_the_vendor_tokens() -> None:
    redactor = Redactor()
    for token in (OPENAI_KEY, GOOGLE_API_KEY, GITLAB_TOKEN, NPM_TOKEN, PYPI_TOKEN, HUGGING_FACE_TOKEN):
        assert redactor.may_hold_secrets(orjson.dumps({"note": f"a {token} b"})), token
    for token in (SENDGRID_KEY, SHOPIFY_TOKEN, DIGITALOCEAN_TOKEN, STRIPE_WEBHOOK_SECRET):
        assert redactor.may_hold_secrets(orjson.dumps({"note": f"a {token} b"})), token
    assert redactor.may_hold_secrets(b'{"url": "https://hooks.slack.com/services/T0/B0/x"}')
    assert not redactor.may_hold_secrets(b'{"note": "the global glossary"}')


@pytest.mark.parametrize("unit", ["sk-", "sk-1", "glpat-", "AIza", "SG.", "hooks.slack.com/services/a."])
def test_runs_of_vendor_prefixes_take_linear_time(unit: str) -> None:
    hostile = unit * (200_000 // len(unit))  # a token starting at each prefix would read the run again
    started = time.perf_counter()
    Redactor().scrub_text(hostile)
    assert time.perf_counter() - started < 2.0


# --- 13. more sensitive key names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "AccountKey",
        "storage_account_key",
        "totp",
        "mfa_code",
        "passcode",
        "jwt",
        "X-JWT",
        "auth_code",
        "authorization_code",
    ],
)
def test_more_names_of_secrets_are_sensitive_keys(key: str) -> None:
    record = {"fields": {key: "abc123", "account": "acct"}}
    assert Redactor().redact(record) == [f"fields.{key}"]
    assert record == {"fields": {key: M, "account": "acct"}}
    assert Redactor().may_hold_secrets(orjson.dumps({key: "abc123"}))


def test_the_account_key_of_an_azure_connection_string_is_masked() -> None:
    assert_scrubbed(
        [
            (
                "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=abc123xyz==;EndpointSuffix=x.net",
                f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={M};EndpointSuffix=x.net",
            ),
        ]
    )
