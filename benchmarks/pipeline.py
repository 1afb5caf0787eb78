"""What one audit record costs: our pipeline against the two obvious alternatives, measured in the same run.

    python benchmarks/pipeline.py [--records 20000] [--rounds 7]

(a) ``activity_audit``: a CRUD-shaped record (``new_record`` + a few fields) through ``emit_crud``, with the
    built-in plugins loaded as a real app loads them (redaction, JSON formatter, file sink), until it is
    written to ``audit.log``;
(b) what the original package described: stdlib ``logging`` + python-json-logger's ``JsonFormatter`` behind a
    ``QueueHandler`` / ``QueueListener`` writing a ``FileHandler``;
(c) the floor: ``orjson.dumps`` of the same dict and one buffered ``write`` per record, on the caller thread.

For each: records per second (whole process, until everything is written), CPU microseconds per record on the
caller thread (``time.thread_time`` around the submit loop) and for the whole process (``time.process_time``
from the first submit until the last record is written, every thread included). Rounds are interleaved
(a, b, c, a, b, c ...) so that a noisy neighbour hits all three alike; the table shows medians.
Targets: whole-process CPU of (a) at most 1/4 of (b), and at most 5x (c).
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LOG_DIR = Path(tempfile.mkdtemp(prefix="activity-audit-bench-"))


def setup_django() -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["activity_audit"],
        DATABASES={},
        USE_TZ=True,
        ACTIVITY_AUDIT={"LOG_DIR": str(LOG_DIR / "ours"), "LOAD_ENTRY_POINTS": False},
    )
    django.setup()


def fields(i: int) -> dict[str, Any]:
    """The fields of one CRUD record, as the signal capture builds them."""
    return {
        "event_type": "UPDATE",
        "model": "library.Book",
        "object_pk": i,
        "object_repr": f"Book #{i}",
        "actor": "user:42",
        "source": "request",
        "request_id": "9f1c2b7e5d8a4c3b",
        "changes": {
            "title": {"old": "Old title", "new": f"New title {i}"},
            "pages": {"old": 100, "new": 120},
        },
    }


@dataclass
class Sample:
    caller_cpu: float  # seconds of CPU on the caller thread
    process_cpu: float  # seconds of CPU of the whole process until written
    wall: float  # seconds until written


Variant = Callable[[int], Sample]


REDACTION = "activity_audit.plugins.redaction"


def ours(without: str | None = None) -> Variant:
    """Our pipeline; ``without`` names a built-in plugin left out for the round (to show what it costs)."""
    from activity_audit.dispatch import pipeline
    from activity_audit.emit import emit_crud
    from activity_audit.manager import get_plugin_manager
    from activity_audit.records import new_record

    def run(count: int) -> Sample:
        pm = get_plugin_manager()
        removed = pm.unregister(name=without) if without and pm.has_plugin(without) else None
        try:
            wall, process = time.perf_counter(), time.process_time()
            caller = time.thread_time()
            for i in range(count):
                emit_crud(new_record("AUDIT", "audit.crud", "Book updated", **fields(i)))
            caller = time.thread_time() - caller
            if not pipeline.flush(120.0):
                raise RuntimeError("the pipeline did not flush")
            return Sample(caller, time.process_time() - process, time.perf_counter() - wall)
        finally:
            if removed is not None:
                pm.register(removed, name=without)

    return run


def stdlib_queue_listener() -> Variant:
    from pythonjsonlogger.json import JsonFormatter

    records: queue.Queue[logging.LogRecord] = queue.Queue()
    handler = logging.FileHandler(LOG_DIR / "stdlib.log")
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    listener = logging.handlers.QueueListener(records, handler)
    listener.start()
    logger = logging.getLogger("bench.stdlib")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(logging.handlers.QueueHandler(records))

    def run(count: int) -> Sample:
        wall, process = time.perf_counter(), time.process_time()
        caller = time.thread_time()
        for i in range(count):
            logger.log(21, "Book updated", extra=fields(i))
        caller = time.thread_time() - caller
        records.join()  # the listener marks each record done after the FileHandler wrote it
        handler.flush()
        return Sample(caller, time.process_time() - process, time.perf_counter() - wall)

    return run


def raw_orjson() -> Variant:
    import orjson

    from activity_audit.records import new_record

    out = open(LOG_DIR / "raw.log", "ab")  # noqa: SIM115 - open for the whole run

    def run(count: int) -> Sample:
        wall, process = time.perf_counter(), time.process_time()
        caller = time.thread_time()
        for i in range(count):
            out.write(orjson.dumps(new_record("AUDIT", "audit.crud", "Book updated", **fields(i))) + b"\n")
        out.flush()
        caller = time.thread_time() - caller
        return Sample(caller, time.process_time() - process, time.perf_counter() - wall)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="records per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    options = parser.parse_args()
    setup_django()

    from activity_audit.manager import get_plugin_manager

    variants = {
        "(a) activity_audit pipeline -> file sink": ours(),
        "(b) logging + json-logger + QueueListener": stdlib_queue_listener(),
        "(c) orjson.dumps + buffered write": raw_orjson(),
    }
    if get_plugin_manager().has_plugin(REDACTION):
        variants["(a') as (a), redaction plugin left out"] = ours(without=REDACTION)
    for run in variants.values():  # warm up: imports, first file open, caches
        run(2_000)
    samples: dict[str, list[Sample]] = {name: [] for name in variants}
    for _ in range(options.rounds):
        for name, run in variants.items():
            samples[name].append(run(options.records))

    count = options.records
    rows = []
    for name, taken in samples.items():
        caller = statistics.median(s.caller_cpu for s in taken) / count * 1e6
        process = statistics.median(s.process_cpu for s in taken) / count * 1e6
        rate = count / statistics.median(s.wall for s in taken)
        rows.append((name, rate, caller, process))
    print(
        f"\n{count} records x {options.rounds} interleaved rounds, medians; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs\n"
    )
    header = f"{'variant':<44} {'records/s':>10} {'caller µs/rec':>14} {'process µs/rec':>15}"
    print(header)
    print("-" * len(header))
    for name, rate, caller, process in rows:
        print(f"{name:<44} {rate:>10,.0f} {caller:>14.2f} {process:>15.2f}")
    ours_cpu, stdlib_cpu, raw_cpu = (row[3] for row in rows[:3])
    print()
    verdict = "PASS" if ours_cpu * 4 <= stdlib_cpu else "MISS"
    print(f"(a)/(b) whole-process CPU: {ours_cpu / stdlib_cpu:.3f}  (target <= 0.25)  {verdict}")
    verdict = "PASS" if ours_cpu <= raw_cpu * 5 else "MISS"
    print(f"(a)/(c) whole-process CPU: {ours_cpu / raw_cpu:.2f}   (target <= 5)     {verdict}")
    print(f"(a)/(b) caller-thread CPU: {rows[0][2] / rows[1][2]:.3f}")


if __name__ == "__main__":
    main()
