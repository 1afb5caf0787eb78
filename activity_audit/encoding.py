"""Plain values in, one line of strict JSON out: the two halves of "no record is dropped for its content".

:func:`snapshot` runs on the caller thread when a record is captured. It copies whatever a Django project
hands over (model field values, request bodies, ``extra=`` dicts) into plain JSON values, so that a later
mutation of the original cannot change the record and nothing costly or unsafe happens later on another
thread.

:func:`dumps_line` runs on the worker thread. It encodes a record with orjson and guarantees exactly one line
of strict JSON: no bare ``NaN``, no raw U+2028/U+2029/U+0085, every control character escaped, lone
surrogates replaced, and a record over ``max_bytes`` cut down with ``"truncated": true``. It never raises.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import itertools
import math
import re
import uuid
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

TRUNCATED_KEY = "truncated"
# The key a dict cut at MAX_ITEMS ends with; its value says how many entries were left out.
MORE_ITEMS_KEY = "…truncated"

# Envelope keys a shrunk record keeps, whatever else has to go.
_ENVELOPE_KEYS = ("timestamp", "level", "name", "message", "event_type", "event_id", "stream_id", "seq")

# Raw characters that line-splitting readers (Python's str.splitlines, some log shippers) treat as a line end
# and that orjson leaves unescaped: NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR.
_LINE_BREAKERS = ((b"\xc2\x85", b"\\u0085"), (b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# Time zones orjson encodes itself. A datetime with any other tzinfo is turned into text by the snapshot:
# orjson 3.x crashes the process (not an exception) on a tzinfo whose utcoffset() raises.
_NATIVE_TZINFO = (type(None), dt.timezone, zoneinfo.ZoneInfo)

_MAX_INT = 2**63 - 1
_MIN_INT = -(2**63)


@dataclass(frozen=True)
class Limits:
    """Size caps applied when copying values. Every cut leaves a visible marker."""

    max_chars: int = 8192
    max_items: int = 1000
    max_depth: int = 20


DEFAULT_LIMITS = Limits()

# The deepest MAX_DEPTH the settings accept: orjson refuses values nested deeper than 254 containers, and a
# record adds a few levels above a captured value (record, section, field, change).
MAX_ENCODABLE_DEPTH = 200


class Snapshotter:
    """Copies one value into plain JSON types; ``truncated`` tells whether any cap cut something."""

    __slots__ = ("_active", "limits", "scrub", "truncated")

    def __init__(self, limits: Limits = DEFAULT_LIMITS, scrub: bool = False) -> None:
        self.limits = limits
        self.scrub = scrub  # replace lone surrogates (slow; only needed when orjson refused a record)
        self.truncated = False
        self._active: set[int] = set()

    def copy(self, value: Any, depth: int = 0) -> Any:
        """A plain copy of ``value``: None, bool, int, float, str, list, dict, or a datetime/date/UUID."""
        if value is None or value is True or value is False:
            return value
        kind = type(value)
        if kind is str:
            return self._text(value)
        if kind is int:
            return value if _MIN_INT <= value <= _MAX_INT else str(value)
        if kind is float:
            return value if math.isfinite(value) else _non_finite(value)
        if kind is dt.datetime and type(value.tzinfo) in _NATIVE_TZINFO:
            return value
        if kind is dt.date or kind is uuid.UUID:
            return value
        try:
            if isinstance(value, (Mapping, list, tuple, set, frozenset)):
                return self._container(value, depth)
            return self._scalar(value, depth)
        except Exception as exc:  # a container or object that fails while being read still leaves a trace
            return self._text(f"<unreadable {_type_name(value)}: {type(exc).__name__}>")

    def _text(self, value: str) -> str:
        if self.scrub:
            value = _LONE_SURROGATE.sub("\ufffd", value)
        limit = self.limits.max_chars
        if len(value) <= limit:
            return value
        self.truncated = True
        return f"{value[: clean_cut(value, limit)]}…[truncated: {len(value)} chars]"

    def _container(self, value: Any, depth: int) -> Any:
        if depth >= self.limits.max_depth:
            self.truncated = True
            return f"[truncated: nested deeper than {self.limits.max_depth}]"
        marker = id(value)
        if marker in self._active:
            return "[circular reference]"
        self._active.add(marker)
        try:
            if isinstance(value, Mapping):
                return self._mapping(value, depth)
            if isinstance(value, (set, frozenset)):
                # Sorted so that equal sets give equal records; a set over the cap is first cut to it (which
                # items stay is then the set's own order), as sorting a million items would take a second.
                kept = sorted(itertools.islice(value, self.limits.max_items), key=_sort_key)
                return self._sequence(kept, depth, len(value))
            return self._sequence(value, depth, len(value))
        finally:
            self._active.discard(marker)

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        """Keys become strings held to ``max_chars`` like any string; keys that become equal (cut to the
        same text, ``1`` and ``"1"``) are kept apart with a suffix (``key (2)``), so no value is lost."""
        out: dict[str, Any] = {}
        limit, max_chars = self.limits.max_items, self.limits.max_chars
        renamed = False  # once a key was changed, any later key may meet it
        # A MultiValueDict (request.GET/POST) keeps every value of a key in a list; items() would show the
        # last.
        pairs = value.lists() if isinstance(value, dict) and hasattr(value, "lists") else value.items()
        for index, (key, item) in enumerate(pairs):
            if index >= limit:
                self.truncated = True
                out[MORE_ITEMS_KEY] = f"{len(value) - limit} more keys"
                break
            if type(key) is str and not self.scrub and len(key) <= max_chars:
                name = key
            else:
                name, renamed = self._text(_key(key)), True
            if renamed and name in out:
                name = _unused_name(name, out)
            out[name] = self.copy(item, depth + 1)
        return out

    def _sequence(self, value: Any, depth: int, size: int) -> list[Any]:
        """The first ``max_items`` items of ``value`` (whose full length is ``size``), copied."""
        limit = self.limits.max_items
        out = [self.copy(item, depth + 1) for item in itertools.islice(value, limit)]
        if size > limit:
            self.truncated = True
            out.append(f"…[truncated: {size} items]")
        return out

    def _scalar(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):  # str subclasses, e.g. SafeString
            return self._text(str.__str__(value))
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return self.copy(int(value), depth)
        if isinstance(value, float):
            return self.copy(float(value), depth)
        if isinstance(value, decimal.Decimal):
            return _decimal(value)
        if isinstance(value, (dt.datetime, dt.date, dt.time)):
            return self._text(_isoformat(value))
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self._bytes(bytes(value))
        if isinstance(value, enum.Enum):
            return self.copy(value.value, depth + 1)
        model_ref = _model_reference(value)
        if model_ref is not None:
            return self.copy(model_ref, depth + 1)
        queryset_model = _queryset_model(value)
        if queryset_model is not None:
            return {"queryset": queryset_model}  # never evaluated here: str() would run a query
        if isinstance(value, BaseException):
            return self._text(f"{type(value).__name__}: {_safe_str(value)}")
        return self._text(_safe_str(value))

    def _bytes(self, value: bytes) -> str:
        limit = self.limits.max_chars
        if len(value) <= limit:
            return value.decode("utf-8", errors="backslashreplace")
        self.truncated = True
        head = _without_split_character(value[: clean_cut(value, limit)])
        return f"{head.decode('utf-8', errors='backslashreplace')}…[truncated: {len(value)} bytes]"


_DIGITS = "0123456789"
_RUN_SEPARATORS = " -"
_RUN_CHARACTERS = _DIGITS + _RUN_SEPARATORS
_RUN_BYTES = _RUN_CHARACTERS.encode()
_DOUBLE_SEPARATORS = ("  ", " -", "- ", "--")


def clean_cut(value: str | bytes, limit: int) -> int:
    """Where to cut ``value`` to keep at most ``limit`` characters (bytes) without keeping part of a secret.

    Values are cut before the redactor sees them, and it recognises a secret only whole: a card number by
    all its digits (Luhn check), a URL password by the ``@`` after it, a token by where it ends. So a cut
    never splits

    - a run of ASCII digits with at most one space or dash between two of them (a payment card number): the
      cut moves back to the start of the run;
    - a word, that is a stretch without whitespace, quotes, brackets or ``, ; : = & | < >``: the cut moves
      back to just after the last of those, so ``postgres://app:Secr…`` keeps ``postgres://app:`` and
      ``Bearer abc…`` keeps ``Bearer ``. It moves back :data:`WORD_LOOKBACK` characters at most: of a longer
      word (a base64 blob) the head is kept, and the last ``WORD_LOOKBACK`` characters before the cut are
      dropped, so a secret that long loses its end at least.

    ``value`` as bytes is read as ASCII. Cheap: only the characters either side of the cut are looked at,
    then a backward search in C when they are part of one run or word.
    """
    if len(value) <= limit:
        return len(value)
    cut = _outside_digit_run(value, limit)
    return _outside_word(value, cut)


def _without_split_character(head: bytes) -> bytes:
    """``head`` without the start of a UTF-8 character that a cut split (it would be written as escapes)."""
    for back in range(1, min(4, len(head)) + 1):
        byte = head[-back]
        if byte < 0x80:
            return head  # ASCII: nothing split
        if byte >= 0xC0:  # the lead byte of a character of 2, 3 or 4 bytes
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return head[:-back] if needed > back else head
    return head


# What ends a word for clean_cut, and how far back it looks for one (see there).
_WORD_ENDS = " \t\n\r\f\v\"'`{}[](),;:=&|<>"
_WORD_END_BYTES = _WORD_ENDS.encode()
WORD_LOOKBACK = 512


def _outside_word(value: str | bytes, cut: int) -> int:
    if cut <= 0 or cut >= len(value):
        return cut
    floor = max(cut - WORD_LOOKBACK, 0)
    if isinstance(value, str):
        if value[cut - 1] in _WORD_ENDS or value[cut] in _WORD_ENDS:
            return cut
        end = max(value.rfind(end, floor, cut) for end in _WORD_ENDS)
    else:
        if value[cut - 1] in _WORD_END_BYTES or value[cut] in _WORD_END_BYTES:
            return cut
        end = max(value.rfind(bytes((end,)), floor, cut) for end in _WORD_END_BYTES)
    return end + 1 if end >= 0 else floor


def _outside_digit_run(value: str | bytes, limit: int) -> int:
    """The cut at ``limit``, moved back to the start of a digit run it would split (see :func:`clean_cut`)."""
    start = max(limit - 2, 0)
    window = value[start : limit + 2]
    around = window if isinstance(window, str) else window.decode("latin-1")
    before, after = around[: limit - start], around[limit - start :]
    last, first = before[-1:], after[:1]
    if _is_digit(last):
        split = _is_digit(first) or (_is_separator(first) and _is_digit(after[1:2]))
    else:
        split = _is_separator(last) and _is_digit(before[-2:-1]) and _is_digit(first)
    if not split:
        return limit
    end = limit if _is_digit(last) else limit - 1  # the kept part of the run ends with a digit
    if isinstance(value, str):
        head = len(value[:end].rstrip(_RUN_CHARACTERS))
        tail = value[head:end]
    else:
        head = len(value[:end].rstrip(_RUN_BYTES))
        tail = value[head:end].decode("ascii")
    return head + _run_start(tail)


def _is_digit(char: str) -> bool:
    return char != "" and char in _DIGITS


def _is_separator(char: str) -> bool:
    return char != "" and char in _RUN_SEPARATORS


def _run_start(tail: str) -> int:
    """Where the run that ends ``tail`` starts; ``tail`` is digits and separators and ends with a digit."""
    double = max(tail.rfind(pair) for pair in _DOUBLE_SEPARATORS)
    if double >= 0:
        return double + 2
    return 1 if tail[0] in _RUN_SEPARATORS else 0


def snapshot(value: Any, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Copy ``value`` into plain JSON values (see :class:`Snapshotter`)."""
    return Snapshotter(limits).copy(value)


