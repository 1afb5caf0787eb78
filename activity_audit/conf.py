"""The ``ACTIVITY_AUDIT`` setting: defaults, validation, and the cached result.

Every key is read and checked once; a wrong value is :class:`~django.core.exceptions.ImproperlyConfigured`
naming ``ACTIVITY_AUDIT['KEY']``, and an unknown key is an error too (with the nearest valid name), so a typo
never silently turns a protection off. The cache is reset when tests change settings (``setting_changed``).
"""

from __future__ import annotations

import difflib
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .encoding import MAX_ENCODABLE_DEPTH, Limits

WHEN_FULL_CHOICES = ("block", "drop")
# What a bulk write record holds (docs/crud.md): "rows" = pks and per-row values, "pks" = pks only,
# "count" = counts only, so QuerySet.update() runs no SELECT of pks first.
BULK_DETAIL_CHOICES = ("rows", "pks", "count")


@dataclass(frozen=True)
class AuditSettings:
    """The validated ``ACTIVITY_AUDIT`` dict. Attribute names are the setting keys."""

    # --- core -------------------------------------------------------------------------------------------
    ENABLED: bool = True
    LOG_DIR: Path = Path("audit_logs")
    SERVICE_NAME: str = "django"
    QUEUE_SIZE: int = 10_000
    WHEN_FULL: str = "block"
    BLOCK_TIMEOUT: float = 0.5
    BATCH_SIZE: int = 512
    FLUSH_INTERVAL: float = 0.2
    SINK_QUEUE_SIZE: int = 20_000
    SINK_QUEUE_BYTES: int = 64 << 20
    FSYNC_INTERVAL: float | None = 1.0
    SHUTDOWN_TIMEOUT: float = 5.0
    REPORT_INTERVAL: float = 60.0
    HANDLE_SIGTERM: bool = True
    MAX_FIELD_CHARS: int = 8192
    MAX_ITEMS: int = 1000
    MAX_DEPTH: int = 20
    MAX_RECORD_BYTES: int = 1 << 20
    FILE_MODE: int = 0o640
    DIR_MODE: int = 0o750
    # --- plugins ----------------------------------------------------------------------------------------
    HOOKS_MODULES: tuple[str, ...] = ()
    DISABLED_PLUGINS: tuple[str, ...] = ()
    LOAD_ENTRY_POINTS: bool = True
    PLUGINS: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # --- who acted ---------------------------------------------------------------------------------------
    USER_FIELDS: tuple[str, ...] = ("id", "username")
    # --- model changes (CRUD) ---------------------------------------------------------------------------
    INCLUDE_MODELS: tuple[str, ...] = ()
    EXCLUDE_MODELS: tuple[str, ...] = ()
    EXCLUDE_FIELDS: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    MASK_FIELDS: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    KEEP_EMPTY_UPDATES: bool = False
    BULK_DETAIL: str = "rows"
    BULK_CHUNK_SIZE: int = 500
    # --- requests and redaction ---------------------------------------------------------------------------
    REDACT_KEYS: tuple[str, ...] = ()
    REDACT_PATTERNS: tuple[str, ...] = ()
    # --- incoming requests (AuditLoggingMiddleware) -------------------------------------------------------
    # SKIP_PATHS: a path and what is below it ("/health"), a directory ("/static/"), a prefix ("/metrics*"),
    # or, starting with "^", a regular expression (re.match on the path); see activity_audit.paths.
    # BODY_PATHS: "^" regular expressions, or any other string a prefix.
    SKIP_PATHS: tuple[str, ...] = ("/health", "/static/", "/media/", "/favicon.ico")
    BODY_METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")
    BODY_PATHS: tuple[str, ...] = ()
    MAX_BODY_BYTES: int = 64 * 1024
    TRUSTED_PROXIES: int = 0
    REQUEST_ID_HEADER: str = "X-Request-ID"

    @property
    def limits(self) -> Limits:
        """The value caps used when records are captured and encoded."""
        return Limits(max_chars=self.MAX_FIELD_CHARS, max_items=self.MAX_ITEMS, max_depth=self.MAX_DEPTH)

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The options in ``ACTIVITY_AUDIT['PLUGINS'][name]``, with ``{"$env": VAR}`` values resolved.

        A missing environment variable is an error naming the setting and the variable, never its value.
        The name is remembered (:func:`plugin_options_read`): a ``PLUGINS`` entry no plugin reads is a
        warning of ``manage.py check``.
        """
        _options_read.add(name)
        raw = self.PLUGINS.get(name, {})
        return {
            key: _resolve_env(value, f"ACTIVITY_AUDIT['PLUGINS']['{name}']['{key}']")
            for key, value in raw.items()
        }


_options_read: set[str] = set()


def plugin_options_read() -> frozenset[str]:
    """Every name whose options a plugin has read with :meth:`AuditSettings.plugin_config` in this process."""
    return frozenset(_options_read)


def _resolve_env(value: Any, where: str) -> Any:
    if isinstance(value, Mapping) and set(value) == {"$env"}:
        variable = value["$env"]
        if not isinstance(variable, str) or not variable:
            raise ImproperlyConfigured(
                f'{where} must name an environment variable ({{"$env": "NAME"}}), got {variable!r}.'
            )
        if variable not in os.environ:
            raise ImproperlyConfigured(
                f"{where} reads the environment variable {variable}, which is not set."
            )
        return os.environ[variable]
    if isinstance(value, Mapping):
        return {key: _resolve_env(item, f"{where}['{key}']") for key, item in value.items()}
    return value


# --- validators: each takes (key, raw value) and returns the clean value or raises
# -----------------------------

Validator = Callable[[str, Any], Any]


def _bad(key: str, expected: str, value: Any) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"ACTIVITY_AUDIT['{key}'] must be {expected}, got {value!r}.")


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(key, "True or False", value)
    return value


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _bad(key, "a positive integer", value)
    return value


def _depth(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ENCODABLE_DEPTH:
        raise _bad(
            key, f"a positive integer of at most {MAX_ENCODABLE_DEPTH} (JSON nested deeper is refused)", value
        )
    return value


# The longest wait the threading module accepts; a longer one raises OverflowError in the worker.
MAX_SECONDS = math.floor(threading.TIMEOUT_MAX)


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise _bad(key, "a number of seconds (0 or more)", value)
    return _at_most_max_seconds(key, value)


def _positive_seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise _bad(key, "a number of seconds greater than 0", value)
    return _at_most_max_seconds(key, value)


def _at_most_max_seconds(key: str, value: float) -> float:
    if value > MAX_SECONDS:
        raise _bad(key, f"at most {MAX_SECONDS} seconds (the longest wait Python supports)", value)
    return float(value)


def _optional_seconds(key: str, value: Any) -> float | None:
    return None if value is None else _seconds(key, value)


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(key, "a non-empty string", value)
    return value


def _mode(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise _bad(key, "a permission mode such as 0o640", value)
    return value


def _owner_mode(needed: int, what: str) -> Validator:
    """A permission mode that leaves the owner (this process) the ``needed`` bits, so it can keep writing."""

    def check(key: str, value: Any) -> int:
        mode = _mode(key, value)
        if mode & needed != needed:
            raise ImproperlyConfigured(
                f"ACTIVITY_AUDIT['{key}'] must give the owner {what} permission ({oct(needed)} at least), "
                f"got {oct(mode)}."
            )
        return mode

    return check


def _choice(choices: tuple[str, ...]) -> Validator:
    def check(key: str, value: Any) -> str:
        if value not in choices:
            raise _bad(key, "one of " + ", ".join(repr(choice) for choice in choices), value)
        return str(value)

    return check


def _names(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _bad(key, "a list of strings", value)
    if not all(isinstance(item, str) and item for item in value):
        raise _bad(key, "a list of non-empty strings", value)
    return tuple(value)


def _model_patterns(key: str, value: Any) -> tuple[str, ...]:
    patterns = _names(key, value)
    for pattern in patterns:
        if pattern.count(".") != 1:
            raise _bad(key, 'a list of "app_label.Model" or "app_label.*" patterns', pattern)
    return patterns


def _fields_by_model(key: str, value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise _bad(key, 'a dict like {"app_label.Model": ["field", ...]}', value)
    clean: dict[str, tuple[str, ...]] = {}
    for model, names in value.items():
        _model_patterns(key, [model])
        clean[model] = _names(f"{key}']['{model}", names)
    return clean


def _plugins(key: str, value: Any) -> dict[str, dict[str, Any]]:
    """Options per plugin. An error names the entry at fault and its type, never a value: options hold
    secrets (passwords, keys), of that plugin or of the others."""
    expected = 'a dict of plugin name -> dict of options, e.g. {"s3": {"bucket": "..."}}'
    if not isinstance(value, Mapping):
        got = type(value).__name__
        raise ImproperlyConfigured(f"ACTIVITY_AUDIT['{key}'] must be {expected}, got a {got}.")
    for name, options in value.items():
        if not isinstance(options, Mapping):
            got = type(options).__name__
            message = f"ACTIVITY_AUDIT['{key}'][{name!r}] must be a dict of options, got a {got}."
            raise ImproperlyConfigured(message)
    return {str(name): dict(options) for name, options in value.items()}


def _patterns(key: str, value: Any) -> tuple[str, ...]:
    """``REDACT_PATTERNS``: valid regular expressions that match at least one character and have no shape
    :func:`_redact_pattern_problem` refuses (each is searched in every string of every record)."""
    patterns = _names(key, value)
    for pattern in patterns:
        _compiles(key, pattern, "a list of valid regular expressions")
        problem = _redact_pattern_problem(pattern)
        if problem is not None:
            raise _bad(key, problem, pattern)
    return patterns


def _compiles(key: str, pattern: str, expected: str) -> None:
    """Raise the setting ``key``'s error (``expected``, and why) when ``pattern`` is no regular expression."""
    import re

    try:
        re.compile(pattern)
    except re.error as exc:
        raise _bad(key, f"{expected} ({exc})", pattern) from exc


