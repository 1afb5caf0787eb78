"""Any value a Django project can hand over becomes exactly one line of strict JSON, and is never dropped.

Each case of :data:`CASES` is checked three ways: through :func:`snapshot` (what capture code does on the
caller thread) then :func:`dumps_line`; through :func:`dumps_line` on the raw value; and through the real
pipeline into the real file sink, reading ``audit.log`` back.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import logging
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import orjson
import pytest
from django.http import QueryDict
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import activity_audit
from activity_audit.bodies import summarize_body
from activity_audit.encoding import (
    WORD_LOOKBACK,
    Limits,
    Snapshotter,
    clean_cut,
    dumps_line,
    one_line,
    snapshot,
)
from activity_audit.logconfig import JSONFormatter, PipelineHandler
from activity_audit.records import CHANNEL_AUDIT, new_record
from tests.testapp.models import Author

TEXT_BREAKERS = "a\r\nb\u2028c\u2029d\x85e\x00f\x1b[31mg\x0bh\x0ci\x1cj\x1dk\x1el\tm"


def strict_loads(line: bytes) -> Any:
    """Parse one line as strict JSON: a bare NaN/Infinity is an error, and it must be exactly one line."""

    def refuse(name: str) -> None:
        raise ValueError(f"bare {name} in JSON")

    text = line.decode("utf-8")  # strict: invalid UTF-8 raises
    assert len(text.splitlines()) == 1, text
    assert b"\n" not in line and b"\r" not in line
    for raw in ("\x00", "\x1b", "\x85", "\u2028", "\u2029"):
        assert raw not in text, f"raw {raw!r} in the line"
    return json.loads(text, parse_constant=refuse)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")

    __repr__ = __str__


class Colour(enum.Enum):
    RED = "red"


class BrokenMapping(dict):  # type: ignore[type-arg]
    def items(self):  # type: ignore[no-untyped-def,override]
        raise OSError("cannot read")

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise OSError("cannot read")


def written_line(log_dir: Path, record: dict[str, Any]) -> Any:
    """Submit ``record`` through the pipeline and return its one line in ``audit.log``, parsed strictly."""
    assert activity_audit.dispatch.pipeline.submit(CHANNEL_AUDIT, record)
    assert activity_audit.flush(10)
    lines = [
        line
        for line in (log_dir / "audit.log").read_bytes().split(b"\n")
        if record["event_id"].encode() in line
    ]
    assert len(lines) == 1
    return strict_loads(lines[0])


def _cycle_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _cycle_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    value["self"] = value
    return value


def _nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth - 1):
        child: list[Any] = []
        inner.append(child)
        inner = child
    return outer


def _expected_nested(levels: int, innermost: Any) -> Any:
    value = innermost
    for _ in range(levels):
        value = [value]
    return value


SHARED = [1]
INVALID_UTF8_NAME = b"caf\xe9".decode("utf-8", "surrogateescape")  # what os.listdir gives for a latin-1 name


# orjson 3.x crashes the interpreter on a datetime whose tzinfo raises: such a value is safe only once copied
# by snapshot(), which every capture point applies on the caller thread.
NOT_RAW = object()


class Case(NamedTuple):
    value: Any
    snapshot: Any  # the JSON value after snapshot() + dumps_line
    raw: Any  # the JSON value after dumps_line on the raw value (what a record submitted uncopied shows)
    truncated: bool = False  # whether snapshot() marks the copy as truncated
    raw_truncated: bool = False  # whether dumps_line on the raw value adds "truncated": true to the record


class FixedOffset(dt.tzinfo):
    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)

    def dst(self, when: dt.datetime | None) -> None:
        return None


class BrokenZone(dt.tzinfo):
    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        raise ValueError("no offset")


class LocalDatetime(dt.datetime):
    pass


def same(value: Any, expected: Any, truncated: bool = False) -> Case:
    return Case(value, expected, expected, truncated)


CASES: dict[str, Case] = {
    "none": same(None, None),
    "bool": same(True, True),
    "int": same(42, 42),
    "int64_max": same(2**63 - 1, 2**63 - 1),
    "huge_int": same(2**100, "1267650600228229401496703205376"),
    "huge_negative_int": same(-(2**70), "-1180591620717411303424"),
    "float": same(1.5, 1.5),
    "nan": Case(float("nan"), "NaN", None),
    "infinity": Case(float("inf"), "Infinity", None),
    "minus_infinity": Case(float("-inf"), "-Infinity", None),
    "decimal": same(decimal.Decimal("1.10"), "1.10"),
    "decimal_nan": same(decimal.Decimal("NaN"), "NaN"),
    "decimal_infinity": same(decimal.Decimal("-Infinity"), "-Infinity"),
    "naive_datetime": same(dt.datetime(2024, 1, 2, 3, 4, 5, 6), "2024-01-02T03:04:05.000006"),
    "aware_datetime": same(
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "2024-01-02T03:04:05+02:00",
    ),
    "utc_datetime": same(dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc), "2024-01-02T00:00:00+00:00"),
    "zoneinfo_datetime": same(
        dt.datetime(2024, 7, 1, tzinfo=ZoneInfo("Europe/Paris")), "2024-07-01T00:00:00+02:00"
    ),
    "custom_tzinfo_datetime": same(
        dt.datetime(2024, 1, 2, tzinfo=FixedOffset()), "2024-01-02T00:00:00+01:00"
    ),
    "datetime_subclass": same(LocalDatetime(2024, 1, 2, 3), "2024-01-02T03:00:00"),
    "datetime_whose_tzinfo_raises": Case(
        dt.datetime(2024, 1, 2, tzinfo=BrokenZone()), "<unreadable datetime.datetime: ValueError>", NOT_RAW
    ),
    "date": same(dt.date(2024, 1, 2), "2024-01-02"),
    "time": same(dt.time(3, 4, 5, 123), "03:04:05.000123"),
    "aware_time": same(dt.time(3, 4, tzinfo=dt.timezone.utc), "03:04:00+00:00"),
    "timedelta": same(dt.timedelta(days=1, seconds=3), "1 day, 0:00:03"),
    "uuid": same(uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    "bytes": same(b"ab\n", "ab\n"),
    "invalid_utf8_bytes": same(b"ab\xff\xfe", "ab\\xff\\xfe"),
    "bytearray": same(bytearray(b"xy"), "xy"),
    "memoryview": same(memoryview(b"xy"), "xy"),
    "set": same({3, 1, 2}, [1, 2, 3]),
    "mixed_set": same({"a", 1}, [1, "a"]),
    "frozenset": same(frozenset({"b", "a"}), ["a", "b"]),
    "tuple": same((1, "a"), [1, "a"]),
    "lazy_translation": same(gettext_lazy("Hello"), "Hello"),
    "safe_string": same(mark_safe("<b>x</b>"), "<b>x</b>"),
    "enum": same(Colour.RED, "red"),
    "path": same(PurePosixPath("/srv/x"), "/srv/x"),
    "saved_model_instance": same(Author(pk=7, name="Ann"), {"model": "testapp.Author", "pk": 7}),
    "unsaved_model_instance": same(Author(name="Ann"), {"model": "testapp.Author", "pk": None}),
    "queryset_not_evaluated": same(Author.objects.filter(name="x"), {"queryset": "testapp.Author"}),
    "query_dict_keeps_every_value": same(QueryDict("a=1&a=2&b=3"), {"a": ["1", "2"], "b": ["3"]}),
    "exception": same(ValueError("boom"), "ValueError: boom"),
    "unprintable_object": same(Unprintable(), "<unprintable tests.test_encoding.Unprintable>"),
    # orjson reads a dict subclass's storage directly; a copy has to go through its (broken) methods.
    "unreadable_mapping": Case(
        BrokenMapping(a=1), "<unreadable tests.test_encoding.BrokenMapping: OSError>", {"a": 1}
    ),
    "lone_surrogate": same("a\ud800b", "a\ufffdb"),
    "invalid_utf8_file_name": same(INVALID_UTF8_NAME, "caf\ufffd"),
    "line_breaks_and_escapes": same(TEXT_BREAKERS, TEXT_BREAKERS),
    "line_breaks_in_keys": same({TEXT_BREAKERS: 1, "k\ud800": 2}, {TEXT_BREAKERS: 1, "k\ufffd": 2}),
    "non_string_keys": same({1: "a", None: "b", (1, 2): "c"}, {"1": "a", "None": "b", "(1, 2)": "c"}),
    "list_cycle": same(_cycle_list(), [1, "[circular reference]"]),
    "dict_cycle": same(_cycle_dict(), {"a": 1, "self": "[circular reference]"}),
    "shared_not_a_cycle": same([SHARED, SHARED], [[1], [1]]),
    # words of one letter: the cut at MAX_FIELD_CHARS (8192) falls at a word end and stays there
    "long_string": Case("x " * 5000, "x " * 4096 + "…[truncated: 10000 chars]", "x " * 5000, truncated=True),
    "long_bytes": same(b"y " * 4500, "y " * 4096 + "…[truncated: 9000 bytes]", truncated=True)._replace(
        raw_truncated=True
    ),
    "many_items": Case(
        list(range(1500)), [*range(1000), "…[truncated: 1500 items]"], list(range(1500)), truncated=True
    ),
    "many_keys": Case(
        {f"k{i}": i for i in range(1200)},
        {**{f"k{i}": i for i in range(1000)}, "…truncated": "200 more keys"},
        {f"k{i}": i for i in range(1200)},
        truncated=True,
    ),
    "deep_nesting": Case(
        _nested(100),
        _expected_nested(19, ["[truncated: nested deeper than 20]"]),
        _expected_nested(99, []),
        truncated=True,
    ),
}


# Capture points always snapshot, so a raw cycle or a nesting deeper than MAX_DEPTH never reaches the worker;
# when one does, the redactors walk it first and decide how it reads (they mask what they cannot walk), see
# test_a_raw_cycle_through_the_pipeline_is_written_not_lost. Their raw encoding is checked without redactors.
RESHAPED_BY_REDACTORS = {"list_cycle", "dict_cycle", "deep_nesting"}


@pytest.mark.parametrize("name", CASES)
def test_snapshot_then_encode_gives_one_exact_line(name: str) -> None:
    case = CASES[name]
    copier = Snapshotter()
    plain = copier.copy(case.value)
    assert strict_loads(dumps_line({"value": plain})) == {"value": case.snapshot}
    assert copier.truncated is case.truncated


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case.raw is not NOT_RAW])
def test_raw_value_encodes_to_one_exact_line(name: str) -> None:
    case = CASES[name]
    expected = {"value": case.raw, "truncated": True} if case.raw_truncated else {"value": case.raw}
    assert strict_loads(dumps_line({"value": case.value})) == expected


def test_every_case_reaches_the_file_through_the_pipeline(log_dir: Path) -> None:
    """Raw and snapshotted, every case is written: one whole line each, with the exact value."""
    queued = []
    for name, case in CASES.items():
        forms = [("snapshot", snapshot(case.value), case.snapshot)]
        if case.raw is not NOT_RAW and name not in RESHAPED_BY_REDACTORS:
            forms.append(("raw", case.value, case.raw))
        for form, value, expected in forms:
            record = new_record("AUDIT", "tests.encoding", f"{name} ({form})", value=value)
            assert activity_audit.dispatch.pipeline.submit(CHANNEL_AUDIT, record)
            queued.append((record, expected))
    assert activity_audit.flush(10)
    submitted = {record["event_id"]: expected for record, expected in queued}  # stamped on the worker

    written = {}
    for line in (log_dir / "audit.log").read_bytes().split(b"\n")[:-1]:
        parsed = strict_loads(line)
        if parsed.get("event_id") in submitted:  # other tests write here too, in their own formats
            written[parsed["event_id"]] = parsed["value"]
    assert written == submitted


def test_a_raw_cycle_through_the_pipeline_is_written_not_lost(audit_records: Any) -> None:
    """How the value reads depends on the redactors (they walk the record); that it arrives does not."""
    record = new_record("AUDIT", "tests.encoding", "raw cycle", value=_cycle_list())
    assert activity_audit.dispatch.pipeline.submit(CHANNEL_AUDIT, record)
    [written] = [r for r in audit_records.records if r["event_id"] == record["event_id"]]
    assert (written["seq"], written["name"]) == (record["seq"], "tests.encoding")


def test_a_record_over_max_bytes_is_cut_with_a_marker_not_dropped(log_dir: Path) -> None:
    record = new_record("AUDIT", "tests.encoding", "huge", value="y " * 1_500_000)
    assert written_line(log_dir, record) == {
        "timestamp": record["timestamp"].isoformat(),
        "level": "AUDIT",
        "name": "tests.encoding",
        "message": "huge",
        "value": "y " * 1024 + "…[truncated: 3000000 chars]",
        "event_id": record["event_id"],
        "stream_id": record["stream_id"],
        "seq": record["seq"],
        "truncated": True,
        "original_bytes": len(dumps_line(record, max_bytes=1 << 30)),
    }


def test_a_record_too_big_even_when_cut_keeps_its_envelope() -> None:
    record = {
        "level": "AUDIT",
        "name": "n",
        "message": "m",
        "seq": 9,
        **{f"f{i}": "z" * 500 for i in range(500)},
    }
    line = dumps_line(record, max_bytes=200)
    assert strict_loads(line) == {
        "level": "AUDIT",
        "name": "n",
        "message": "m",
        "seq": 9,
        "truncated": True,
        "original_bytes": len(dumps_line(record, max_bytes=1 << 30)),
    }


def test_caps_deeper_than_the_encoder_goes_still_give_the_envelope() -> None:
    """Limits above MAX_ENCODABLE_DEPTH (which the settings refuse) copy more than orjson encodes: the line
    still proves the record existed."""
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(300):
        inner["k"] = inner = {}
    record = {"level": "AUDIT", "name": "n", "event_id": "e", "stream_id": "s", "seq": 3, "value": deep}
    line = dumps_line(record, limits=Limits(max_depth=300))
    assert strict_loads(line) == {
        "level": "AUDIT",
        "name": "n",
        "event_id": "e",
        "stream_id": "s",
        "seq": 3,
        "truncated": True,
        "encoding_error": "TypeError: Recursion limit reached",
    }


def test_nesting_deeper_than_the_encoder_allows_is_cut_and_marked() -> None:
    parsed = strict_loads(dumps_line({"value": _nested(1000)}))
    assert parsed == {"value": _expected_nested(19, "[truncated: nested deeper than 20]"), "truncated": True}


def test_tighter_limits_cut_earlier() -> None:
    copier = Snapshotter(Limits(max_chars=3, max_items=2, max_depth=2))
    assert copier.copy({"s": "abc def", "l": [1, 2, 3], "d": {"x": {"y": 1}}}) == {
        "s": "abc…[truncated: 7 chars]",
        "l": [1, 2, "…[truncated: 3 items]"],
        "…truncated": "1 more keys",
    }
    assert copier.truncated is True


def test_snapshot_is_a_copy_later_mutation_does_not_change_the_record(log_dir: Path) -> None:
    """RELIABILITY E15: the caller mutates what it passed right after the call."""
    payload: dict[str, Any] = {"items": [1, 2], "nested": {"state": "before"}, "tags": {"a"}}
    record = new_record("AUDIT", "tests.encoding", "mutation", value=snapshot(payload))
    payload["items"].append(3)
    payload["nested"]["state"] = "after"
    payload["tags"].add("b")
    payload["new"] = True
    assert written_line(log_dir, record)["value"] == {
        "items": [1, 2],
        "nested": {"state": "before"},
        "tags": ["a"],
    }


def test_one_line_accepts_escapes_unicode_breakers_and_refuses_ascii_breaks() -> None:
    assert one_line('{"a":"x\u2028y\u2029z\x85"}'.encode()) == b'{"a":"x\\u2028y\\u2029z\\u0085"}'
    for raw in (b"\n", b"\r", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e"):
        assert one_line(b'{"a":"' + raw + b'"}') is None


# --- a cut never splits a word ------------------------------------------------------------------------------
# Values are cut before the redactor sees them, and it knows a secret only whole: a cut moves back to just
# after the last whitespace, quote, bracket or , ; : = & | < > before it, WORD_LOOKBACK (512) characters at
# most; with none in that window it falls at cut - 512.

WORD_ENDS = list(" \t\n\r\f\v\"'`{}[](),;:=&|<>")  # written out, not imported from the code
NOT_WORD_ENDS = ["-", "_", ".", "/", "@", "+", "%", "#", "!", "?", "*", "~", "\\", "$"]
LONG_WORD = "k" * 1000


@pytest.mark.parametrize(
    ("text", "limit", "cut"),
    [
        ("connect postgres://app:SuperSecret@db", 28, 23),  # "connect postgres://app:"
        ("connect postgres://app:SuperSecret@db", 24, 23),  # one character of the password: still dropped
        ("connect postgres://app:SuperSecret@db", 35, 23),  # "@" ends no word: "...Secret@d" goes whole
        ("Authorization: Bearer abcdef", 25, 22),  # "Authorization: Bearer "
        ('{"password": "hunter2"}', 17, 14),  # '{"password": "'
        ("password=hunter2&next=/", 12, 9),  # "password="
        # at a word end the cut stays where it is
        ("connect postgres://app:SuperSecret@db", 23, 23),  # just after ":"
        ("connect postgres://app:SuperSecret@db", 7, 7),  # just before " "
        ("Authorization: Bearer abcdef", 21, 21),  # "Authorization: Bearer", before " "
        ('{"password": "hunter2"}', 21, 21),  # just before the closing quote
        # the word ends nearest the cut wins
        ("a b c d-e-f-g", 11, 6),  # back to "a b c "
        ("url(https://x.example/a.png)", 20, 10),  # "url(https:"
        # a word longer than WORD_LOOKBACK: the cut moves back 512 characters, no further
        ("id " + LONG_WORD, 900, 388),
        ("id " + LONG_WORD, 514, 3),  # the space 512 characters back is still found: "id "
        ("id " + LONG_WORD, 516, 4),  # 514 back it is not: cut - 512, "id k"
        (LONG_WORD, 300, 0),  # cut - 512 is below the start
        ("k" * 300 + " " + "k" * 700, 800, 301),  # a word end 500 characters back is found
        # with a digit run: first back to the start of the run, then to the start of its word
        ("pan=4111111111111111", 12, 4),
        ("ref x4111111111111111 y", 12, 4),
        ("ref 4111 1111 1111 1111", 12, 4),
        # short enough already; a limit of 0
        ("Bearer abcdef", 13, 13),
        ("Bearer abcdef", 0, 0),
    ],
)
def test_a_cut_moves_back_to_the_end_of_the_word_it_would_split(text: str, limit: int, cut: int) -> None:
    assert WORD_LOOKBACK == 512
    assert clean_cut(text, limit) == cut
    assert clean_cut(text.encode(), limit) == cut


@pytest.mark.parametrize("end", WORD_ENDS)
def test_each_word_end_ends_a_word(end: str) -> None:
    text = f"ab{end}cdefgh"
    assert clean_cut(text, 5) == 3
    assert clean_cut(text.encode(), 5) == 3
    assert clean_cut(text, 3) == 3  # just after it
    assert clean_cut(text, 2) == 2  # just before it


@pytest.mark.parametrize("inside", NOT_WORD_ENDS)
def test_other_punctuation_is_part_of_the_word(inside: str) -> None:
    text = f"ab{inside}cdefgh"
    assert clean_cut(text, 5) == 0
    assert clean_cut(text.encode(), 5) == 0


@pytest.mark.parametrize(
    ("data", "limit", "cut"),
    [
        ("clé: sécrét".encode(), 9, 6),  # "clé: " is 6 bytes; "sé" (3 bytes) is dropped
        ("clé: sécrét".encode(), 6, 6),
        ("é".encode() * 600, 1000, 488),  # non-ASCII bytes are never a word end
        (b"Authorization: Bearer abcdef", 25, 22),
        (b'{"password": "hunter2"}', 17, 14),
    ],
)
def test_bytes_are_cut_at_a_word_end_too(data: bytes, limit: int, cut: int) -> None:
    assert clean_cut(data, limit) == cut


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        ("connect postgres://app:SuperSecret@db", 28, "connect postgres://app:…[truncated: 37 chars]"),
        ("Authorization: Bearer abcdef", 25, "Authorization: Bearer …[truncated: 28 chars]"),
        ('{"password": "hunter2"}', 17, '{"password": "…[truncated: 23 chars]'),
        (b"connect postgres://app:SuperSecret@db", 28, "connect postgres://app:…[truncated: 37 bytes]"),
        (b"Authorization: Bearer abcdef", 25, "Authorization: Bearer …[truncated: 28 bytes]"),
        ("id " + LONG_WORD, 900, "id " + "k" * 385 + "…[truncated: 1003 chars]"),
    ],
)
def test_a_value_over_max_chars_keeps_no_part_of_a_split_word(value: Any, limit: int, expected: str) -> None:
    copier = Snapshotter(Limits(max_chars=limit))
    assert copier.copy(value) == expected
    assert copier.truncated is True


@pytest.mark.parametrize(
    ("body", "max_bytes", "text"),
    [
        (b'{"user": "ada", "password": "hunter2secret"}', 35, '{"user": "ada", "password": "'),
        (b"user=ada&password=hunter2secret&next=%2F", 25, "user=ada&password="),
        (b"GET /db?dsn=postgres://app:SuperSecret@db HTTP/1.1", 33, "GET /db?dsn=postgres://app:"),
        (b"token " + b"A" * 1000, 700, "token " + "A" * 182),  # a word over 512 bytes: 700 - 512 = 188
    ],
)
def test_a_body_over_max_body_bytes_keeps_no_part_of_a_split_word(
    body: bytes, max_bytes: int, text: str
) -> None:
    assert summarize_body("text/plain", body, max_bytes=max_bytes) == {
        "truncated": True,
        "size": len(body),
        "text": text,
    }


def test_a_log_message_cut_inside_a_url_password_writes_no_part_of_it(log_dir: Path) -> None:
    logger = logging.getLogger("tests.encoding.word_cut")
    handler = PipelineHandler()
    handler.setFormatter(JSONFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # 8170 characters, then the URL: its password starts at 8185 and MAX_FIELD_CHARS (8192) falls after
    # "SuperSe"
    message = "x " * 4085 + "postgres://app:SuperSecretPw123456@db/app"
    try:
        logger.info(message)
    finally:
        logger.removeHandler(handler)
    assert activity_audit.flush(10)
    [written] = [
        line.decode()
        for line in (log_dir / "app.log").read_bytes().split(b"\n")
        if b'"tests.encoding.word_cut"' in line
    ]
    expected = "x " * 4085 + "postgres://app:…[truncated: 8211 chars]"
    assert strict_loads(written.encode())["message"] == expected
    # what a cut can keep of the password is its start: not even "Su" is written
    assert [n for n in range(2, 14) if "SuperSecretPw"[:n] in written] == []


# --- property tests --------------------------------------------------------------------------------------

anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()  # includes lone surrogates and every control character
    | st.binary()
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.times()
    | st.uuids(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text() | st.integers(), children, max_size=5)
        | st.frozensets(st.integers() | st.text(), max_size=5)
        | st.tuples(children, children)
    ),
    max_leaves=30,
)

plain_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(alphabet=st.characters(blacklist_categories=("Cs",))), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(anything)
def test_any_value_raw_or_snapshotted_is_one_line_of_strict_json(value: Any) -> None:
    strict_loads(dumps_line({"value": value}))
    strict_loads(dumps_line({"value": snapshot(value)}))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(plain_json)
def test_plain_json_values_round_trip_unchanged(value: Any) -> None:
    assert strict_loads(dumps_line({"value": snapshot(value)})) == {"value": value}


def test_the_byte_cap_counts_the_escapes_of_line_separators() -> None:
    # U+2028 is 3 bytes raw and 6 once escaped: a line under the cap before escaping may be twice over after.
    cap = 1 << 16
    record = {"seq": 7, "text": "\u2028" * (cap // 3 - 100)}
    assert len(orjson.dumps(record)) <= cap
    line = dumps_line(record, cap)
    assert len(line) <= cap
    assert orjson.loads(line)["truncated"] is True and "\u2028".encode() not in line


def test_bytes_cut_inside_a_character_drop_it_rather_than_escape_it() -> None:
    # 300 "é" (600 bytes) are one word: the cut falls 512 bytes back from 599, at 87, inside the 44th "é"
    assert Snapshotter(Limits(max_chars=599)).copy("é".encode() * 300) == "é" * 43 + "…[truncated: 600 bytes]"
