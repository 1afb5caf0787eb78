"""Edges of the core: a file sink whose files or directory go wrong, ``audit verify`` on hostile input, names
inside settings values that name nothing, and values no thread can wait for."""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import override_settings

import activity_audit
from activity_audit import conf
from activity_audit.checks import check_setup
from activity_audit.conf import MAX_SECONDS, build
from activity_audit.dispatch import pipeline
from activity_audit.errors import PartialDelivery
from activity_audit.plugins.file_sink import FileSink
from activity_audit.records import CHANNEL_API, CHANNEL_APP, CHANNEL_AUDIT, Entry, new_record
from activity_audit.verify import OPEN_ADVICE
from tests.conftest import read_lines

ROOT = Path(__file__).resolve().parent.parent
BASE = dict(settings.ACTIVITY_AUDIT)
PROJECT = SimpleNamespace(BASE_DIR="/srv/shop", SETTINGS_MODULE="shop.settings")
FILE_SINK = "activity_audit.plugins.file_sink"
NAME = "tests.edge"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ours(path: Path) -> list[dict[str, Any]]:
    """The records this module submitted that reached ``path``."""
    return [record for record in read_lines(path) if record.get("name") == NAME]


def submit(channel: str, message: str) -> None:
    assert pipeline.submit(channel, new_record("INFO", NAME, message))


def file_sink_lost() -> int:
    return int(pipeline.stats()["sinks"][FILE_SINK]["lost"])


# --- file sink: one failing file costs only its own records -------------------------------------------


def entry(channel: str, number: int) -> Entry:
    return Entry(channel, {}, json.dumps({"name": NAME, "n": number}).encode())


def test_a_failing_file_fails_only_its_own_records_in_a_batch(tmp_path: Path) -> None:
    sink = FileSink()
    sink.configure(build({"LOG_DIR": str(tmp_path)}, PROJECT))
    try:
        (tmp_path / "app.log").unlink(missing_ok=True)
        (tmp_path / "app.log").mkdir()  # reopening app.log now fails with EISDIR
        batch = [entry(channel, n) for n in range(3) for channel in (CHANNEL_APP, CHANNEL_AUDIT, CHANNEL_API)]
        with pytest.raises(PartialDelivery) as error:
            sink.write(batch)
    finally:
        sink.close()
    assert error.value.delivered == 6
    assert str(error.value) == f"app.log: [Errno 21] Is a directory: '{tmp_path / 'app.log'}'"
    assert isinstance(error.value.__cause__, IsADirectoryError)
    assert [line["n"] for line in read_lines(tmp_path / "audit.log")] == [0, 1, 2]
    assert [line["n"] for line in read_lines(tmp_path / "api.log")] == [0, 1, 2]


def test_a_broken_app_log_costs_no_audit_record_of_the_same_batch(tmp_path: Path) -> None:
    with override_settings(ACTIVITY_AUDIT={**BASE, "LOG_DIR": str(tmp_path)}):
        lost_before = file_sink_lost()
        (tmp_path / "app.log").unlink(missing_ok=True)
        (tmp_path / "app.log").mkdir()
        try:
            for number in range(10):
                submit(CHANNEL_APP, f"container log {number}")
                submit(CHANNEL_AUDIT, f"change {number}")
            assert activity_audit.flush(10)
            assert len(ours(tmp_path / "audit.log")) == 10
            assert file_sink_lost() - lost_before == 10
        finally:
            (tmp_path / "app.log").rmdir()  # so that the settings can be restored


def test_start_up_refuses_an_app_log_it_cannot_open(tmp_path: Path) -> None:
    (tmp_path / "app.log").mkdir()
    with (
        pytest.raises(ImproperlyConfigured) as error,
        override_settings(ACTIVITY_AUDIT={**BASE, "LOG_DIR": str(tmp_path)}),
    ):
        pass
    assert str(error.value) == (
        f"ACTIVITY_AUDIT['LOG_DIR'] = '{tmp_path}': cannot open app.log for writing (Is a directory)."
    )


# --- file sink: LOG_DIR removed or renamed while running ----------------------------------------------