# --- REDACT_PATTERNS: what an entry must not be -------------------------------------------------------------
# Every string and key of every record, and every line of the console formatter, is searched with each
# pattern, and the re module holds the GIL while it searches: a search whose backtracking grows
# exponentially (or with the cube of the text) stalls the whole process, request threads included. The
# checks below read a pattern as re's own parser does and refuse the usual shapes of that; they cannot prove
# a pattern fast (docs/redaction.md says what they let through).

_EMPTY_MATCH = (
    "a list of regular expressions that match at least one character (this one can match empty text, so "
    "[REDACTED] would be put between the characters of every string and key: write + where * or ? lets the "
    "pattern match nothing, e.g. \\d+ rather than \\d*)"
)
_NESTED_REPEAT = (
    "a list of regular expressions without nested repetition (this one repeats a part that an inner repeat "
    "can fill alone, as (a+)+, (\\w+\\s?)+ and (\\d+|x)+ do, so a text splits between the repetitions in "
    "exponentially many ways and a search of a few dozen characters can stall the process for minutes: "
    "start or end each repetition with a character the inner repeat cannot match, as in (?:\\w+\\s)+, or "
    "make it atomic or possessive, on Python 3.11+)"
)
_OVERLAPPING_CHOICE = (
    "a list of regular expressions without ambiguous repeated choices (this one repeats a choice between "
    "alternatives that can match the same text, or one the start of the other, as (a|a)+, (a|aa)+ and "
    "(\\w|\\w\\w)+ do, so a search can take exponential time and stall the process: let the alternatives "
    "start with different characters, as in (?:\\d|[a-z])+)"
)
_SHARED_RUN = (
    "a list of regular expressions without two long repeats that can share a run of text (in this one, as "
    "in \\d+\\d+x, .*secret.*= and \\S+@\\S+\\.\\S+, such a run splits between the repeats in many ways "
    "wherever a search starts, so a search takes time growing with the cube of the text's length, seconds to "
    "minutes for one string of 8 KiB: let the repeats match different characters, as in "
    "[^@\\s]+@[^@\\s.]+\\.\\S+)"
)
# The characters the checks reason about: ASCII, and a few letters, digits and spaces of other scripts.
_SAMPLE = frozenset(map(chr, range(128))) | frozenset("\u00a0\u00b2\u00df\u00e9\u03a9\u044f\u0663\u2028")
_MAX_VARIANTS = 64  # a repeated part holding choices is checked choice by choice, up to this many ways
_MAX_HEAD = 16  # alternatives are compared on at most this many first characters
_LONG_REPEAT = 64  # a repeat that can take more characters than this is long


