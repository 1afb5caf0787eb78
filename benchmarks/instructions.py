"""Instructions per operation, counted by valgrind's callgrind: a figure the machine's load cannot move.

    python benchmarks/instructions.py [--ops 100] [--only crud|pipeline]

The timed benchmarks (``crud.py``, ``pipeline.py``) are the targets' measure, but on a shared machine their
medians move by tens of percent from one run to the next. Callgrind counts the instructions a process
executes, the same on every run of the same code, whatever else the machine does; it cannot see time spent
waiting (for the GIL, a lock, the disk) nor what a cache miss costs, so read these figures beside the timed
ones, not instead of them.

Each figure is the difference between two runs of a child process that differ only in the number of measured
operations (``--ops`` more in the second), divided by ``--ops``: start-up, imports and warm-up cancel out.
Threads are counted apart (``--separate-threads=yes``): "caller" is the thread that does the operations,
"all" adds the pipeline's worker and sink threads, which write every record before the child exits.

- CRUD on SQLite (file, WAL), the operations of ``crud.py``: auditing off against activity_audit;
- the pipeline, the three variants of ``pipeline.py``, per record: (a) ours, (b) stdlib logging with
  python-json-logger behind a ``QueueListener``, (c) ``orjson.dumps`` and a buffered write.

Needs ``valgrind`` (Debian: ``apt-get install valgrind``). Takes about six minutes on two cores: Python runs
about 50 times slower under callgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 50
CRUD_OPERATIONS = ("create", "update", "delete")
CRUD_VARIANTS = ("off", "ours")
PIPELINE_VARIANTS = {
    "a": "(a) activity_audit pipeline",
    "b": "(b) logging + QueueListener",
    "c": "(c) orjson + write",
}


# --- child: the measured work ----------------------------------------------------------------------------


def child_crud(variant: str, operation: str, count: int, ops: int) -> None:
    """``count`` of ``operation`` on the ``variant`` model, after the same set-up whatever ``count`` is."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import crud

    workdir = Path(tempfile.mkdtemp(prefix="activity-audit-instructions-"))
    settings = crud.database_settings("sqlite", workdir)
    assert settings is not None
    crud.configure_django(settings, workdir)
    from activity_audit.dispatch import pipeline
    from benchmarks.crud_app.models import Author, BookOff, BookOurs

    model = {"off": BookOff, "ours": BookOurs}[variant]
    author = Author.objects.create(name="Ursula")
    crud.delete_rows(model, crud.create_rows(model, author, WARM_UP))  # every code path runs once first
    # The rows an UPDATE or DELETE works on exist in both runs; only the operations counted differ.
    pks = crud.create_rows(model, author, ops) if operation != "create" else []
    pipeline.flush(600)
    if operation == "create":
        crud.create_rows(model, author, count)
    else:
        crud.PHASES[operation](model, pks[:count])
    if not pipeline.flush(600):
        raise SystemExit("the audit pipeline did not flush")


def child_pipeline(variant: str, count: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pipeline as bench

    bench.setup_django()
    run = {"a": bench.ours, "b": bench.stdlib_queue_listener, "c": bench.raw_orjson}[variant]()
    run(WARM_UP)
    run(count)


# --- parent: run the children under callgrind ------------------------------------------------------------


def instructions(child_args: list[str]) -> tuple[int, int]:
    """(main thread, all threads) instructions of one child run."""
    out_dir = Path(tempfile.mkdtemp(prefix="callgrind-"))
    try:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out_dir}/callgrind.out",
            sys.executable,
            __file__,
            "--child",
            *child_args,
        ]
        environment = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every run
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=environment)
        if done.returncode != 0:
            raise SystemExit(f"child {child_args} failed:\n{done.stderr[-3000:]}")
        per_thread = {path.name: _total(path) for path in out_dir.glob("callgrind.out*")}
        main = per_thread.get("callgrind.out-01")
        if main is None:
            raise SystemExit(f"no callgrind output for the main thread in {sorted(per_thread)}")
        return main, sum(per_thread.values())
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def _total(path: Path) -> int:
    match = re.search(r"^(?:totals|summary): (\d+)", path.read_text(errors="replace"), re.MULTILINE)
    return int(match.group(1)) if match else 0


def per_operation(child_args: list[str], ops: int) -> tuple[float, float]:
    """(caller, all threads) instructions per operation: the second run does ``ops`` operations more."""
    with ThreadPoolExecutor(max_workers=2) as pool:  # the two runs on the machine's two cores
        small, large = pool.map(instructions, [[*child_args, "0"], [*child_args, str(ops)]])
    return (large[0] - small[0]) / ops, (large[1] - small[1]) / ops


def report_crud(ops: int) -> None:
    print(f"\nCRUD on SQLite, instructions per operation ({ops} operations, thousands)")
    header = f"{'operation':<10}{'off caller':>12}{'ours caller':>13}{'ratio':>8}"
    print(header + f"{'off all':>10}{'ours all':>10}{'ratio':>8}")
    for operation in CRUD_OPERATIONS:
        off, ours = (per_operation(["crud", v, operation, str(ops)], ops) for v in CRUD_VARIANTS)
        print(
            f"{operation:<10}{off[0] / 1e3:>12.1f}{ours[0] / 1e3:>13.1f}{ours[0] / off[0]:>7.3f}x"
            f"{off[1] / 1e3:>10.1f}{ours[1] / 1e3:>10.1f}{ours[1] / off[1]:>7.3f}x"
        )


def report_pipeline(ops: int) -> None:
    records = ops * 20
    print(f"\nPipeline, instructions per record ({records} records, all threads, thousands)")
    figures = {}
    for variant, name in PIPELINE_VARIANTS.items():
        figures[variant] = per_operation(["pipeline", variant], records)[1]
        print(f"{name:<32}{figures[variant] / 1e3:>10.2f}")
    print(f"(a)/(b): {figures['a'] / figures['b']:.3f}   (a)/(c): {figures['a'] / figures['c']:.2f}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind == "crud":
            variant, operation, ops, count = rest
            child_crud(variant, operation, int(count), int(ops))
        else:
            variant, count = rest
            child_pipeline(variant, int(count))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=100, help="operations counted per figure (default 100)")
    parser.add_argument("--only", choices=("crud", "pipeline"))
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    print(f"Python {sys.version.split()[0]}; instruction counts from valgrind --tool=callgrind")
    if options.only in (None, "crud"):
        report_crud(options.ops)
    if options.only in (None, "pipeline"):
        report_pipeline(options.ops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