def dumps_line(record: Mapping[str, Any], max_bytes: int = 1 << 20, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Encode ``record`` as one line of strict UTF-8 JSON without the newline. Never raises.

    The fast path is a single ``orjson.dumps``; anything orjson refuses (lone surrogates, integers beyond 64
    bits, cycles, depth beyond its limit, objects whose ``__str__`` raises) goes through :class:`Snapshotter`
    first. A line over ``max_bytes`` is re-encoded with tighter caps until it fits, and marked truncated.
    A float NaN or infinity that reaches this function raw is written as ``null`` (orjson's choice); values
    captured through :func:`snapshot` already hold the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.
    """
    try:
        line = orjson.dumps(record, default=_default)
    except (TypeError, ValueError):
        line = _encode_sanitised(record, limits)
    line = _escape_line_breakers(line)  # before the size check: escaping makes a line longer
    if len(line) > max_bytes:
        line = _shrink(record, max_bytes, limits, original_size=len(line))
    return line


def _encode_sanitised(record: Mapping[str, Any], limits: Limits) -> bytes:
    copier = Snapshotter(limits, scrub=True)
    plain = copier.copy(record)
    if copier.truncated and isinstance(plain, dict):
        plain[TRUNCATED_KEY] = True
    try:
        return orjson.dumps(plain, default=_default)
    except (
        TypeError,
        ValueError,
    ) as exc:  # nested deeper than orjson goes (limits above MAX_ENCODABLE_DEPTH)
        return _envelope_only(record, encoding_error=f"{type(exc).__name__}: {exc}")


def _shrink(record: Mapping[str, Any], max_bytes: int, limits: Limits, original_size: int) -> bytes:
    chars, items = limits.max_chars, limits.max_items
    while chars > 64:
        chars, items = chars // 4, max(items // 4, 8)
        tighter = Limits(max_chars=chars, max_items=items, max_depth=limits.max_depth)
        plain = Snapshotter(tighter, scrub=True).copy(record)
        plain[TRUNCATED_KEY] = True
        plain["original_bytes"] = original_size
        line = _escape_line_breakers(orjson.dumps(plain, default=_default))
        if len(line) <= max_bytes:
            return line
    return _envelope_only(record, original_bytes=original_size)


def _envelope_only(record: Mapping[str, Any], **why: Any) -> bytes:
    """The line of a record that cannot be written whole: its envelope (what proves it existed: time, kind,
    ``event_id``, ``stream_id``, ``seq``), marked truncated, with ``why``."""
    stub = {key: record[key] for key in _ENVELOPE_KEYS if key in record}
    stub[TRUNCATED_KEY] = True
    stub.update(why)
    return _escape_line_breakers(
        orjson.dumps(Snapshotter(Limits(max_chars=256), scrub=True).copy(stub), default=_default)
    )


# Raw ASCII bytes on which str.splitlines() (and most log shippers) split a line; none can occur in valid
# JSON outside a string, and none may occur raw inside one.
_ASCII_BREAKS = b"\n\r\x0b\x0c\x1c\x1d\x1e"


def one_line(line: bytes) -> bytes | None:
    """Check a line produced by a custom ``format_record``: the line with U+0085/U+2028/U+2029 escaped, or
    None when it is empty, is not UTF-8, or holds a raw ASCII line break (and must be replaced by the built-in
    encoding)."""
    if not line or len(line.translate(None, _ASCII_BREAKS)) != len(line):  # one C pass, no regex
        return None
    if not line.isascii():
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return _escape_line_breakers(line)


def _escape_line_breakers(line: bytes) -> bytes:
    if line.isascii():  # the usual case, checked at memory speed: none of the three can be there
        return line
    for raw, escaped in _LINE_BREAKERS:
        if raw in line:
            line = line.replace(raw, escaped)
    return line


class _CutValue(TypeError):
    """Raised inside orjson's ``default`` when a value had to be cut: the record is re-encoded through
    :class:`Snapshotter`, which also sets the record's ``truncated`` marker."""


def _default(value: Any) -> Any:
    """orjson's fallback for types it does not know; must return something it does."""
    copier = Snapshotter()
    plain = (
        copier._scalar(value, 0) if not isinstance(value, (Mapping, set, frozenset)) else copier.copy(value)
    )
    if copier.truncated:
        raise _CutValue
    if isinstance(plain, (str, list, dict)):
        return plain
    return _safe_str(plain)


def _non_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _isoformat(value: dt.date | dt.time) -> str:
    """ISO-8601 text of any date, time or datetime, subclasses and foreign time zones included."""
    if isinstance(value, dt.datetime):
        return dt.datetime.isoformat(value)
    if isinstance(value, dt.date):
        return dt.date.isoformat(value)
    return dt.time.isoformat(value)


def _decimal(value: decimal.Decimal) -> str:
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "Infinity" if value > 0 else "-Infinity"
    return str(value)


def _unused_name(name: str, taken: Mapping[str, Any]) -> str:
    """``name (2)``, ``name (3)`` ...: the first that is not a key of ``taken``."""
    number = 2
    while f"{name} ({number})" in taken:
        number += 1
    return f"{name} ({number})"


def _key(key: Any) -> str:
    return key if isinstance(key, str) else _safe_str(key)


def _sort_key(item: Any) -> tuple[str, str]:
    return (type(item).__name__, _safe_str(item))


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # an object whose __str__ raises must still leave a trace
        return f"<unprintable {_type_name(value)}>"


def _queryset_model(value: Any) -> str | None:
    kind = type(value)
    if not (hasattr(kind, "query") and hasattr(kind, "_fetch_all")):
        return None
    model = vars(value).get("model")
    return getattr(getattr(model, "_meta", None), "label", None)


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _model_reference(value: Any) -> dict[str, Any] | None:
    meta = getattr(type(value), "_meta", None)
    label = getattr(meta, "label", None)
    if label is None or not hasattr(value, "pk"):
        return None
    try:
        return {"model": label, "pk": value.pk}
    except Exception:
        return {"model": label, "pk": None}
