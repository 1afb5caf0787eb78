"""Capture audit records in memory in your own tests.

With pytest the ``audit_records`` fixture is available once the package is installed (CRUD records are
emitted when the transaction commits, hence ``transaction=True``)::

    @pytest.mark.django_db(transaction=True)
    def test_rename(audit_records):
        book.title = "New"
        book.save()
        assert audit_records.of("audit.crud")[-1]["changes"] == {"title": {"old": "Old", "new": "New"}}

Anywhere else use :func:`capture_audit` as a context manager. Captured records are the parsed JSON lines
exactly as the sinks receive them: redacted, formatted, with their envelope. Reading ``records`` (or calling
:meth:`CapturedRecords.flush`) first waits until everything submitted so far went through the pipeline.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from .dispatch import pipeline
from .markers import hookimpl
from .records import PIPELINE_LOGGER, Entry

_ids = itertools.count(1)


class CapturedRecords:
    """The records that reached the sinks while the capture was active, in the order they arrived."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[Entry] = []

    @hookimpl
    def sink(self, records: Sequence[Entry]) -> None:
        with self._lock:
            self._entries.extend(records)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything submitted so far reached this capture; fail loudly if it does not."""
        if not pipeline.flush(timeout):
            raise AssertionError(f"the audit pipeline did not flush within {timeout}s")

    @property
    def entries(self) -> list[Entry]:
        self.flush()
        with self._lock:
            return list(self._entries)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every captured record except the pipeline's own events, parsed from its JSON line."""
        return [orjson.loads(e.line) for e in self.entries if e.record.get("name") != PIPELINE_LOGGER]

    @property
    def all_records(self) -> list[dict[str, Any]]:
        """Every captured record, the pipeline's own events included."""
        return [orjson.loads(entry.line) for entry in self.entries]

    def of(self, name: str, **matching: Any) -> list[dict[str, Any]]:
        """Records of logger ``name`` (``audit.crud``, ``audit.request`` ...) matching ``matching``."""
        return [
            record
            for record in self.all_records
            if record.get("name") == name and all(record.get(key) == value for key, value in matching.items())
        ]

    def clear(self) -> None:
        self.flush()
        with self._lock:
            self._entries.clear()


@contextmanager
def capture_audit() -> Iterator[CapturedRecords]:
    """Register an in-memory sink for the duration of the block (records submitted before it are not caught).

    The sink stays registered when ``ACTIVITY_AUDIT`` is overridden inside the block.
    """
    captured = CapturedRecords()
    with registered_plugin(captured, name=f"activity_audit.testing.capture-{next(_ids)}"):
        yield captured


@contextmanager
def registered_plugin(plugin: object, name: str) -> Iterator[object]:
    """Register ``plugin`` (a module, class instance or namespace of ``@hookimpl`` functions) for the block.

    Records submitted before the block are delivered first, so the plugin sees only what happens inside it;
    on exit everything submitted inside the block is delivered before the plugin is removed. The plugin is
    called before every other (it is registered last) and survives reloads caused by ``override_settings``.
    """
    from .manager import register_plugin, unregister_plugin

    pipeline.flush(10.0)
    register_plugin(plugin, name)
    try:
        yield plugin
    finally:
        pipeline.flush(10.0)
        unregister_plugin(name)


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional for users
    pass
else:

    @pytest.fixture
    def audit_records() -> Iterator[CapturedRecords]:
        """Records written while the test runs (see :func:`capture_audit`)."""
        with capture_audit() as captured:
            yield captured
