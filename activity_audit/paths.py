"""``SKIP_PATHS``: which request paths get no record.

A pattern is one of:

- ``"/health"``: that path and what is below it as a path segment: ``/health``, ``/health/``,
  ``/health/live``, but not ``/healthcare/patients/7/`` nor ``/health-plans/``;
- ``"/static/"`` (ending in ``/``): what is below that directory: ``/static/app.css``;
- ``"/metrics*"`` (ending in ``*``): every path that starts with the text before the ``*``: ``/metrics``,
  ``/metrics-v2``, ``/metrics/cpu``;
- ``"^/api/v\\d+/ping$"`` (starting with ``^``): a regular expression matched at the start of the path.

``ACTIVITY_AUDIT['SKIP_PATHS']`` is checked against these forms at start-up (:mod:`activity_audit.conf`),
and compiled with :func:`path_test` then and whenever the settings change
(:func:`activity_audit.request_capture.current_rules`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

PathTest = Callable[[str], bool]


def path_test(patterns: tuple[str, ...]) -> PathTest:
    """A test telling whether a path matches one of ``patterns`` (see the module docstring).

    Built so that the usual case, a few plain patterns, costs one set lookup and one ``str.startswith``.
    """
    exact: set[str] = set()
    prefixes: list[str] = []
    expressions: list[str] = []
    for pattern in patterns:
        if pattern.startswith("^"):
            expressions.append(pattern)
        elif pattern.endswith("*"):
            prefixes.append(pattern[:-1])
        elif pattern.endswith("/"):
            prefixes.append(pattern)
        else:
            exact.add(pattern)
            prefixes.append(pattern + "/")
    return _combined(frozenset(exact), tuple(prefixes), expressions)


def _combined(exact: frozenset[str], prefixes: tuple[str, ...], expressions: list[str]) -> PathTest:
    if not expressions:
        return lambda path: path in exact or path.startswith(prefixes)
    matches = expressions_test(expressions)
    return lambda path: path in exact or path.startswith(prefixes) or matches(path)


def expressions_test(expressions: Iterable[str]) -> PathTest:
    """A test telling whether one of ``expressions`` matches at the start of a path.

    Each expression is compiled alone, so it matches exactly what it matches alone: its group names and
    numbers, back-references and inline flags are its own. Raises :class:`re.error` for one that does not
    compile.
    """
    matchers = tuple(re.compile(expression).match for expression in expressions)
    if len(matchers) == 1:
        (match,) = matchers
        return lambda path: match(path) is not None
    return lambda path: any(match(path) is not None for match in matchers)