@pytest.mark.parametrize("how", ["renamed", "removed"])
def test_a_log_dir_removed_or_renamed_while_running_is_created_again(how: str, tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    with override_settings(ACTIVITY_AUDIT={**BASE, "LOG_DIR": str(directory), "DIR_MODE": 0o700}):
        lost_before = file_sink_lost()
        submit(CHANNEL_AUDIT, "before")
        assert activity_audit.flush(10)
        if how == "renamed":
            directory.rename(tmp_path / "logs.old")
        else:
            shutil.rmtree(directory)
        for number in range(5):
            submit(CHANNEL_AUDIT, f"after {number}")
        assert activity_audit.flush(10)
        assert [record["message"] for record in ours(directory / "audit.log")] == [
            f"after {number}" for number in range(5)
        ]
        assert mode(directory) == 0o700
        assert file_sink_lost() == lost_before


# --- file sink: parents of LOG_DIR ---------------------------------------------------------------------


@pytest.fixture
def umask() -> Iterator[Any]:
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


@pytest.mark.parametrize("mask", [0o000, 0o777])
def test_missing_parents_of_log_dir_get_dir_mode_whatever_the_umask(
    mask: int, umask: Any, tmp_path: Path
) -> None:
    directory = tmp_path / "var" / "lib" / "audit_logs"
    umask(mask)
    with override_settings(ACTIVITY_AUDIT={**BASE, "LOG_DIR": str(directory)}):
        modes = [mode(path) for path in (tmp_path / "var", tmp_path / "var" / "lib", directory)]
        assert modes == [0o750, 0o750, 0o750]
        assert mode(directory / "audit.log") == 0o640
    assert mode(tmp_path) == 0o700  # an existing parent is left alone


# --- settings -------------------------------------------------------------------------------------------

REFUSED = [
    (
        "FLUSH_INTERVAL",
        1e10,
        "ACTIVITY_AUDIT['FLUSH_INTERVAL'] must be at most 9223372036 seconds (the longest wait Python "
        "supports), got 10000000000.0.",
    ),
    (
        "SHUTDOWN_TIMEOUT",
        1e300,
        "ACTIVITY_AUDIT['SHUTDOWN_TIMEOUT'] must be at most 9223372036 seconds (the longest wait Python "
        "supports), got 1e+300.",
    ),
    (
        "BLOCK_TIMEOUT",
        MAX_SECONDS + 1,
        "ACTIVITY_AUDIT['BLOCK_TIMEOUT'] must be at most 9223372036 seconds (the longest wait Python "
        "supports), got 9223372037.",
    ),
    (
        "REPORT_INTERVAL",
        1e300,
        "ACTIVITY_AUDIT['REPORT_INTERVAL'] must be at most 9223372036 seconds (the longest wait Python "
        "supports), got 1e+300.",
    ),
    (
        "FSYNC_INTERVAL",
        1e300,
        "ACTIVITY_AUDIT['FSYNC_INTERVAL'] must be at most 9223372036 seconds (the longest wait Python "
        "supports), got 1e+300.",
    ),
    (
        "FILE_MODE",
        0,
        "ACTIVITY_AUDIT['FILE_MODE'] must give the owner read and write permission (0o600 at least), "
        "got 0o0.",
    ),
    (
        "FILE_MODE",
        0o400,
        "ACTIVITY_AUDIT['FILE_MODE'] must give the owner read and write permission (0o600 at least), "
        "got 0o400.",
    ),
    (
        "DIR_MODE",
        0o600,
        "ACTIVITY_AUDIT['DIR_MODE'] must give the owner read, write and search permission (0o700 at least), "
        "got 0o600.",
    ),
    (
        "DIR_MODE",
        0,
        "ACTIVITY_AUDIT['DIR_MODE'] must give the owner read, write and search permission (0o700 at least), "
        "got 0o0.",
    ),
    (
        "LOG_DIR",
        "/var/log/a\0b",
        "ACTIVITY_AUDIT['LOG_DIR'] must be a directory path without NUL characters, got '/var/log/a\\x00b'.",
    ),
    (
        "LOG_DIR",
        Path("/var/log/a\0b"),
        "ACTIVITY_AUDIT['LOG_DIR'] must be a directory path without NUL characters, "
        "got PosixPath('/var/log/a\\x00b').",
    ),
]


@pytest.mark.parametrize(("key", "value", "message"), REFUSED)
def test_values_that_break_the_pipeline_later_are_refused_naming_the_setting(
    key: str, value: Any, message: str
) -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        build({key: value}, PROJECT)
    assert str(error.value) == message


def test_the_longest_supported_wait_and_the_narrowest_owner_modes_are_accepted() -> None:
    values = {
        "SHUTDOWN_TIMEOUT": MAX_SECONDS,
        "FLUSH_INTERVAL": MAX_SECONDS,
        "FILE_MODE": 0o600,
        "DIR_MODE": 0o700,
    }
    built = build(values, PROJECT)
    assert {key: getattr(built, key) for key in values} == values


def test_a_nul_byte_in_log_dir_stops_start_up_naming_the_setting() -> None:
    with (
        pytest.raises(ImproperlyConfigured) as error,
        override_settings(ACTIVITY_AUDIT={**BASE, "LOG_DIR": "/tmp/a\0b"}),
    ):
        pass
    assert str(error.value) == (
        "ACTIVITY_AUDIT['LOG_DIR'] must be a directory path without NUL characters, got '/tmp/a\\x00b'."
    )


# --- system checks: names inside values ----------------------------------------------------------------


def check_messages() -> list[tuple[str, str, str | None]]:
    return [(message.id or "", message.msg, message.hint) for message in check_setup()]


def test_check_reports_model_patterns_that_match_no_model() -> None:
    audit = {
        **BASE,
        "INCLUDE_MODELS": ["auht.User", "tstapp.*", "AUTH.user", "testapp.*"],
        "EXCLUDE_MODELS": ["testapp.Bok"],
    }
    with override_settings(ACTIVITY_AUDIT=audit):
        assert check_messages() == [
            (
                "activity_audit.E002",
                "ACTIVITY_AUDIT['INCLUDE_MODELS'] names 'auht.User', which matches no installed model.",
                "Did you mean 'auth.User'?",
            ),
            (
                "activity_audit.E002",
                "ACTIVITY_AUDIT['INCLUDE_MODELS'] names 'tstapp.*', which matches no installed model.",
                "Did you mean 'testapp.*'?",
            ),
            (
                "activity_audit.E002",
                "ACTIVITY_AUDIT['EXCLUDE_MODELS'] names 'testapp.Bok', which matches no installed model.",
                "Did you mean 'testapp.Book'?",
            ),
        ]


def test_check_reports_field_settings_naming_no_model_or_no_field() -> None:
    audit = {
        **BASE,
        "MASK_FIELDS": {"testapp.ApiClient": ["api_tokn", "notes"], "nowhere.*": ["secret"]},
        "EXCLUDE_FIELDS": {"testapp.*": ["summary", "sumary"], "testapp.Tag": ["books", "book_set"]},
    }
    with override_settings(ACTIVITY_AUDIT=audit):
        assert check_messages() == [
            (
                "activity_audit.E003",
                "ACTIVITY_AUDIT['EXCLUDE_FIELDS']['testapp.*'] names 'sumary', which is not a field of any "
                "model of 'testapp.*'.",
                "Did you mean 'summary'?",
            ),
            (
                "activity_audit.E003",
                "ACTIVITY_AUDIT['EXCLUDE_FIELDS']['testapp.Tag'] names 'book_set', which is not a field of "
                "testapp.Tag.",
                "Did you mean 'books'?",
            ),
            (
                "activity_audit.E003",
                "ACTIVITY_AUDIT['MASK_FIELDS']['testapp.ApiClient'] names 'api_tokn', which is not a field "
                "of testapp.ApiClient.",
                "Did you mean 'api_token'?",
            ),
            (
                "activity_audit.E002",
                "ACTIVITY_AUDIT['MASK_FIELDS'] names 'nowhere.*', which matches no installed model.",
                None,
            ),
        ]


def test_check_only_warns_about_excluding_an_app_that_is_not_installed() -> None:
    audit = {**BASE, "EXCLUDE_MODELS": ["debug_toolbar.*"], "EXCLUDE_FIELDS": {"silk.Request": ["body"]}}
    with override_settings(ACTIVITY_AUDIT=audit):
        assert check_messages() == [
            (
                "activity_audit.W005",
                "ACTIVITY_AUDIT['EXCLUDE_MODELS'] names 'debug_toolbar.*', but no installed app has the "
                "label 'debug_toolbar', so it has no effect here.",
                None,
            ),
            (
                "activity_audit.W005",
                "ACTIVITY_AUDIT['EXCLUDE_FIELDS'] names 'silk.Request', but no installed app has the label "
                "'silk', so it has no effect here.",
                None,
            ),
        ]


def test_check_accepts_settings_for_a_swapped_user_model() -> None:
    audit = {**BASE, "MASK_FIELDS": {"auth.User": ["email"]}, "INCLUDE_MODELS": ["auth.User", "testapp.*"]}
    with override_settings(ACTIVITY_AUDIT=audit, AUTH_USER_MODEL="testapp.Author"):
        assert check_messages() == []


def test_check_warns_about_user_fields_the_user_model_does_not_have() -> None:
    with override_settings(ACTIVITY_AUDIT={**BASE, "USER_FIELDS": ["id", "emial", "email", "get_full_name"]}):
        assert check_messages() == [
            (
                "activity_audit.W003",
                "ACTIVITY_AUDIT['USER_FIELDS'] names 'emial', which auth.User does not have, so it is "
                "recorded as null.",
                "Did you mean 'email'?",
            )
        ]


def test_check_warns_about_options_for_a_plugin_that_is_not_loaded() -> None:
    crud = "activity_audit.crud.plugin"  # disabled, its options kept: deliberate, not reported
    options = {FILE_SINK: {}, "activity_audit.plugins.file_snk": {}, "read_by_a_plugin": {}, crud: {}}
    with override_settings(ACTIVITY_AUDIT={**BASE, "PLUGINS": options, "DISABLED_PLUGINS": [crud]}):
        conf.get_settings().plugin_config("read_by_a_plugin")  # what a hooks module's audit_configure does
        assert check_messages() == [
            (
                "activity_audit.W004",
                "ACTIVITY_AUDIT['PLUGINS'] has options for 'activity_audit.plugins.file_snk', which no "
                "loaded plugin reads, so they configure nothing.",
                "Did you mean 'activity_audit.plugins.file_sink'?",
            )
        ]


def run_django(tmp_path: Path, audit: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "edge_settings.py").write_text(
        textwrap.dedent(
            f"""
            from tests.settings import *

            ACTIVITY_AUDIT = {{**ACTIVITY_AUDIT, **{audit!r}}}
            """
        )
    )
    environment = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
        "DJANGO_SETTINGS_MODULE": "edge_settings",
    }
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
    )


