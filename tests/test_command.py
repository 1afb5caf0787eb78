"""``manage.py audit plugins`` and ``manage.py audit verify FILE...``."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from activity_audit.manager import BUILTIN_PLUGINS
from activity_audit.verify import OPEN_ADVICE
from tests.plugins.distributions import TRAIL_PLUGIN, Distributions, installed_distributions

ROOT = Path(__file__).resolve().parent.parent
KNOWN_BUILTINS = ("activity_audit.plugins.json_formatter", "activity_audit.plugins.file_sink")


@pytest.fixture
def distributions(tmp_path: Path) -> Iterator[Distributions]:
    with installed_distributions(tmp_path) as installed:
        yield installed


def run(*args: str) -> str:
    out = StringIO()
    call_command("audit", *args, stdout=out)
    return out.getvalue()


def test_plugins_lists_what_is_loaded_in_call_order_with_hooks(distributions: Distributions) -> None:
    distributions.add("ep-trail", TRAIL_PLUGIN)
    installed = {ep.name for ep in entry_points(group="activity_audit")} - {"ep-trail"}  # contrib sinks
    others = [name for name in BUILTIN_PLUGINS if name not in KNOWN_BUILTINS] + sorted(installed)
    audit = {
        **settings.ACTIVITY_AUDIT,
        "HOOKS_MODULES": ["tests.plugins.hooks_first", "tests.plugins.hooks_second"],
        "DISABLED_PLUGINS": others,
    }
    with override_settings(ACTIVITY_AUDIT=audit):
        assert run("plugins") == (
            "1. tests.plugins.hooks_second (hooks module)\n"
            "     hooks: redact\n"
            "2. tests.plugins.hooks_first (hooks module)\n"
            "     hooks: redact\n"
            "3. ep-trail (entry point of aa_tests_plugin 0.1)\n"
            "     hooks: redact\n"
            "4. activity_audit.plugins.file_sink (built-in)\n"
            "     hooks: audit_after_fork, audit_configure, audit_shutdown, sink\n"
            "5. activity_audit.plugins.json_formatter (built-in)\n"
            "     hooks: audit_configure, format_record\n"
            "call order of each hook with several implementations:\n"
            "  audit_configure: activity_audit.plugins.file_sink, activity_audit.plugins.json_formatter\n"
            "  redact: tests.plugins.hooks_second, tests.plugins.hooks_first, ep-trail\n"
        )


def test_plugins_shows_where_tryfirst_and_trylast_change_a_hooks_call_order() -> None:
    from activity_audit import hookimpl
    from activity_audit.testing import registered_plugin

    class Last:
        @hookimpl(trylast=True)
        def redact(self, record: dict[str, Any]) -> None:
            pass

    audit = {**settings.ACTIVITY_AUDIT, "HOOKS_MODULES": [], "LOAD_ENTRY_POINTS": False}
    with override_settings(ACTIVITY_AUDIT=audit), registered_plugin(Last(), name="tests.last"):
        listed = run("plugins")
    # Registered last, so listed first; but it runs last on redact, after the built-ins.
    assert listed.startswith("1. tests.last (registered at run time)\n     hooks: redact\n")
    assert (
        "  redact: activity_audit.plugins.deferred_values (tryfirst), activity_audit.plugins.redaction, "
        "tests.last (trylast)\n"
    ) in listed


def test_a_subcommand_is_required() -> None:
    with pytest.raises(CommandError, match="subcommand"):
        run()


# --- verify -------------------------------------------------------------------------------------------

STREAM = "2b1f3c9e-0000-4000-8000-000000000001"
OTHER = "2b1f3c9e-0000-4000-8000-000000000002"


def line(stream: str, seq: int, **fields: Any) -> str:
    return json.dumps({"stream_id": stream, "seq": seq, "event_id": f"{stream[:-3]}{seq:03d}", **fields})


def write(path: Path, *lines: str, end: str = "\n") -> str:
    path.write_text("\n".join(lines) + end)
    return str(path)


def stopped(stream: str, seq: int) -> str:
    return line(stream, seq, event_type="PIPELINE_STOPPED")


def test_verify_accepts_a_complete_trail_spread_over_files(tmp_path: Path) -> None:
    audit = write(tmp_path / "audit.log", line(STREAM, 1), line(STREAM, 3), stopped(STREAM, 5))
    api = write(tmp_path / "api.log", line(STREAM, 4), line(STREAM, 2), line(OTHER, 1))
    assert run("verify", audit, api) == (
        f"stream {STREAM}: 5 records, seq 1..5, 0 missing, 0 repeated, 0 declared dropped, stopped\n"
        f"stream {OTHER}: 1 records, seq 1..1, 0 missing, 0 repeated, 0 declared dropped, "
        "open (still running, or killed)\n"
        "unreadable lines: 0\n"
        f"warning: 1 open stream(s): records after the last one found cannot be checked{OPEN_ADVICE}\n"
        "OK\n"
    )


def test_verify_reads_files_rotated_and_compressed_by_logrotate(tmp_path: Path) -> None:
    rotated = tmp_path / "audit.log.1.gz"
    rotated.write_bytes(gzip.compress(f"{line(STREAM, 1)}\n{line(STREAM, 2)}\n".encode()))
    current = write(tmp_path / "audit.log", line(STREAM, 3), stopped(STREAM, 4))
    assert run("verify", str(rotated), current) == (
        f"stream {STREAM}: 4 records, seq 1..4, 0 missing, 0 repeated, 0 declared dropped, stopped\n"
        "unreadable lines: 0\n"
        "OK\n"
    )


def test_verify_of_a_live_trail_looks_again_for_what_was_written_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from activity_audit import verify

    api = write(tmp_path / "api.log", line(STREAM, 1))
    app = write(tmp_path / "app.log", line(STREAM, 3))  # seq 2 reaches api.log only after it was read
    first_reading = verify._lines_of

    def lines_of(paths: list[str]) -> Iterator[bytes]:
        yield from first_reading(paths)
        if not (tmp_path / "late").exists():
            (tmp_path / "late").touch()
            with open(api, "a") as late:
                late.write(line(STREAM, 2) + "\n")

    monkeypatch.setattr(verify, "_lines_of", lines_of)
    assert run("verify", api, app) == (
        f"stream {STREAM}: 3 records, seq 1..3, 0 missing, 0 repeated, 0 declared dropped, "
        "open (still running, or killed)\n"
        "unreadable lines: 0\n"
        f"warning: 1 open stream(s): records after the last one found cannot be checked{OPEN_ADVICE}\n"
        "OK\n"
    )


def verify_failure(*files: str) -> str:
    out = StringIO()
    with pytest.raises(CommandError) as error:
        call_command("audit", "verify", *files, stdout=out)
    assert str(error.value) == "the audit trail has gaps, duplicates or unreadable lines"
    return out.getvalue()


def test_verify_reports_a_gap(tmp_path: Path) -> None:
    path = write(tmp_path / "audit.log", *(line(STREAM, n) for n in (1, 2, 5, 6, 9)), stopped(STREAM, 10))
    assert verify_failure(path) == (
        f"stream {STREAM}: 6 records, seq 1..10, 4 missing, 0 repeated, 0 declared dropped, stopped\n"
        "  missing seq: 3-4, 7-8\n"
        "unreadable lines: 0\n"
        "FAILED\n"
    )


def test_verify_reports_a_duplicate(tmp_path: Path) -> None:
    path = write(
        tmp_path / "audit.log", line(STREAM, 1), line(STREAM, 2), line(STREAM, 2), stopped(STREAM, 3)
    )
    assert verify_failure(path) == (
        f"stream {STREAM}: 4 records, seq 1..3, 0 missing, 1 repeated, 0 declared dropped, stopped\n"
        "  repeated seq: 2\n"
        "unreadable lines: 0\n"
        "FAILED\n"
    )


def test_verify_reports_a_torn_line(tmp_path: Path) -> None:
    torn = line(STREAM, 3)[:25]
    path = write(tmp_path / "audit.log", line(STREAM, 1), line(STREAM, 2), torn, end="")
    assert verify_failure(path) == (
        f"stream {STREAM}: 2 records, seq 1..2, 0 missing, 0 repeated, 0 declared dropped, "
        "open (still running, or killed)\n"
        "unreadable lines: 1\n"
        f"warning: 1 open stream(s): records after the last one found cannot be checked{OPEN_ADVICE}\n"
        "FAILED\n"
    )


def test_verify_counts_declared_drops(tmp_path: Path) -> None:
    drops = line(STREAM, 5, event_type="RECORDS_DROPPED", count=2, first_seq=3, last_seq=4)
    path = write(tmp_path / "audit.log", line(STREAM, 1), line(STREAM, 2), drops, stopped(STREAM, 6))
    assert verify_failure(path) == (
        f"stream {STREAM}: 4 records, seq 1..6, 2 missing, 0 repeated, 2 declared dropped, stopped\n"
        "  missing seq: 3-4\n"
        "unreadable lines: 0\n"
        "FAILED\n"
    )


def test_verify_accepts_the_files_a_real_process_wrote(tmp_path: Path) -> None:
    program = (
        "import django; django.setup()\n"
        "import logging\n"
        "from activity_audit.emit import emit_crud, emit_request\n"
        "from activity_audit.records import new_record\n"
        "for i in range(300):\n"
        "    emit_crud(new_record('AUDIT', 'audit.crud', f'change {i}'))\n"
        "    emit_request(new_record('API', 'audit.request', f'request {i}'))\n"
    )
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "AUDIT_TEST_LOG_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = run("verify", str(tmp_path / "audit.log"), str(tmp_path / "api.log")).splitlines()
    assert report[0].endswith(": 602 records, seq 1..602, 0 missing, 0 repeated, 0 declared dropped, stopped")
    assert report[1:] == ["unreadable lines: 0", "OK"]
