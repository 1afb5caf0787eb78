"""The original package's ``LOGGING`` block, pasted with only the import changed, works in a Django process.

Each test writes a settings module and a small program into ``tmp_path`` and runs it in a subprocess, so the
project's ``LOGGING`` is configured by Django itself, exactly as in production, and the pipeline is drained by
the process's normal exit.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from activity_audit import API, AUDIT

ROOT = Path(__file__).resolve().parent.parent

# Verbatim from the original package's description; only the module name of the import differs.
SEED_LOGGING = """\
from activity_audit import *

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": get_json_formatter(),
        "verbose": get_console_formatter(),
        "api_json": get_api_file_formatter(),
    },
    "handlers": {
        "console": {
            "level": "DEBUG",
            "class": "logging.StreamHandler",
            "formatter": "verbose",
        },
        "file": get_json_handler(level="DEBUG", formatter="json"),
        "api_file": get_api_file_handler(formatter="api_json"),
    },
    "root": {"level": "DEBUG", "handlers": ["console", "file"]},
    "loggers": {
        "audit.request": {
            "handlers": ["api_file"],
            "level": "API",
            "propagate": False,
        },
        "django": {
            "handlers": ["console", "file"],
            "level": "INFO",
            "propagate": False,
        },
    }
}
"""

# A project that wants little logging: root at WARNING, the audit loggers cut off with propagate False.
QUIET_LOGGING = """\
from activity_audit import *

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": get_json_formatter()},
    "handlers": {"file": get_json_handler(level="DEBUG", formatter="json")},
    "root": {"level": "WARNING", "handlers": ["file"]},
    "loggers": {
        "audit": {"handlers": [], "level": "CRITICAL", "propagate": False},
        "audit.crud": {"handlers": [], "level": "CRITICAL", "propagate": False},
        "audit.request": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}
"""

PROGRAM = """\
import logging

import django

django.setup()

from activity_audit.emit import emit_crud, emit_request
from activity_audit.records import new_record

log = logging.getLogger("shop.orders")
payload = {"items": [1, 2]}
log.info("order %s created", 42, extra={"payload": payload, "order_id": 42})
payload["items"].append(3)
try:
    1 / 0
except ZeroDivisionError:
    log.exception("payment failed")