def _redact_pattern_problem(pattern: str) -> str | None:
    """What a ``REDACT_PATTERNS`` entry must be, and this valid regular expression is not, or None.

    Refused: a pattern that can match empty text, and the repetitions :class:`_RepetitionCheck` refuses.
    """
    import importlib
    import sys

    # re's parser, which also holds the opcodes; sre_parse before Python 3.11.
    parser = importlib.import_module("re._parser" if sys.version_info >= (3, 11) else "sre_parse")
    parsed = parser.parse(pattern)
    if parsed.getwidth()[0] == 0:
        return _EMPTY_MATCH
    check = _RepetitionCheck(parser)
    found = check.problem(parsed, parsed.state.flags)
    if found is None and check.repeats_share_a_run(parsed, parsed.state.flags):
        return _SHARED_RUN
    return found


class _RepetitionCheck:
    """Finds the usual shapes of exponential backtracking in a parsed pattern (a sequence of items).

    A repetition (``*``, ``+``, ``{m,n}`` with n > 1, greedy or lazy) is refused when one text can fill it in
    several ways:

    - a variable repeat inside it can fill a whole repetition: every other part of the repetition can match
      text made only of characters that repeat matches (``(a+)+``, ``(\\w+\\s?)+``, ``(a+a)+``; a choice in
      the repetition is tried alternative by alternative: ``(\\d+|x)+``);
    - a choice inside it has two alternatives that can match the same text, or one the start of the other,
      judged on their first fixed characters (``(a|a)+``, ``(\\w|\\w\\w)+``, ``(a|aa)+``; ``(a|ab)+`` too,
      which is safe).

    Atomic groups and possessive repeats are not backtracked into, so they are not refused (what is inside
    them is still checked). Character sets are judged on :data:`_SAMPLE`, erring towards overlap.
    """

    def __init__(self, parser: Any) -> None:
        import re

        self.p = parser
        self.repeats = (parser.MAX_REPEAT, parser.MIN_REPEAT)
        self.possessive = getattr(parser, "POSSESSIVE_REPEAT", None)  # Python 3.11+
        self.atomic = getattr(parser, "ATOMIC_GROUP", None)
        self.single = (parser.LITERAL, parser.NOT_LITERAL, parser.ANY, parser.IN)
        self.categories = {
            parser.CATEGORY_DIGIT: re.compile(r"\d"),
            parser.CATEGORY_NOT_DIGIT: re.compile(r"\D"),
            parser.CATEGORY_SPACE: re.compile(r"\s"),
            parser.CATEGORY_NOT_SPACE: re.compile(r"\S"),
            parser.CATEGORY_WORD: re.compile(r"\w"),
            parser.CATEGORY_NOT_WORD: re.compile(r"\W"),
        }

    def problem(self, items: Any, flags: int) -> str | None:
        """The first refused shape in ``items`` and below, as what the setting's entries must be, or None."""
        for op, av in items:
            if op in self.repeats and av[1] > 1:
                found = self._repetition_problem(av[2], flags)
                if found:
                    return found
            for child, child_flags in self._children(op, av, flags):
                found = self.problem(child, child_flags)
                if found:
                    return found
        return None

    def _children(self, op: Any, av: Any, flags: int) -> list[tuple[Any, int]]:
        """The sequences directly inside the item ``(op, av)``, each with its flags."""
        p = self.p
        if op in self.repeats or op is self.possessive:
            return [(av[2], flags)]
        if op is p.SUBPATTERN:
            return [(av[3], (flags | av[1]) & ~av[2])]
        if op is p.BRANCH:
            return [(branch, flags) for branch in av[1]]
        if op is p.ASSERT or op is p.ASSERT_NOT:
            return [(av[1], flags)]
        if op is p.GROUPREF_EXISTS:
            return [(branch, flags) for branch in av[1:] if branch is not None]
        if op is self.atomic:
            return [(av, flags)]
        return []

    def _repetition_problem(self, body: Any, flags: int) -> str | None:
        variants, choices = self._variants(body, flags)
        if any(self._alternatives_overlap(alternatives) for alternatives in choices):
            return _OVERLAPPING_CHOICE
        if any(self._repeat_fills_all(variant) for variant in variants):
            return _NESTED_REPEAT
        return None

    def _variants(self, items: Any, flags: int) -> tuple[list[list[tuple[Any, Any, int]]], list[list[Any]]]:
        """``items`` flattened: groups opened, each choice (and each optional part, ``x?``) replaced by each
        of its alternatives in turn (up to :data:`_MAX_VARIANTS` ways, then kept whole); and the choices met,
        as lists of ``(sequence, flags)``. An item is ``(op, av, flags)``."""
        variants: list[list[tuple[Any, Any, int]]] = [[]]
        choices: list[list[Any]] = []
        for op, av in items:
            once = op in self.repeats and av[1] == 1
            if op is self.p.SUBPATTERN or op is self.p.BRANCH or once:
                inner = self._children(op, av, flags)
                if op is self.p.BRANCH:
                    choices.append(inner)
                tails: list[list[tuple[Any, Any, int]]] = [[]] if once and av[0] == 0 else []
                for child, child_flags in inner:
                    child_variants, child_choices = self._variants(child, child_flags)
                    tails += child_variants
                    choices += child_choices
                if len(variants) * len(tails) <= _MAX_VARIANTS:
                    variants = [variant + tail for variant in variants for tail in tails]
                    continue
            variants = [[*variant, (op, av, flags)] for variant in variants]
        return variants, choices

    def _repeat_fills_all(self, variant: list[tuple[Any, Any, int]]) -> bool:
        """True when a variable repeat of ``variant`` can fill it alone (see the class docstring)."""
        for index, (op, av, flags) in enumerate(variant):
            if op in self.repeats and av[1] > max(av[0], 1):
                alphabet = self._chars(av[2], flags)
                others = variant[:index] + variant[index + 1 :]
                if all(self._fits(item, alphabet) for item in others):
                    return True
        return False

    def repeats_share_a_run(self, items: Any, flags: int) -> bool:
        """True when two long repeats of one character each (``\\d+``, ``.*``, ``[a-z]{0,100}``) of the
        pattern ``items`` can share a run of characters that a search can enter anywhere, and something after
        them can fail (``\\d+\\d+x``, ``.*a.*=``): every item before the first can match in such a run, every
        item between them too, and one item at least follows.
        """
        variants, _choices = self._variants(items, flags)
        return any(self._shared_run(variant) for variant in variants)

    def _shared_run(self, variant: list[tuple[Any, Any, int]]) -> bool:
        long = [
            index
            for index, (op, av, _flags) in enumerate(variant)
            if op in self.repeats and av[1] > max(av[0], _LONG_REPEAT) and self._one_character(av[2])
        ]
        for position, first in enumerate(long):
            run = self._chars(variant[first][1][2], variant[first][2])
            if not all(self._fits(item, run, anchors=True) for item in variant[:first]):
                continue
            for second in long[position + 1 :]:
                shared = run & self._chars(variant[second][1][2], variant[second][2])
                if (
                    shared
                    and second < len(variant) - 1
                    and all(self._fits(item, shared) for item in variant[first + 1 : second])
                ):
                    return True
        return False

    def _one_character(self, items: Any) -> bool:
        """True when ``items`` is one literal, ``.`` or set: a repeat of it can stop anywhere in a run."""
        return len(items) == 1 and items[0][0] in self.single

    def _fits(self, item: tuple[Any, Any, int], alphabet: frozenset[str], anchors: bool = False) -> bool:
        """True when ``item`` can match some text (maybe empty) made of characters of ``alphabet`` only.

        An anchor or ``\\b`` cannot sit inside such a run, unless ``anchors`` (then only ``^`` and ``\\A``
        cannot: a search may start at the others).
        """
        op, av, flags = item
        p = self.p
        if op in self.single:
            return not self._char_set(op, av, flags).isdisjoint(alphabet)
        if op is p.AT:
            if anchors:
                return av is not p.AT_BEGINNING and av is not p.AT_BEGINNING_STRING
            return av is p.AT_NON_BOUNDARY
        if (op in self.repeats or op is self.possessive) and av[0] == 0:
            return True
        children = self._children(op, av, flags)
        if op is p.BRANCH:
            return any(self._all_fit(child, child_flags, alphabet) for child, child_flags in children)
        if op is p.ASSERT or op is p.ASSERT_NOT or op is p.GROUPREF or op is p.GROUPREF_EXISTS:
            return True  # matches nothing, or what another part matched: maybe empty
        return all(self._all_fit(child, child_flags, alphabet) for child, child_flags in children)

    def _all_fit(self, items: Any, flags: int, alphabet: frozenset[str]) -> bool:
        return all(self._fits((op, av, flags), alphabet) for op, av in items)

    def _chars(self, items: Any, flags: int) -> frozenset[str]:
        """Every character some part of ``items`` can match (all of :data:`_SAMPLE` for a back-reference)."""
        chars: set[str] = set()
        for op, av in items:
            if op in self.single:
                chars |= self._char_set(op, av, flags)
            elif op is self.p.GROUPREF:
                return _SAMPLE
            for child, child_flags in self._children(op, av, flags):
                chars |= self._chars(child, child_flags)
        return frozenset(chars)

    def _alternatives_overlap(self, alternatives: list[Any]) -> bool:
        """True when two of ``alternatives`` (``(sequence, flags)``) may match the same text, or one the start
        of the other: one can match empty text, or their first fixed characters overlap position by position.
        """
        heads = [self._alternative_head(sequence, flags) for sequence, flags in alternatives]
        for index, first in enumerate(heads):
            for second in heads[index + 1 :]:
                if first is None or second is None:
                    return True
                if all(not one.isdisjoint(other) for one, other in zip(first, second, strict=False)):
                    return True
        return False

    def _alternative_head(self, sequence: Any, flags: int) -> list[frozenset[str]] | None:
        """What :meth:`_head` says of an alternative; None when it can match empty text (it is the start of
        any other), but no character for an anchor alone (``$``, ``\\b``: it matches no text)."""
        low, high = sequence.getwidth()
        if high == 0 and any(op is self.p.AT and av is not self.p.AT_NON_BOUNDARY for op, av in sequence):
            return [frozenset()]
        return None if low == 0 else self._head(sequence, flags)[0]

    def _head(self, items: Any, flags: int) -> tuple[list[frozenset[str]], bool]:
        """The character sets of the first characters ``items`` match, position by position, as far as they
        are fixed (at most :data:`_MAX_HEAD`); and True when that is the whole of what they match."""
        p = self.p
        head: list[frozenset[str]] = []
        for op, av in items:
            if len(head) >= _MAX_HEAD:
                return head, False
            if op in self.single:
                head.append(self._char_set(op, av, flags))
            elif op is p.AT or op is p.ASSERT or op is p.ASSERT_NOT:
                continue
            elif op is p.SUBPATTERN or op is self.atomic:
                ((child, child_flags),) = self._children(op, av, flags)
                inner, whole = self._head(child, child_flags)
                head += inner
                if not whole:
                    return head, False
            elif op in self.repeats or op is self.possessive:
                inner, whole = self._head(av[2], flags)
                if whole and av[0] == av[1]:
                    head += inner * min(av[0], _MAX_HEAD)
                    continue
                return head + (inner[:1] if av[0] else []), False
            else:
                return head, False  # a choice, a back-reference: the fixed part ends here
        return head, True

    def _char_set(self, op: Any, av: Any, flags: int) -> frozenset[str]:
        """What one character matched by ``(op, av)`` (a literal, ``.``, a set) can be, in either case when
        the pattern ignores case."""
        p = self.p
        if op is p.LITERAL:
            chars = frozenset(chr(av))
        elif op is p.NOT_LITERAL:
            chars = _SAMPLE - {chr(av)}
        elif op is p.ANY:
            chars = _SAMPLE if flags & p.SRE_FLAG_DOTALL else _SAMPLE - {"\n"}
        else:
            chars = self._set_chars(av)
        if flags & p.SRE_FLAG_IGNORECASE:
            chars |= {other for char in chars for other in (char.lower(), char.upper()) if len(other) == 1}
        return chars

    def _set_chars(self, members: Any) -> frozenset[str]:
        """The characters of :data:`_SAMPLE` (and the literals) that a set ``[...]`` matches."""
        p = self.p
        chars: set[str] = set()
        for op, av in members:
            if op is p.LITERAL:
                chars.add(chr(av))
            elif op is p.RANGE:
                chars.update(char for char in _SAMPLE if av[0] <= ord(char) <= av[1])
            elif op is p.CATEGORY:
                category = self.categories.get(av)
                if category is None:
                    return _SAMPLE
                chars.update(char for char in _SAMPLE if category.match(char))
        if members and members[0][0] is p.NEGATE:
            return _SAMPLE - chars
        return frozenset(chars)


