"""Read and check one plugin's options (``ACTIVITY_AUDIT['PLUGINS'][name]``) with errors naming the setting.

A plugin builds a :class:`PluginOptions` in its ``audit_configure`` and asks it for typed values::

    options = PluginOptions.from_settings(settings, "s3", known=("bucket", "region"), secret=())
    bucket = options.text("bucket", required=True)

Every problem is :class:`~django.core.exceptions.ImproperlyConfigured` naming
``ACTIVITY_AUDIT['PLUGINS']['<name>']['<key>']``. An unknown key is an error too (with the nearest valid
name), and the value of a key listed in ``secret`` never appears in a message.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from .conf import MAX_SECONDS

if TYPE_CHECKING:
    from .conf import AuditSettings


class PluginOptions:
    """The options of one plugin, environment references already resolved."""

    def __init__(
        self, plugin: str, values: Mapping[str, Any], known: Iterable[str], secret: Iterable[str] = ()
    ) -> None:
        self.plugin = plugin
        self._values = dict(values)
        self._secret = frozenset(secret)
        known = tuple(known)
        for key in self._values:
            if key not in known:
                near = difflib.get_close_matches(str(key), known, n=1)
                listed = ", ".join(sorted(known))
                hint = f" Did you mean '{near[0]}'?" if near else f" Known options: {listed}."
                raise ImproperlyConfigured(f"{self.setting(key)} is not an option of this plugin.{hint}")

    @classmethod
    def from_settings(
        cls, settings: AuditSettings, plugin: str, known: Iterable[str], secret: Iterable[str] = ()
    ) -> PluginOptions:
        """Read ``ACTIVITY_AUDIT['PLUGINS'][plugin]``, resolving ``{"$env": "VAR"}`` values."""
        return cls(plugin, settings.plugin_config(plugin), known, secret)

    def setting(self, key: str) -> str:
        """How a user writes this option in settings.py, for messages."""
        return f"ACTIVITY_AUDIT['PLUGINS']['{self.plugin}']['{key}']"

    def error(self, key: str, problem: str) -> ImproperlyConfigured:
        """An error about ``key``: ``problem`` must not quote a secret value."""
        return ImproperlyConfigured(f"{self.setting(key)} {problem}")

    def __contains__(self, key: str) -> bool:
        return self._values.get(key) is not None

    def _shown(self, key: str) -> str:
        value = self._values.get(key)
        return "a secret value" if key in self._secret else repr(value)

    def _bad(self, key: str, expected: str) -> ImproperlyConfigured:
        return self.error(key, f"must be {expected}, got {self._shown(key)}.")

    # --- typed readers -----------------------------------------------------------------------------------
    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        """A non-empty string, or ``default`` when the option is absent (an error when ``required``)."""
        value = self._values.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required.")
            return default
        if not isinstance(value, str) or not value.strip():
            raise self._bad(key, "a non-empty string")
        return value

    def required_text(self, key: str) -> str:
        value = self.text(key, required=True)
        assert value is not None
        return value

    def integer(self, key: str, default: int, *, minimum: int = 1, maximum: int | None = None) -> int:
        """An integer from ``minimum`` to ``maximum`` (no bound when None), or ``default`` when absent."""
        value = self._values.get(key, default)
        wrong = isinstance(value, bool) or not isinstance(value, int) or value < minimum
        if maximum is not None and (wrong or value > maximum):
            raise self._bad(key, f"an integer from {minimum} to {maximum}")
        if wrong:
            raise self._bad(key, f"an integer of at least {minimum}")
        return int(value)

    def seconds(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        """A finite number of seconds from ``minimum`` to :data:`~activity_audit.conf.MAX_SECONDS`, or
        ``default`` when the option is absent.

        As the core's own settings: ``inf``, ``nan`` and waits longer than ``threading`` accepts are errors
        here, not an ``OverflowError`` or a busy loop on the plugin's thread later.
        """
        value = self._values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value < math.inf:
            raise self._bad(key, f"a number of seconds of at least {minimum:g}")
        if value > MAX_SECONDS:
            raise self._bad(key, f"at most {MAX_SECONDS} seconds (the longest wait Python supports)")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._values.get(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, "True or False")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        value = self._values.get(key, default)
        if value is not None and value not in choices:
            raise self._bad(key, "one of " + ", ".join(repr(choice) for choice in choices))
        return value

    def readable_file(self, key: str, *, required: bool = False) -> Path | None:
        """The path of a file this process can read, or None when the option is absent (an error when
        ``required``).

        Every problem (no such file, not readable, a value the system takes for no path: too long, a
        ``~user`` that does not exist) is an error naming the setting, raised from no other exception; the
        value of a secret option is not in it.
        """
        value = self._values.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required.")
            return None
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise self._bad(key, "a file path")
        path, problem = _file_problem(value)
        if problem is not None:
            raise self._file_error(key, path, problem)
        return path

    def text_or_readable_file(
        self, key: str, is_text: Callable[[str], bool], *, required: bool = False
    ) -> str | Path | None:
        """The option's string itself when ``is_text`` says it is content rather than a path (key material
        given inline or through ``{"$env": ...}``), else the path of a readable file (see
        :meth:`readable_file`); None when the option is absent and not ``required``."""
        value = self._values.get(key)
        if isinstance(value, str) and is_text(value):
            return value
        return self.readable_file(key, required=required)

    def _file_error(self, key: str, path: object, problem: str) -> ImproperlyConfigured:
        """``problem`` with a file option: after its path, or without it when the option is secret."""
        if key in self._secret:
            return self.error(key, f"{problem} (the value is secret, so not shown).")
        return self.error(key, f"= '{path}' {problem}.")


def _file_problem(value: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """``value`` as a path (``~`` expanded), and what keeps it from being a readable file: None when it is
    one. Never raises: an ``OSError`` the system gives for the path (a name too long) is a problem too."""
    try:
        path = Path(value).expanduser()
        if not path.is_file():
            return path, "is not a file"
        if not os.access(path, os.R_OK):
            return path, "is not readable by this process"
        return path, None
    except (OSError, RuntimeError) as exc:  # RuntimeError: the home directory of a "~user" is unknown
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).rstrip(".")
        return Path(value), f"cannot be used as a path: {reason}"
