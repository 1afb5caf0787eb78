"""``REDACT_PATTERNS``: each pattern masks exactly what it matches alone, whatever the other patterns are.

The patterns used to be joined into one regular expression, which mixed their inline flags, group names and
group numbers: valid settings stopped start-up with a bare ``re.error``, or a pattern silently stopped
masking. Exact records, as the sinks received them.
"""

from __future__ import annotations

import logging

import pytest

from activity_audit.emit import emit_crud
from activity_audit.logconfig import ConsoleFormatter
from activity_audit.records import new_record
from activity_audit.redaction import Redactor

M = "[REDACTED]"


def crud_changes(settings, audit_records, patterns: list[str], changes: dict[str, str]) -> dict[str, str]:
    """The ``changes`` of a CRUD record emitted with ``REDACT_PATTERNS = patterns``, as written."""
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "REDACT_PATTERNS": patterns}
    emit_crud(new_record("AUDIT", "audit.crud", "x", changes=changes))
    (record,) = audit_records.of("audit.crud")
    return record["changes"]


def test_a_leading_inline_flag_is_the_patterns_own(settings, audit_records):
    changes = {"a": "SECRET-AB12 and Secret-x9", "b": "emp-123456 EMP-123456"}
    patterns = ["(?i)secret-[a-z0-9]+", r"\bEMP-\d{6}\b"]  # the second one is case-sensitive
    assert crud_changes(settings, audit_records, patterns, changes) == {
        "a": f"{M} and {M}",
        "b": f"emp-123456 {M}",
    }


def test_two_patterns_may_use_the_same_group_name(settings, audit_records):
    changes = {"a": "EMP-123456 / CUS-654321", "b": "CUS-1"}
    patterns = [r"(?P<id>EMP-\d{6})", r"(?P<id>CUS-\d{6})"]
    assert crud_changes(settings, audit_records, patterns, changes) == {"a": f"{M} / {M}", "b": "CUS-1"}


def test_a_numbered_back_reference_keeps_pointing_at_its_own_group(settings, audit_records):
    changes = {
        "note": "key is 'tok_live_9f8e7d6c5b4a' ok",
        "double": 'key is "tok_live_9f8e7d6c5b4a" ok',
        "mismatched": "key is 'tok_live_9f8e7d6c5b4a\" ok",
        "badge": "EMP-123456",
    }
    patterns = [r"(EMP)-\d{6}", r"(['\"])tok_\w+\1"]
    assert crud_changes(settings, audit_records, patterns, changes) == {
        "note": f"key is {M} ok",
        "double": f"key is {M} ok",
        "mismatched": "key is 'tok_live_9f8e7d6c5b4a\" ok",
        "badge": M,
    }


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("id EMP-123456-X end", f"id {M} end"),  # the two matches overlap: one mask
        ("EMP-123456 and 654321-X", f"{M} and {M}"),
        ("EMP-123456654321-X", f"{M}{M}"),  # next to each other, not overlapping: two
        ("nothing here", None),
    ],
)
def test_matches_of_several_patterns_are_masked_once_each(text, masked):
    assert Redactor((), [r"EMP-\d{6}", r"\d{6}-X"]).scrub_text(text) == masked


def test_each_pattern_alone_masks_what_it_masks_among_others():
    patterns = [
        r"(EMP)-\d{6}",
        r"(['\"])tok_\w+\1",
        "(?i)secret-[a-z0-9]+",
        r"(?P<id>CUS-\d{6})",
        r"(?P<id>X\d)",
    ]
    texts = ["EMP-123456", "'tok_a1'", "SeCrEt-x1", "CUS-123456", "X1", "a 'tok_b2' b", "x EMP-000001 y"]
    for pattern in patterns:
        alone = Redactor((), [pattern])
        for text in texts:
            if alone.scrub_text(text) is not None:
                assert Redactor((), patterns).scrub_text(text) == alone.scrub_text(text), (pattern, text)


def test_the_cheap_test_finds_what_any_pattern_finds():
    redactor = Redactor((), [r"(EMP)-\d{6}", r"(['\"])tok_\w+\1"])
    assert redactor.may_hold_secrets(b'{"note": "a \'tok_x1\' b"}')
    assert not redactor.may_hold_secrets(b'{"note": "a \'tok_x1\\" b"}')


def test_the_console_formatter_applies_every_pattern(settings):
    settings.ACTIVITY_AUDIT = {
        **settings.ACTIVITY_AUDIT,
        "REDACT_PATTERNS": ["(?i)secret-[a-z0-9]+", r"(?P<id>EMP-\d{6})", r"(?P<id>CUS-\d{6})"],
    }
    record = logging.LogRecord(
        "shop", logging.INFO, __file__, 1, "%s %s %s", ("SECRET-ab1", "EMP-1", "CUS-123456"), None
    )
    assert ConsoleFormatter("%(message)s").format(record) == f"{M} EMP-1 {M}"


def test_the_console_formatter_follows_a_change_of_the_patterns(settings):
    formatter = ConsoleFormatter("%(message)s")
    record = logging.LogRecord("shop", logging.INFO, __file__, 1, "%s", ("EMP-123456",), None)
    assert formatter.format(record) == "EMP-123456"
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "REDACT_PATTERNS": [r"EMP-\d{6}"]}
    assert formatter.format(record) == M