logging.getLogger("django.request").warning("django says %s", "hi")
log.log(logging.getLevelName("AUDIT"), "audit level by name")
logging.getLogger("audit.request").log(
    logging.getLevelName("API"),
    "Audit External Service",
    extra={"service_name": "apollo", "request_type": "external", "protocol": "http", "execution_time": 0.5},
)
logging.getLogger("audit.request").info("below API: stopped by the logger's level")
emit_crud(new_record("AUDIT", "audit.crud", "CREATE event for Book (id: 1)", event_type="CREATE"))
emit_request(new_record("API", "audit.request", "Audit Internal Request", request_type="internal"))
"""

SEED_FIELDS = [
    "timestamp",
    "level",
    "name",
    "path",
    "module",
    "function",
    "message",
    "exception",
    "request",
    "extra_fields",
]
ENVELOPE = ["event_id", "stream_id", "seq"]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


def run_project(tmp_path: Path, logging_block: str) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """Run PROGRAM under a project using ``logging_block``; return the records of each file and stderr."""
    log_dir = tmp_path / "logs"
    settings = f"""\
{logging_block}
SECRET_KEY = "tests"
USE_TZ = True
INSTALLED_APPS = ["activity_audit"]
ACTIVITY_AUDIT = {{"LOG_DIR": {str(log_dir)!r}, "HANDLE_SIGTERM": False, "LOAD_ENTRY_POINTS": False}}
"""
    result = run_program(tmp_path, settings, PROGRAM)
    assert result.returncode == 0, result.stderr
    files = {}
    for path in sorted(log_dir.iterdir()):
        files[path.name] = [json.loads(line) for line in path.read_text().splitlines()]
    return files, result.stderr


def run_program(tmp_path: Path, settings: str, program: str) -> subprocess.CompletedProcess[str]:
    """Run ``program`` in a new process whose Django settings module is ``settings``."""
    (tmp_path / "project_settings.py").write_text(settings)
    (tmp_path / "program.py").write_text(program)
    environment = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
        "DJANGO_SETTINGS_MODULE": "project_settings",
    }
    return subprocess.run(
        [sys.executable, "program.py"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def without_envelope(record: dict[str, Any]) -> dict[str, Any]:
    assert list(record)[-3:] == ENVELOPE
    assert ISO_UTC.match(record["timestamp"]), record["timestamp"]
    return {key: value for key, value in record.items() if key not in (*ENVELOPE, "timestamp")}


def test_levels_are_registered_by_name() -> None:
    assert (AUDIT, API) == (21, 22)
    assert (logging.getLevelName("AUDIT"), logging.getLevelName("API")) == (21, 22)
    assert (logging.getLevelName(21), logging.getLevelName(22)) == ("AUDIT", "API")


@pytest.fixture(scope="module")
def seed_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[dict[str, Any]]], str]:
    return run_project(tmp_path_factory.mktemp("seed"), SEED_LOGGING)


def test_container_logs_are_the_seed_json_in_app_log(
    seed_project: tuple[dict[str, list[dict[str, Any]]], str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    files, _ = seed_project
    app = files["app.log"]
    assert all(list(record)[: len(SEED_FIELDS)] == SEED_FIELDS for record in app)
    path = app[0]["path"]
    assert path.endswith("/program.py")
    common = {"path": path, "module": "program", "function": "<module>", "request": ""}
    exception = app[1]["exception"]
    assert exception.startswith("Traceback (most recent call last):\n")
    assert exception.endswith("\nZeroDivisionError: division by zero")
    assert [without_envelope(record) for record in app] == [
        {
            "level": "INFO",
            "name": "shop.orders",
            **common,
            "message": "order 42 created",
            "exception": "",
            # extra= kept, as it was when logged (the later append is not seen)
            "extra_fields": {"payload": {"items": [1, 2]}, "order_id": 42},
        },
        {
            "level": "ERROR",
            "name": "shop.orders",
            **common,
            "message": "payment failed",
            "exception": exception,
            "extra_fields": {},
        },
        {
            "level": "WARNING",
            "name": "django.request",
            **common,
            "message": "django says hi",
            "exception": "",
            "extra_fields": {},
        },
        {
            "level": "AUDIT",
            "name": "shop.orders",
            **common,
            "message": "audit level by name",
            "exception": "",
            "extra_fields": {},
        },
    ]


def test_api_level_records_and_request_records_are_in_api_log_once(
    seed_project: tuple[dict[str, list[dict[str, Any]]], str],
) -> None:
    files, _ = seed_project
    assert [without_envelope(record) for record in files["api.log"]] == [
        {
            "level": "API",
            "name": "audit.request",
            "message": "Audit External Service",
            "service_name": "apollo",
            "request_type": "external",
            "protocol": "http",
            "request_repr": None,
            "response_repr": None,
            "error_message": None,
            "execution_time": 0.5,
            "request_id": None,
        },
        {
            "level": "API",
            "name": "audit.request",
            "message": "Audit Internal Request",
            "request_type": "internal",
        },
    ]


def test_crud_records_are_in_audit_log_once_and_nothing_is_written_twice(
    seed_project: tuple[dict[str, list[dict[str, Any]]], str],
) -> None:
    files, _ = seed_project
    assert set(files) == {"app.log", "api.log", "audit.log"}
    audit = [without_envelope(record) for record in files["audit.log"]]
    assert [(record["name"], record["message"]) for record in audit] == [
        ("activity_audit.pipeline", "Audit pipeline started"),
        ("audit.crud", "CREATE event for Book (id: 1)"),
        ("activity_audit.pipeline", "Audit pipeline stopped"),
    ]
    every = [record for records in files.values() for record in records]
    seqs = sorted(record["seq"] for record in every)
    assert seqs == list(range(1, len(every) + 1))  # one stream, nothing missing, nothing repeated
    assert len({record["event_id"] for record in every}) == len(every)


def test_console_lines_use_the_seed_format(seed_project: tuple[dict[str, list[dict[str, Any]]], str]) -> None:
    files, stderr = seed_project
    path = re.escape(files["app.log"][0]["path"])
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    lines = [line for line in stderr.splitlines() if re.match(r"^[A-Z]+ \d{4}-", line)]
    expected = [
        ("INFO", "order 42 created"),
        ("ERROR", "payment failed"),
        ("WARNING", "django says hi"),
        ("AUDIT", "audit level by name"),
    ]
    assert len(lines) == len(expected), stderr
    for line, (level, message) in zip(lines, expected):
        assert re.fullmatch(rf"{level} {stamp} {path} program <module> {re.escape(message)}", line), line
    assert "ZeroDivisionError: division by zero" in stderr
    assert "activity_audit:" not in stderr  # the pipeline had nothing to complain about


def test_audit_records_reach_their_files_with_root_warning_and_propagate_false(tmp_path: Path) -> None:
    files, stderr = run_project(tmp_path, QUIET_LOGGING)
    assert [(record["level"], record["message"]) for record in files["app.log"]] == [
        ("ERROR", "payment failed"),
        ("WARNING", "django says hi"),
    ]
    assert [record["message"] for record in files["api.log"]] == ["Audit Internal Request"]
    assert [record["message"] for record in files["audit.log"] if record["name"] == "audit.crud"] == [
        "CREATE event for Book (id: 1)"
    ]
    assert stderr == ""


def test_a_project_without_logging_helpers_gets_audit_files_and_no_app_log(tmp_path: Path) -> None:
    files, _ = run_project(tmp_path, textwrap.dedent("# no LOGGING: Django's default"))
    assert set(files) == {"audit.log", "api.log"}  # the package does not take over the root logger
    assert [record["message"] for record in files["api.log"]] == ["Audit Internal Request"]
    assert "CREATE event for Book (id: 1)" in [record["message"] for record in files["audit.log"]]


def test_the_rotation_arguments_of_earlier_versions_are_accepted(tmp_path: Path) -> None:
    """``get_json_handler(level, filename, formatter, max_bytes, backup_count)``, as earlier versions took."""
    block = SEED_LOGGING.replace(
        'get_json_handler(level="DEBUG", formatter="json")',
        'get_json_handler("DEBUG", "audit_logs/app.log", "json", 1024, 3)',
    )
    assert block != SEED_LOGGING
    (tmp_path / "old").mkdir()
    (tmp_path / "seed").mkdir()
    files, _ = run_project(tmp_path / "old", block)
    seed_files, _ = run_project(tmp_path / "seed", SEED_LOGGING)
    fields = ("level", "name", "message", "extra_fields")
    assert [[r[key] for key in fields] for r in files["app.log"]] == [
        [r[key] for key in fields] for r in seed_files["app.log"]
    ]
    assert len(files["app.log"]) > 1


def test_console_lines_mask_secrets_as_the_files_do() -> None:
    import importlib

    from activity_audit.logconfig import get_console_formatter

    config = get_console_formatter()
    module, _, name = config["()"].rpartition(".")
    factory = getattr(importlib.import_module(module), name)
    formatter = factory(**{key: value for key, value in config.items() if key != "()"})
    record = logging.LogRecord(
        "shop",
        logging.INFO,
        "/srv/shop/db.py",
        7,
        "db url %s, token=%s",
        ("postgres://app:s3cr3t@db/app", "t0k3n"),
        None,
    )
    record.funcName, record.module = "connect", "db"
    line = formatter.format(record)
    assert re.fullmatch(
        r"INFO \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} /srv/shop/db.py db connect "
        r"db url postgres://app:\[REDACTED\]@db/app, token=\[REDACTED\]",
        line,
    ), line


def test_the_helpers_without_the_app_say_that_nothing_is_written(tmp_path: Path) -> None:
    """``activity_audit`` left out of ``INSTALLED_APPS``: the pipeline is never set up. The records cannot be
    written, so stderr says why (once), and at exit how many were lost."""
    settings = f"""\
{SEED_LOGGING}
SECRET_KEY = "tests"
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes"]
ACTIVITY_AUDIT = {{"LOG_DIR": {str(tmp_path / "logs")!r}, "HANDLE_SIGTERM": False}}
"""
    program = (
        "import django, logging\ndjango.setup()\nfor i in range(3):\n    logging.getLogger('shop').info(i)\n"
    )
    result = run_program(tmp_path, settings, program)

    assert result.returncode == 0, result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("activity_audit:")]
    assert ours == [
        "activity_audit: records are handed to the audit pipeline, but 'activity_audit' is not in "
        "INSTALLED_APPS: nothing is written until it is (add it to INSTALLED_APPS)",
        "activity_audit: 3 audit record(s) never written: the audit pipeline was never set up "
        "(is 'activity_audit' in INSTALLED_APPS?)",
    ]
    assert not (tmp_path / "logs").exists()
