"""Loud but bounded: how the pipeline tells people that something went wrong.

A failing sink or a full queue must be noticed (PCI DSS 10.7.2) without flooding stderr or the disk. Every
problem is counted; the first occurrence of a kind is reported at once, later ones are summed and reported
at most once per interval, on stderr and as a pipeline record that reaches every sink (so the trail of a
sink that works shows the failures of one that does not).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def where_it_failed(exc: BaseException) -> str:
    """``exc`` named by its type and the place it was raised (``ValueError in enrich (hooks.py:12)``),
    without its message: the message of an exception raised by code that read an unredacted record may
    quote a value from it (``invalid literal for int(): '<a PIN>'``), and reports are not redacted on
    stderr."""
    name = type(exc).__name__
    trace = exc.__traceback__
    if trace is None:
        return name
    while trace.tb_next is not None:
        trace = trace.tb_next
    code = trace.tb_frame.f_code
    return f"{name} in {code.co_name} ({os.path.basename(code.co_filename)}:{trace.tb_lineno})"


@dataclass
class _Tally:
    occurrences: int = 0
    lost: int = 0
    last_error: str = ""
    reported_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Reporter:
    """Counts problems per ``(kind, source)`` and reports them at most once per ``interval`` seconds.

    ``emit(kind, source, occurrences, lost, error, details)`` publishes a report; it must not raise.
    """

    def __init__(
        self, emit: Callable[[str, str, int, int, str, dict[str, Any]], None], interval: float
    ) -> None:
        self._emit = emit
        self.interval = interval
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self.totals: dict[tuple[str, str], int] = {}

    def problem(self, kind: str, source: str, lost: int = 0, error: str = "", **details: Any) -> None:
        """Count one occurrence; report now if this kind was not reported within the interval."""
        with self._lock:
            tally = self._tallies.setdefault((kind, source), _Tally())
            tally.occurrences += 1
            tally.lost += lost
            tally.last_error = error or tally.last_error
            tally.details.update(details)
            self.totals[(kind, source)] = self.totals.get((kind, source), 0) + lost
            due = tally.reported_at is None or time.monotonic() - tally.reported_at >= self.interval
        if due:
            self._publish(kind, source)

    def tick(self) -> None:
        """Publish every tally whose interval has passed; called by the worker on each cycle."""
        now = time.monotonic()
        with self._lock:
            due = [
                key
                for key, tally in self._tallies.items()
                if tally.occurrences
                and (tally.reported_at is None or now - tally.reported_at >= self.interval)
            ]
        for kind, source in due:
            self._publish(kind, source)

    def flush_all(self) -> None:
        """Publish every pending tally now, whatever the interval (at shutdown)."""
        with self._lock:
            pending = [key for key, tally in self._tallies.items() if tally.occurrences]
        for kind, source in pending:
            self._publish(kind, source)

    def _publish(self, kind: str, source: str) -> None:
        with self._lock:
            tally = self._tallies[(kind, source)]
            if not tally.occurrences:
                return
            occurrences, lost, error, details = (
                tally.occurrences,
                tally.lost,
                tally.last_error,
                dict(tally.details),
            )
            tally.occurrences, tally.lost, tally.reported_at = 0, 0, time.monotonic()
            tally.details.clear()
        self._emit(kind, source, occurrences, lost, error, details)


def write_stderr(text: str) -> None:
    """Write one line to stderr, never raising (stderr may be closed at exit)."""
    try:
        sys.stderr.write(f"activity_audit: {text}\n")
        sys.stderr.flush()
    except Exception:  # noqa: S110 - nothing sensible is left to report to
        pass