def _path_patterns(key: str, value: Any) -> tuple[str, ...]:
    """URL path prefixes (``"/static/"``) or, starting with ``^``, regular expressions."""
    patterns = _names(key, value)
    for pattern in patterns:
        if pattern.startswith("^"):
            _compiles(key, pattern, "a list of path prefixes or '^' regular expressions")
        elif not pattern.startswith("/"):
            expected = "a list of path prefixes starting with '/' or regular expressions starting with '^'"
            raise _bad(key, expected, pattern)
    return patterns


def _skip_paths(key: str, value: Any) -> tuple[str, ...]:
    """``SKIP_PATHS``: the forms of :mod:`activity_audit.paths`; a ``*`` only at the end, for a prefix."""
    patterns = _names(key, value)
    for pattern in patterns:
        if pattern.startswith("^"):
            _compiles(key, pattern, "a list of paths or '^' regular expressions")
        elif not pattern.startswith("/") or "*" in pattern[:-1]:
            expected = (
                "a list of paths starting with '/' ('/health' also skips '/health/live' but not "
                "'/healthcare'), directories ending in '/', prefixes ending in '*' ('/metrics*'), "
                "or regular expressions starting with '^'"
            )
            raise _bad(key, expected, pattern)
    return patterns


def _methods(key: str, value: Any) -> tuple[str, ...]:
    methods = _names(key, value)
    if not all(method.isalpha() for method in methods):
        raise _bad(key, 'a list of HTTP methods such as ["POST", "PUT"]', value)
    return tuple(method.upper() for method in methods)