def test_manage_py_check_fails_on_a_misspelled_model(tmp_path: Path) -> None:
    audit = {"LOG_DIR": str(tmp_path / "logs"), "INCLUDE_MODELS": ["auht.User"]}
    result = run_django(tmp_path, audit, "-m", "django", "check")
    assert result.returncode == 1
    assert (
        "?: (activity_audit.E002) ACTIVITY_AUDIT['INCLUDE_MODELS'] names 'auht.User', which matches no "
        "installed model.\n\tHINT: Did you mean 'auth.User'?"
    ) in result.stderr


# --- ENABLED = False ------------------------------------------------------------------------------------


def test_flush_with_auditing_off_returns_at_once_and_writes_nothing(tmp_path: Path) -> None:
    program = (
        "import django; django.setup()\n"
        "import activity_audit\n"
        "from activity_audit.dispatch import pipeline\n"
        "print(activity_audit.flush(5), pipeline.stats()['submitted'])\n"
    )
    logs = tmp_path / "logs"
    result = run_django(tmp_path, {"LOG_DIR": str(logs), "ENABLED": False}, "-c", program)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True 0\n"
    assert not logs.exists()  # not even the directory


def test_records_logged_before_setup_are_not_written_with_auditing_off(tmp_path: Path) -> None:
    program = (
        "import logging, logging.config\n"
        "from activity_audit import get_json_formatter, get_json_handler\n"
        "logging.config.dictConfig({'version': 1, 'formatters': {'json': get_json_formatter()},\n"
        "    'handlers': {'file': get_json_handler(formatter='json')},\n"
        "    'root': {'level': 'INFO', 'handlers': ['file']}})\n"
        "logging.getLogger('early').info('logged before the settings were read')\n"
        "import django; django.setup()\n"
        "import activity_audit\n"
        "print(activity_audit.flush(5))\n"
    )
    logs = tmp_path / "logs"
    result = run_django(tmp_path, {"LOG_DIR": str(logs), "ENABLED": False}, "-c", program)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True\n"
    assert not logs.exists()  # nothing written: not the early record, nor the pipeline's start and stop


