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
from .pattern_checks import backtracking_problem, redact_pattern_problem

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


def _report_seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value < math.inf:
        # A report about a failing sink goes to that sink too, and fails there again: with no interval
        # between reports it would feed itself for ever.
        raise _bad(
            key, "a number of seconds of at least 1 (a report about a failing sink can fail again)", value
        )
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
    :func:`~activity_audit.pattern_checks.redact_pattern_problem` refuses (each is searched in every string of
    every record)."""
    patterns = _names(key, value)
    for pattern in patterns:
        _compiles(key, pattern, "a list of valid regular expressions")
        problem = redact_pattern_problem(pattern)
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


def _path_expression(key: str, pattern: str, expected: str) -> None:
    """A ``^`` expression of a path setting: valid, and never stalling a search (a client picks the path)."""
    _compiles(key, pattern, expected)
    problem = backtracking_problem(pattern)
    if problem is not None:
        raise _bad(key, problem, pattern)


def _path_patterns(key: str, value: Any) -> tuple[str, ...]:
    """URL path prefixes (``"/static/"``) or, starting with ``^``, regular expressions."""
    patterns = _names(key, value)
    for pattern in patterns:
        if pattern.startswith("^"):
            _path_expression(key, pattern, "a list of path prefixes or '^' regular expressions")
        elif not pattern.startswith("/"):
            expected = "a list of path prefixes starting with '/' or regular expressions starting with '^'"
            raise _bad(key, expected, pattern)
    return patterns


def _skip_paths(key: str, value: Any) -> tuple[str, ...]:
    """``SKIP_PATHS``: the forms of :mod:`activity_audit.paths`; a ``*`` only at the end, for a prefix."""
    patterns = _names(key, value)
    for pattern in patterns:
        if pattern.startswith("^"):
            _path_expression(key, pattern, "a list of paths or '^' regular expressions")
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
    "REPORT_INTERVAL": _report_seconds,
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