def _count(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(key, "a whole number (0 or more)", value)
    return value


def _header_name(key: str, value: Any) -> str:
    import re

    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9-]+", value):
        raise _bad(key, 'an HTTP header name such as "X-Request-ID"', value)
    return value


def _path(key: str, value: Any) -> Path:
    path = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(path, str) or not path:
        raise _bad(key, "a directory path", value)
    if "\0" in path:
        raise _bad(key, "a directory path without NUL characters", value)
    return Path(path)


VALIDATORS: dict[str, Validator] = {
    "ENABLED": _boolean,
    "LOG_DIR": _path,
    "SERVICE_NAME": _text,
    "QUEUE_SIZE": _positive_int,
    "WHEN_FULL": _choice(WHEN_FULL_CHOICES),
    "BLOCK_TIMEOUT": _seconds,
    "BATCH_SIZE": _positive_int,
    "FLUSH_INTERVAL": _positive_seconds,
    "SINK_QUEUE_SIZE": _positive_int,
    "SINK_QUEUE_BYTES": _positive_int,
    "FSYNC_INTERVAL": _optional_seconds,
    "SHUTDOWN_TIMEOUT": _seconds,
    "REPORT_INTERVAL": _seconds,
    "HANDLE_SIGTERM": _boolean,
    "MAX_FIELD_CHARS": _positive_int,
    "MAX_ITEMS": _positive_int,
    "MAX_DEPTH": _depth,
    "MAX_RECORD_BYTES": _positive_int,
    "FILE_MODE": _owner_mode(0o600, "read and write"),
    "DIR_MODE": _owner_mode(0o700, "read, write and search"),
    "HOOKS_MODULES": _names,
    "DISABLED_PLUGINS": _names,
    "LOAD_ENTRY_POINTS": _boolean,
    "PLUGINS": _plugins,
    "USER_FIELDS": _names,
    "INCLUDE_MODELS": _model_patterns,
    "EXCLUDE_MODELS": _model_patterns,
    "EXCLUDE_FIELDS": _fields_by_model,
    "MASK_FIELDS": _fields_by_model,
    "KEEP_EMPTY_UPDATES": _boolean,
    "BULK_DETAIL": _choice(BULK_DETAIL_CHOICES),
    "BULK_CHUNK_SIZE": _positive_int,
    "REDACT_KEYS": _names,
    "REDACT_PATTERNS": _patterns,
    "SKIP_PATHS": _skip_paths,
    "BODY_METHODS": _methods,
    "BODY_PATHS": _path_patterns,
    "MAX_BODY_BYTES": _positive_int,
    "TRUSTED_PROXIES": _count,
    "REQUEST_ID_HEADER": _header_name,
}