# --- audit verify ---------------------------------------------------------------------------------------

STREAM = "2b1f3c9e-0000-4000-8000-000000000001"


def record(seq: Any, stream: Any = STREAM, **fields: Any) -> str:
    return json.dumps({"stream_id": stream, "seq": seq, **fields})


def write(path: Path, *lines: str) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def verify(*args: str) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("audit", "verify", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def test_verify_counts_lines_without_a_usable_stream_id_or_seq_as_unreadable(tmp_path: Path) -> None:
    path = write(
        tmp_path / "audit.log",
        record(1),
        record(True),
        record(1.9),
        record("2"),
        record(0),
        record(-5),
        record(1e20),
        record(2, stream=["a"]),
        record(2, stream=""),
        "[1, 2]",
        record(2, event_type="RECORDS_DROPPED", count="many"),
        record(3, event_type="PIPELINE_STOPPED"),
    )
    out, error = verify(path)
    assert out == (
        f"stream {STREAM}: 3 records, seq 1..3, 0 missing, 0 repeated, 0 declared dropped, stopped\n"
        "unreadable lines: 9\n"
        "FAILED\n"
    )
    assert error is not None and error.returncode == 1


def test_verify_handles_a_huge_seq_without_listing_every_missing_number(tmp_path: Path) -> None:
    huge = 2**64 - 1
    path = write(tmp_path / "audit.log", record(1), record(huge), record(5), record(5), record(5))
    program = (
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        f"call_command('audit', 'verify', {path!r})\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "tests.settings"}

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    result = subprocess.run(
        [sys.executable, "-c", program],
        env={**environment, "AUDIT_TEST_LOG_DIR": str(tmp_path / "logs")},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit_memory,
    )
    assert result.stdout == (
        f"stream {STREAM}: 5 records, seq 1..{huge}, {huge - 3} missing, 2 repeated, 0 declared dropped, "
        "open (still running, or killed)\n"
        f"  missing seq: 2-4, 6-{huge - 1}\n"
        "  repeated seq: 5\n"
        "unreadable lines: 0\n"
        f"warning: 1 open stream(s): records after the last one found cannot be checked{OPEN_ADVICE}\n"
        "FAILED\n"
    )
    assert result.stderr.splitlines()[-1] == (
        "django.core.management.base.CommandError: the audit trail has gaps, duplicates or unreadable lines"
    )


def test_verify_fails_on_an_open_stream_with_require_closed(tmp_path: Path) -> None:
    path = write(tmp_path / "audit.log", record(1), record(2))  # PIPELINE_STOPPED cut off
    summary = f"stream {STREAM}: 2 records, seq 1..2, 0 missing, 0 repeated, 0 declared dropped, "
    out, error = verify(path)
    assert (out, error) == (
        f"{summary}open (still running, or killed)\n"
        "unreadable lines: 0\n"
        f"warning: 1 open stream(s): records after the last one found cannot be checked{OPEN_ADVICE}\n"
        "OK\n",
        None,
    )
    out, error = verify("--require-closed", path)
    assert out == (
        f"{summary}open (still running, or killed)\n"
        "unreadable lines: 0\n"
        "error: 1 open stream(s): records after the last one found cannot be checked\n"
        "FAILED\n"
    )
    assert error is not None
    assert (str(error), error.returncode) == (
        "the audit trail has gaps, duplicates, unreadable lines or open streams",
        1,
    )
    closed = write(tmp_path / "closed.log", record(1), record(2, event_type="PIPELINE_STOPPED"))
    assert verify("--require-closed", closed) == (
        f"{summary}stopped\nunreadable lines: 0\nOK\n",
        None,
    )


def test_verify_names_a_file_it_cannot_read(tmp_path: Path) -> None:
    for path, reason in ((tmp_path / "nope.log", "No such file or directory"), (tmp_path, "Is a directory")):
        out, error = verify(str(path))
        assert out == ""
        assert error is not None
        assert (str(error), error.returncode) == (f"cannot read {path}: {reason}", 2)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("cut short", "Compressed file ended before the end-of-stream marker was reached"),
        ("not gzip", "Not a gzipped file (b'no')"),
        ("corrupt", "Error -3 while decompressing data: invalid block type"),
    ],
)
def test_verify_names_a_gz_file_cut_short_or_corrupt(tmp_path: Path, damage: str, reason: str) -> None:
    """A rotated file logrotate is still compressing, or damaged: exit 2 naming it, never a traceback."""
    data = gzip.compress(("\n".join(record(seq) for seq in range(1, 41)) + "\n").encode(), mtime=0)
    if damage == "cut short":
        data = data[: len(data) // 2]
    elif damage == "not gzip":
        data = b"not gzip at all"
    else:
        data = data[:10] + b"\xff" * 8 + data[18:]
    rotated = tmp_path / "audit.log.1.gz"
    rotated.write_bytes(data)
    current = write(tmp_path / "audit.log", record(41))

    out, error = verify(str(rotated), current)

    assert out == ""
    assert error is not None
    assert (str(error), error.returncode) == (f"cannot read {rotated}: {reason}", 2)
