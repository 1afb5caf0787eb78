"""Refuses the regular expressions a project gives in its settings that would stall the process.

``REDACT_PATTERNS`` are searched in every string and key of every record and every line of the console
formatter, and ``SKIP_PATHS`` / ``BODY_PATHS`` expressions in the path of every request, which any client
chooses. The ``re`` module holds the GIL while it searches, so a search whose backtracking grows
exponentially (or with the cube of the text) stalls the whole process, request threads included. The checks
read a pattern as ``re``'s own parser does and refuse the usual shapes of that, erring towards refusal (a
message says why and how to write the pattern instead); they cannot prove a pattern fast (docs/redaction.md
says what they let through). On a Python whose ``re`` parser cannot be read, nothing is refused.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

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


def redact_pattern_problem(pattern: str) -> str | None:
    """What a ``REDACT_PATTERNS`` entry must be, and this valid regular expression is not, or None.

    Refused: a pattern that can match empty text, and the shapes :func:`backtracking_problem` refuses.
    """
    parser = _parser()
    if parser is None:
        return None
    parsed = parser.parse(pattern)
    if parsed.getwidth()[0] == 0:
        return _EMPTY_MATCH
    return _repetition_problem(parser, parsed)


def backtracking_problem(pattern: str) -> str | None:
    """What this valid regular expression must be, and is not, so that a search never stalls the process (the
    repetitions :class:`_RepetitionCheck` refuses), or None."""
    parser = _parser()
    return None if parser is None else _repetition_problem(parser, parser.parse(pattern))


def _repetition_problem(parser: Any, parsed: Any) -> str | None:
    check = _RepetitionCheck(parser)
    found = check.problem(parsed, parsed.state.flags)
    if found is None and check.repeats_share_a_run(parsed, parsed.state.flags):
        return _SHARED_RUN
    return found


def _parser() -> Any:
    """``re``'s parser, which also holds the opcodes (``sre_parse`` before Python 3.11), or None."""
    try:
        return importlib.import_module("re._parser" if sys.version_info >= (3, 11) else "sre_parse")
    except ImportError:
        return None


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