assert set(VALIDATORS) == {f.name for f in fields(AuditSettings)}, "every setting needs a validator"


def build(raw: Mapping[str, Any], django_settings: Any) -> AuditSettings:
    """Validate ``raw`` (the ``ACTIVITY_AUDIT`` dict) and fill in the defaults that depend on the project."""
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"ACTIVITY_AUDIT must be a dict, got {type(raw).__name__}.")
    unknown = sorted((key for key in raw if key not in VALIDATORS), key=repr)  # keys may be of any type
    if unknown:
        key = unknown[0]
        near = [key.upper()] if isinstance(key, str) and key.upper() in VALIDATORS else []
        near = near or difflib.get_close_matches(str(key), VALIDATORS, n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise ImproperlyConfigured(f"ACTIVITY_AUDIT[{key!r}] is not a setting of activity_audit.{hint}")
    values = {key: VALIDATORS[key](key, value) for key, value in raw.items()}
    values.setdefault("LOG_DIR", _default_log_dir(django_settings))
    values.setdefault("SERVICE_NAME", _default_service_name(django_settings))
    values["LOG_DIR"] = _expanded_log_dir(values["LOG_DIR"])
    return AuditSettings(**values)


def _expanded_log_dir(value: Path) -> Path:
    """``LOG_DIR`` absolute, ``~`` and ``~user`` expanded; an error naming the setting when they cannot be."""
    try:
        return Path(value).expanduser().absolute()
    except RuntimeError as exc:  # "~user" of a user this machine does not know, or no home at all
        message = f"ACTIVITY_AUDIT['LOG_DIR'] = '{value}' cannot be expanded: {exc}"
        raise ImproperlyConfigured(message) from exc


def _default_log_dir(django_settings: Any) -> Path:
    base = getattr(django_settings, "BASE_DIR", None)
    return Path(base if base else os.getcwd()) / "audit_logs"


def _default_service_name(django_settings: Any) -> str:
    module = getattr(django_settings, "SETTINGS_MODULE", None) or "django"
    return os.environ.get("SERVICE_NAME") or module.split(".")[0]


_cached: AuditSettings | None = None


def get_settings() -> AuditSettings:
    """The validated settings, computed on first use and cached until ``ACTIVITY_AUDIT`` changes."""
    global _cached
    if _cached is None:
        from django.conf import settings as django_settings

        _cached = build(getattr(django_settings, "ACTIVITY_AUDIT", {}), django_settings)
    return _cached


def reset() -> None:
    """Forget the cached settings (called on ``setting_changed``)."""
    global _cached
    _cached = None
