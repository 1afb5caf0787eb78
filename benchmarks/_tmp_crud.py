"""CRUD capture cost: create, update (2 fields) and delete with auditing off, with activity_audit, and with
django-auditlog, interleaved in one run, on SQLite (file, WAL) and PostgreSQL.

    python benchmarks/crud.py                 # both backends (PostgreSQL skipped if unreachable)
    python benchmarks/crud.py --rounds 15 --ops 300 --backend sqlite

Each backend runs in a child process of its own (Django is configured once per process). In every round
the three variants run in a shuffled order; each variant creates ``--ops`` rows, then updates two fields of
each (``get`` + change + ``save()``), then deletes each (``get`` + ``delete()``), all in autocommit. The
table shows the median time per operation over the rounds and the ratio to "off".

"ours" is the wall-clock time on the caller thread (what a request pays, including waits for the GIL while
the pipeline's threads format and write records); "ours+write" adds the time the pipeline then needs to hand
the rest of the records to the file sink (``flush()``), measured right after each phase. "caller CPU" is
the CPU time of the calling thread alone (``time.thread_time()``): the capture's own cost, without the
database server's time and without GIL waits. At the end the records are counted: activity_audit's
``audit.log`` lines and django-auditlog's ``LogEntry`` rows must hold one entry per operation, or the run
fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("off", "ours", "auditlog")
OPERATIONS = ("create", "update", "delete")
TARGETS = {"sqlite": 1.15, "postgres": 1.05}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--ops", type=int, default=60, help="rows per phase and round")
    parser.add_argument(
        "--disable-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="run with this activity_audit plugin disabled (to see what it costs)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_backend(args.backend, args.rounds, args.ops, args.disable_plugin)))
        return 0
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    failed = False
    for backend in backends:
        command = [sys.executable, __file__, "--child", "--backend", backend]
        command += ["--rounds", str(args.rounds), "--ops", str(args.ops)]
        for name in args.disable_plugin:
            command += ["--disable-plugin", name]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        sys.stderr.write(done.stderr[-3000:])
        if done.returncode != 0:
            failed = True
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if result.get("skipped"):
            print(f"\n{backend}: skipped ({result['skipped']})")
            continue
        print_table(backend, result, args)
        failed |= not result["complete"]
    return 1 if failed else 0


def print_table(backend: str, result: dict[str, Any], args: argparse.Namespace) -> None:
    medians = result["medians"]
    print(f"\n{backend}: {result['description']}; {args.rounds} rounds x {args.ops} ops")
    print("median microseconds per operation; ratios to 'off'")
    header = f"{'operation':<10}{'off':>9}{'ours':>9}{'ratio':>8}{'ours+write':>12}{'ratio':>8}"
    header += f"{'auditlog':>10}{'ratio':>8}   {'caller CPU: off':>15}{'ours':>8}{'ratio':>8}"
    header += f"{'auditlog':>10}{'ratio':>8}"
    print(header)
    for operation in OPERATIONS:
        off = medians["off"][operation]
        ours = medians["ours"][operation]
        written = medians["ours+write"][operation]
        auditlog = medians["auditlog"][operation]
        cpu_off = medians["off cpu"][operation]
        cpu_ours = medians["ours cpu"][operation]
        cpu_auditlog = medians["auditlog cpu"][operation]
        print(
            f"{operation:<10}{off:>9.1f}{ours:>9.1f}{ours / off:>7.3f}x{written:>12.1f}{written / off:>7.3f}x"
            f"{auditlog:>10.1f}{auditlog / off:>7.2f}x   "
            f"{cpu_off:>15.1f}{cpu_ours:>8.1f}{cpu_ours / cpu_off:>7.3f}x"
            f"{cpu_auditlog:>10.1f}{cpu_auditlog / cpu_off:>7.2f}x"
        )
    print(f"target for 'ours': at most {TARGETS[backend]:.2f}x 'off'")
    counts = result["counts"]
    print(
        f"records: activity_audit wrote {counts['ours_written']} of {counts['ours_expected']} expected, "
        f"django-auditlog {counts['auditlog_written']} of {counts['auditlog_expected']}"
        + ("" if result["complete"] else "  <-- INCOMPLETE")
    )


# --- child process -----------------------------------------------------------------------------------------


def run_backend(backend: str, rounds: int, ops: int, disabled: list[str]) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"activity-audit-bench-{backend}-"))
    database = database_settings(backend, workdir)
    if database is None:
        return {"skipped": "PostgreSQL is not reachable on 127.0.0.1:5432"}
    configure_django(database, workdir, disabled)
    try:
        return measure(backend, rounds, ops, workdir)
    finally:
        if backend == "postgres":
            drop_postgres_database(database["NAME"])


def database_settings(backend: str, workdir: Path) -> dict[str, Any] | None:
    if backend == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(workdir / "bench.sqlite3")}
    try:
        import psycopg

        name = f"activity_audit_bench_{os.getpid()}"
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except Exception:
        return None
    return {"ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1", "USER": "postgres", "NAME": name}


def drop_postgres_database(name: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def configure_django(database: dict[str, Any], workdir: Path, disabled: list[str] | None = None) -> None:
    sys.path.insert(0, str(ROOT))
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        SECRET_KEY="benchmark-only",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "auditlog",
            "activity_audit",
            "benchmarks.crud_app.apps.CrudBenchConfig",
        ],
        DATABASES={"default": database},
        ACTIVITY_AUDIT={
            "LOG_DIR": str(workdir / "audit_logs"),
            "SERVICE_NAME": "bench",
            "INCLUDE_MODELS": ["crud_bench.BookOurs"],
            "HANDLE_SIGTERM": False, **json.loads(os.environ.get("BENCH_AUDIT", "{}")),
            "DISABLED_PLUGINS": list(disabled or []),
        },
    )
    from django.db.backends.signals import connection_created

    def sqlite_wal(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")

    connection_created.connect(sqlite_wal, weak=False)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)


def measure(backend: str, rounds: int, ops: int, workdir: Path) -> dict[str, Any]:
    from auditlog.models import LogEntry
    from django.db import connection

    from activity_audit.dispatch import pipeline
    from benchmarks.crud_app.models import Author, BookAuditlog, BookOff, BookOurs

    models = {"off": BookOff, "ours": BookOurs, "auditlog": BookAuditlog}
    author = Author.objects.create(name="Ursula")
    samples: dict[str, dict[str, list[float]]] = {
        variant: {operation: [] for operation in OPERATIONS}
        for variant in (*VARIANTS, "ours+write", *(f"{name} cpu" for name in VARIANTS))
    }
    shuffler = random.Random(20261128)
    run_round(models, author, max(ops // 4, 10), pipeline)  # warm-up, not counted
    pipeline.flush(30)
    log_entries_before = LogEntry.objects.count()
    audit_log = workdir / "audit_logs" / "audit.log"
    lines_before = count_lines(audit_log)
    for _ in range(rounds):
        order = list(VARIANTS)
        shuffler.shuffle(order)
        for variant in order:
            timings = run_phases(models[variant], author, ops, pipeline if variant == "ours" else None)
            for operation in OPERATIONS:
                caller, flushed, cpu = timings[operation]
                samples[variant][operation].append(caller / ops * 1e6)
                samples[f"{variant} cpu"][operation].append(cpu / ops * 1e6)
                if variant == "ours":
                    samples["ours+write"][operation].append((caller + flushed) / ops * 1e6)
    pipeline.flush(60)
    sys.stderr.write("\n".join(f"{k}: {v*1e6/(rounds*ops) if isinstance(k[1], int) else v}" for k, v in sorted(GCACC.items(), key=str)) + "\n")
    ours_written = count_lines(audit_log) - lines_before
    auditlog_written = LogEntry.objects.count() - log_entries_before
    expected = rounds * ops * len(OPERATIONS)
    medians = {
        variant: {operation: statistics.median(values) for operation, values in by_op.items()}
        for variant, by_op in samples.items()
    }
    description = f"Django {__import__('django').get_version()} on {connection.vendor}"
    if backend == "sqlite":
        description += " (file, WAL, synchronous=NORMAL)"
    return {
        "description": description,
        "medians": medians,
        "counts": {
            "ours_written": ours_written,
            "ours_expected": expected,
            "auditlog_written": auditlog_written,
            "auditlog_expected": expected,
        },
        "complete": ours_written == expected and auditlog_written == expected,
    }


def run_round(models: dict[str, Any], author: Any, ops: int, pipeline: Any) -> None:
    for variant, model in models.items():
        run_phases(model, author, ops, pipeline if variant == "ours" else None)


import gc, threading, collections
GCACC = collections.Counter(); _gcst = {}
def _gccb(phase, info):
    if threading.current_thread() is not threading.main_thread(): return
    if phase == "start": _gcst["t"] = time.thread_time()
    else:
        GCACC[(_gcst.get("k"), info["generation"])] += time.thread_time() - _gcst["t"]
        GCACC[(_gcst.get("k"), "n%d" % info["generation"])] += 1
gc.callbacks.append(_gccb)
def run_phases(model: Any, author: Any, ops: int, pipeline: Any) -> dict[str, tuple[float, float, float]]:
    """Create, update and delete ``ops`` rows; per phase: (caller seconds, seconds to flush the records,
    CPU seconds of the caller thread)."""
    timings: dict[str, tuple[float, float, float]] = {}
    pks: list[int] = []
    for operation in OPERATIONS:
        _gcst["k"] = (model.__name__, operation)
        start, cpu = time.perf_counter(), time.thread_time()
        if operation == "create":
            pks = create_rows(model, author, ops)
        else:
            PHASES[operation](model, pks)
        timings[operation] = (time.perf_counter() - start, flush_time(pipeline), time.thread_time() - cpu)
        _gcst["k"] = None
    return timings


def create_rows(model: Any, author: Any, count: int) -> list[int]:
    """The measured CREATE: ``count`` rows of about ten mixed fields and an FK; returns their pks."""
    published = dt.date(2024, 5, 1)
    pks = []
    for index in range(count):
        book = model.objects.create(
            title=f"Book {index}",
            summary="A book about benchmarks.",
            pages=100 + index,
            price=decimal.Decimal("19.99"),
            rating=4.5,
            published=published,
            metadata={"edition": 1, "languages": ["en"]},
            author=author,
        )
        pks.append(book.pk)
    return pks


def update_rows(model: Any, pks: list[int]) -> None:
    """The measured UPDATE: load each row, change two fields, ``save()``."""
    for pk in pks:
        book = model.objects.get(pk=pk)
        book.pages += 1
        book.price = decimal.Decimal("17.50")
        book.save()


def delete_rows(model: Any, pks: list[int]) -> None:
    """The measured DELETE: load each row and ``delete()`` it."""
    for pk in pks:
        model.objects.get(pk=pk).delete()


PHASES = {"update": update_rows, "delete": delete_rows}


def flush_time(pipeline: Any) -> float:
    """Seconds until everything submitted so far reached the sinks (0 when auditing is not involved)."""
    if pipeline is None:
        return 0.0
    start = time.perf_counter()
    if not pipeline.flush(60):
        raise RuntimeError("the audit pipeline did not flush within 60 s")
    return time.perf_counter() - start


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            if b'"name":"audit.crud"' in line and b'"crud_bench.BookOurs"' in line:
                count += 1
    return count


if __name__ == "__main__":
    sys.exit(main())
