"""The shortcuts that keep redaction and request capture cheap never change what a record says.

- ``Redactor.scrub_text`` runs a pattern only when a substring, length or digit-count test lets it (the XML
  patterns: when a sensitive tag or attribute name is in the text); here the result is compared, string by
  string, with every pattern run unconditionally in the same order. The same goes for the test that decides
  whether a dict key is scanned.
- Request bodies are summarised on the worker (``Pending``); an ``audit_request`` hook still sees them
  summarised, and disabling ``activity_audit.plugins.deferred_values`` still gives the same written record.
- Generated request ids are canonical, distinct UUID4s.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest

from activity_audit import hookimpl
from activity_audit import redaction as r
from activity_audit.bodies import summarize_body
from activity_audit.deferred import Pending, realise_pending
from activity_audit.redaction import MASK, Redactor
from activity_audit.request_capture import new_uuid4
from activity_audit.testing import registered_plugin
from tests.test_redaction import CASES, HEADER_CASES, JWT, PEM, PRESIGNED
from tests.test_redaction_gaps import (
    ANTHROPIC_KEY,
    DIGITALOCEAN_TOKEN,
    GITLAB_TOKEN,
    GOOGLE_API_KEY,
    HUGGING_FACE_TOKEN,
    NPM_TOKEN,
    OPENAI_KEY,
    PYPI_TOKEN,
    SENDGRID_KEY,
    SHOPIFY_TOKEN,
    STRIPE_WEBHOOK_SECRET,
)

VENDOR_TOKENS = [
    OPENAI_KEY,
    ANTHROPIC_KEY,
    GOOGLE_API_KEY,
    GITLAB_TOKEN,
    "gldt-" + "Ab3dEf6hIj9kLm2nOp5q",  # the shortest token of them all: 25 characters
    NPM_TOKEN,
    PYPI_TOKEN,
    HUGGING_FACE_TOKEN,
    SENDGRID_KEY,
    SHOPIFY_TOKEN,
    DIGITALOCEAN_TOKEN,
    STRIPE_WEBHOOK_SECRET,
    "https://hooks.slack.com/services/T0AB/B0CD/aBcDeF12",
    "https://discord.com/api/webhooks/123/AbC-dEf",
]

LOOK_ALIKES = [
    "2024-01-15T10:00:00.123456+00:00",
    "2024-01-15 10:00:00",
    "550e8400-e29b-41d4-a716-446655440000",
    "/api/v1/authors/12345/books/?page=2",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "application/json; charset=utf-8",
    '{"id": 1, "created": "2024-01-15T10:00:00Z", "tags": ["a", "b"]}',
    "order 1234567890123456 shipped",
    "call +1 (555) 123-4567 or 555-123-4568",
    "12345678-1234-5678-1234-567812345678",  # a UUID of digits only: card-shaped runs, none a card
    "4111_1111_1111_1111 4111  1111  1111  1111",  # separators no card may have
]
SECRETS = [
    "DIGEST username=ada response=6629fae49393a05397450978507c4ef1",
    "BeArEr abc.def-ghi_jkl",
    "authorization: BASIC dXNlcjpwYXNzd29yZA==",
    "4-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1",
    "4222222222222",  # a 13-digit Visa test number: the shortest card
    "visa 4222222222222, amex 3782 822463 10005",
    "карта 4111 1111 1111 1111",  # text that is not ASCII is searched by the regular expression
    "card ٤١١١١١١١١١١١١١١١ in Arabic-Indic digits",
    "a=1&pin=1234",
    "pin=1",
    "{'otp': 123456}",
    "smtp://mail:hunter2@smtp.example.com",
    f"see {JWT[:40]}",
    f"x {PEM[:60]}",
    "<pin>1</pin>",
    "<a><Password>hunter2</Password></a>",
    "<ApiKey><![CDATA[k]]></ApiKey>",
    "<x api_token='t-1'/>",
    "Key (a, api_token)=(1, tok_1) already exists.",
    "(pin)=(1",
    '{"password": ["a", {"b": "]"}], "n": 1}',
    "{'secret': {'a': [1, 2",
    "https://app/cb#access_token=abc&x=1",
    "pass%77ord=hunter2&user%5Bpassword%5D=x",
    "redis://:pa/ss@cache:6379/0",
    "postgres://app:p@ss@db/app",
    "ref.4111111111111111",
    'Digest username="bob", response="6629fae4"',
    "ghp_" + "Ab1" * 12,
    "github_pat_11ABCDEFG0_abcdefghijklmnopqrstuvwxyz0123",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "xoxb-1234567890-AbCdEfGhIjKl",
    "postgres://app:pa'ss@db/app",
    "https://0123456789abcdef0123@github.com/x",
    '{"raw": "{\\"password\\": \\"x\\"}"}',
    "https%3A%2F%2Fa%2Fcb%3Ftoken%3Dx",
    "pin%3D1",
    "Authorization: Token x\r\nX-Api-Key: y",
    "retrying with Bearer abcdefgh",
    "Basic dXNlcjpwYXNz was sent",
    "key=AKIAIOSFODNN7EXAMPLE",
    "password: hunter2, secret = x",
    '{"pass\\u0077ord": "x"}',
    '{"url": "https:\\/\\/user:pass@host\\/x"}',
    "https://u:" + "p4ss" * 70 + "@host/x",
    "https:\\/\\/u:pa\\/ss@host",
    "4111.1111.1111.1111",
    "jwt eyJhbGciOi.eyJzdWIi.sig",
]


def corpus() -> list[str]:
    texts = [value for _, value, _ in CASES if isinstance(value, str)]
    texts += [value for _, value, _ in HEADER_CASES] + LOOK_ALIKES + SECRETS + [PRESIGNED, JWT, PEM]
    rng = random.Random(20240115)
    markers = [" ", "=", ":", "'", '"', "@", "://", "-", "4111", "1111 ", "eyJ", "earer", "PRIVATE KEY"]
    markers += [
        "<",
        ">",
        "</",
        ")=(",
        "(",
        ")",
        "#",
        "%",
        "[",
        "]",
        "{",
        "}",
        ".",
        "password",
        "<pin>",
        "token",
        "Digest nc=",
        "ghp_",
        "%3D",
        "%2F",
        '\\"',
        "Cookie: ",
        "X-Api-Key:",
        "\n",
        ":\\/\\/",
        "\\u0077",
        "sk-",
        "AIza",
        "glpat-",
        "gldt-",
        "npm_",
        "hf_",
        "SG.",
        "shpat_",
        "dop_v1_",
        "whsec_",
        "hooks.slack.com/services/",
        "discord.com/api/webhooks/1/",
    ]
    texts += VENDOR_TOKENS
    pieces = texts + markers
    for _ in range(3000):  # random splices of the above: secrets cut, joined and surrounded by look-alikes
        texts.append("".join(rng.choice(pieces)[: rng.randint(1, 40)] for _ in range(rng.randint(1, 6))))
    return texts


def scrub_without_gates(redactor: Redactor, text: str) -> str | None:
    """Every pattern of ``scrub_text``, in its order, on every string: the reference for the gated scan."""
    clean = r._scrub_percent_encoded(
        every_pattern(redactor, text), lambda text: every_pattern(redactor, text)
    )
    return None if clean == text else clean


def every_pattern(redactor: Redactor, text: str) -> str:
    text = r._PEM_PRIVATE_KEY.sub(MASK, text)
    text = r._JWT.sub(MASK, text)
    text = r._VENDOR_TOKEN.sub(r._mask_vendor_token, text)
    for _, pattern in r._LONG_VENDOR_TOKENS:
        text = pattern.sub(r._mask_vendor_token, text)
    text = r._AWS_ACCESS_KEY_ID.sub(r._mask_vendor_token, text)
    text = r._PASSWORD_HASH.sub(r._mask_vendor_token, text)
    text = r._DIGEST_PARAMS.sub(rf"\1\2{MASK}", text)
    text = r._AUTH_SCHEME.sub(rf"\1\2{MASK}", text)
    text = r._SHORT_CREDENTIAL.sub(r._mask_short_credential, text)
    text = r._URL_PASSWORD.sub(r._mask_url_password, text)
    text = r._mask_other_url_passwords(text)
    text = r._URL_TOKEN_USER.sub(r._mask_token_user, text)
    text = redactor._mask_header_lines(text)
    text = r._mask_key_value_pairs(text, redactor.is_sensitive_key, redactor._is_prose_secret_name)
    text = r._DB_KEY_VALUE.sub(redactor._mask_db_pair, text)
    text = r._XML_ATTRIBUTE.sub(redactor._mask_attribute, text)
    text = r._mask_quoted_pairs(text, redactor.is_sensitive_key)
    text = r._XML_ELEMENT.sub(redactor._mask_element, text)
    text = r._CARD_CANDIDATE.sub(r._mask_card_match, text)
    if redactor._custom is not None:
        text = redactor._custom.mask(text)
    return text


@pytest.mark.parametrize("custom", [(), (r"EMP-\d",)])
def test_the_gated_scan_finds_exactly_what_every_pattern_finds(custom: tuple[str, ...]) -> None:
    redactor = Redactor(extra_patterns=custom)
    texts = [*corpus(), "EMP-1", "xEMP-2"]
    differences = [
        (text, redactor.scrub_text(text), scrub_without_gates(redactor, text))
        for text in texts
        if redactor.scrub_text(text) != scrub_without_gates(redactor, text)
    ]
    assert differences == []
    assert sum(scrub_without_gates(redactor, text) is not None for text in texts) > 500  # the corpus bites


@pytest.mark.parametrize("custom", [(), (r"EMP-\d",)])
def test_the_key_gate_lets_through_every_key_the_patterns_would_change(custom: tuple[str, ...]) -> None:
    redactor = Redactor(extra_patterns=custom)
    texts = [*corpus(), "EMP-1"]
    assert [
        text for text in texts if not redactor._may_hide_secret(text) and scrub_without_gates(redactor, text)
    ] == []
    if not custom:
        assert not redactor._may_hide_secret("title") and not redactor._may_hide_secret("created_at")


def test_the_xml_name_gate_finds_every_sensitive_name_however_spelt() -> None:
    redactor = Redactor(["national_id"])
    keys = [*r.SENSITIVE_KEYS, *(f"my_{suffix}" for suffix in r.SENSITIVE_SUFFIXES), "National-ID"]
    keys += [key for key, _, _ in [*CASES, *HEADER_CASES] if redactor.is_sensitive_key(key)]
    names = {spelling for key in keys for spelling in (key, key.upper(), key.title(), f"ns:{key}")}
    missed = [
        name
        for name in sorted(names)
        if redactor.scrub_text(f'<a {name}="v"/>') != f'<a {name}="{MASK}"/>'
        or (
            name.rpartition(":")[2].lower() != "code"  # the HTML element <code> holds program text
            and redactor.scrub_text(f"<{name}>v</{name}>") != f"<{name}>{MASK}</{name}>"
        )
    ]
    assert missed == []
    assert redactor.scrub_text("<p>run <code>make test</code></p>") is None


def test_the_card_gate_passes_every_text_the_card_pattern_matches_and_stops_uuids() -> None:
    rng = random.Random(7)
    texts = corpus() + [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(2000)]
    texts += ["".join(rng.choice("0123456789 -x.") for _ in range(rng.randint(10, 40))) for _ in range(3000)]
    candidates = [text for text in texts if r._CARD_CANDIDATE.search(text)]
    assert len(candidates) > 300
    assert [text for text in candidates if not r._may_hold_card_number(text)] == []
    # A UUID has digits enough for a card, but hex letters between them: the regular expression is spared.
    assert not r._may_hold_card_number("3f1c2a9e-8d4b-4a51-9c7e-2b6f0e1d7a42")
    assert r._may_hold_card_number("4111-1111 1111-1")


def test_secrets_the_earlier_quick_tests_missed_are_masked() -> None:
    record = {"notes": SECRETS[:4]}
    Redactor().redact(record)
    assert record == {
        "notes": [
            f"DIGEST {MASK}",  # every parameter, "response" (the credential) included
            f"BeArEr {MASK}",
            f"authorization: BASIC {MASK}",
            "411111******1111",
        ]
    }


def test_short_strings_are_scanned_for_project_patterns_and_pairs() -> None:
    record = {"a": "EMP-1", "b": "pin=1", "c": "EMP", "d": "x=1"}
    assert Redactor(extra_patterns=[r"EMP-\d"]).redact(record) == ["a", "b"]
    assert record == {"a": MASK, "b": f"pin={MASK}", "c": "EMP", "d": "x=1"}


def test_every_value_under_a_sensitive_key_is_masked_floats_included() -> None:
    record = {"pin": 1234.0, "cvv": 123, "password": None, "token": True, "otp": ""}
    assert Redactor().redact(record) == ["pin", "cvv"]
    assert record == {"pin": MASK, "cvv": MASK, "password": None, "token": True, "otp": ""}


def test_paths_of_masked_values_at_every_depth() -> None:
    record: dict[Any, Any] = {"a": [{"b": {"token": "x"}}, ["4111111111111111"]], 7: {"": {"pwd": "y"}}}
    assert Redactor().redact(record) == ["a[0].b.token", "a[1][0]", "7..pwd"]


# --- request bodies summarised on the worker -------------------------------------------------------------


def test_pending_values_reveal_nothing_until_built() -> None:
    pending = Pending(summarize_body, "application/json", b'{"password": "hunter2"}', 1024)
    assert str(pending) == repr(pending) == "[pending summarize_body]"
    record = {"request_repr": {"body": pending, "path": "/x/"}, "response_repr": None}
    realise_pending(record)
    assert record == {"request_repr": {"body": {"password": "hunter2"}, "path": "/x/"}, "response_repr": None}


@pytest.mark.django_db
def test_an_audit_request_hook_sees_bodies_summarised(http, audit_records) -> None:
    seen: list[tuple[Any, Any]] = []

    class Observer:
        @hookimpl
        def audit_request(self, record: dict[str, Any]) -> None:
            bodies = (record["request_repr"]["body"], record["response_repr"]["body"])
            seen.append(copy.deepcopy(bodies))  # the worker masks the record's own dicts later

    with registered_plugin(Observer(), name="tests.body-observer"):
        http.post("/echo/", data=json.dumps({"password": "hunter2", "n": 1}), content_type="application/json")
    assert seen == [({"password": "hunter2", "n": 1}, {"received": {"password": "hunter2", "n": 1}})]
    (record,) = audit_records.of("audit.request")
    assert record["request_repr"]["body"] == {"password": MASK, "n": 1}
    assert record["response_repr"]["body"] == {"received": {"password": MASK, "n": 1}}


@pytest.mark.django_db
@pytest.mark.parametrize("disabled", [[], ["activity_audit.plugins.deferred_values"]])
def test_the_written_record_is_the_same_with_the_shaping_plugin_disabled(
    http, audit_records, settings, disabled
):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "DISABLED_PLUGINS": disabled}
    kinds: list[str] = []

    class FirstRedactor:  # registered last with tryfirst: runs before the built-in shaping
        @hookimpl(tryfirst=True)
        def redact(self, record: dict[str, Any]) -> None:
            if record.get("name") == "audit.request":
                kinds.append(type(record["request_repr"]["body"]).__name__)

    form = urlencode({"username": "ada", "password": "hunter2", "maiden_name": "Byron"})
    with registered_plugin(FirstRedactor(), name="tests.first-redactor"):
        http.post("/login/", data=form, content_type="application/x-www-form-urlencoded")
    assert kinds == ["Pending"]
    (record,) = audit_records.of("audit.request")
    assert record["request_repr"]["body"] == {"username": "ada", "password": MASK, "maiden_name": MASK}
    assert record["response_repr"]["body"] == {"user": "ada"}
    assert record["redacted"] == ["request_repr.body.password", "request_repr.body.maiden_name"]


def test_generated_request_ids_are_distinct_canonical_uuid4s() -> None:
    ids = [new_uuid4() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:2_000]:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)
    # every hex digit shows up in the random positions, so no bits are stuck
    random_digits = {digit for text in ids[:200] for digit in re.sub("-", "", text)[13:16]}
    assert random_digits == set("0123456789abcdef")


def test_a_forked_child_never_repeats_the_request_ids_of_its_parent() -> None:
    new_uuid4()  # the parent holds a block of random bytes it has not used up
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(reader)
        os.write(writer, "\n".join(new_uuid4() for _ in range(10)).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        from_child = set(pipe.read().decode().split("\n"))
    os.waitpid(child, 0)
    from_parent = {new_uuid4() for _ in range(10)}
    assert len(from_child) == len(from_parent) == 10
    assert from_child.isdisjoint(from_parent)
