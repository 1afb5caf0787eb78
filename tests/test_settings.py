"""``ACTIVITY_AUDIT``: every value checked once, every mistake named, and a LOG_DIR made safe."""

from __future__ import annotations

import math
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import activity_audit
from activity_audit import conf
from activity_audit.conf import VALIDATORS, AuditSettings, build
from activity_audit.dispatch import pipeline
from activity_audit.records import CHANNEL_API, CHANNEL_APP, CHANNEL_AUDIT, new_record

ROOT = Path(__file__).resolve().parent.parent
BASE = dict(settings.ACTIVITY_AUDIT)
PROJECT = SimpleNamespace(BASE_DIR="/srv/shop", SETTINGS_MODULE="shop.settings")

# key, accepted value, the value the settings object holds
ACCEPTED = [
    ("ENABLED", False, False),
    ("LOG_DIR", "/var/log/shop", Path("/var/log/shop")),
    ("LOG_DIR", Path("relative/logs"), Path.cwd() / "relative/logs"),
    ("LOG_DIR", "~/logs", Path.home() / "logs"),
    ("SERVICE_NAME", "shop", "shop"),
    ("QUEUE_SIZE", 5, 5),
    ("WHEN_FULL", "drop", "drop"),
    ("BLOCK_TIMEOUT", 0, 0.0),
    ("BATCH_SIZE", 1, 1),
    ("FLUSH_INTERVAL", 0.01, 0.01),
    ("SINK_QUEUE_SIZE", 100, 100),
    ("FSYNC_INTERVAL", None, None),
    ("FSYNC_INTERVAL", 0, 0.0),
    ("SHUTDOWN_TIMEOUT", 2, 2.0),
    ("REPORT_INTERVAL", 1, 1.0),
    ("REPORT_INTERVAL", 2.5, 2.5),
    ("HANDLE_SIGTERM", False, False),
    ("MAX_FIELD_CHARS", 100, 100),
    ("MAX_ITEMS", 10, 10),
    ("MAX_DEPTH", 3, 3),
    ("MAX_RECORD_BYTES", 4096, 4096),
    ("FILE_MODE", 0o600, 0o600),
    ("DIR_MODE", 0o700, 0o700),
    ("HOOKS_MODULES", ["shop.audit_hooks"], ("shop.audit_hooks",)),
    (
        "DISABLED_PLUGINS",
        ("s3", "activity_audit.plugins.file_sink"),
        ("s3", "activity_audit.plugins.file_sink"),
    ),
    ("LOAD_ENTRY_POINTS", False, False),
    ("PLUGINS", {"s3": {"bucket": "b"}}, {"s3": {"bucket": "b"}}),
    ("USER_FIELDS", ["id", "email"], ("id", "email")),
    ("INCLUDE_MODELS", ["shop.*", "auth.User"], ("shop.*", "auth.User")),
    ("EXCLUDE_MODELS", ["sessions.Session"], ("sessions.Session",)),
    ("EXCLUDE_FIELDS", {"auth.User": ["last_login"]}, {"auth.User": ("last_login",)}),
    ("MASK_FIELDS", {"shop.*": ["iban"]}, {"shop.*": ("iban",)}),
    ("REDACT_KEYS", ["password"], ("password",)),
    ("MAX_DEPTH", 200, 200),
    ("REDACT_PATTERNS", [r"\d{16}"], (r"\d{16}",)),
    # each pattern is used alone: its inline flags and group names are its own
    ("REDACT_PATTERNS", ["(?i)secret-[a-z0-9]+", "EMP"], ("(?i)secret-[a-z0-9]+", "EMP")),
    (
        "REDACT_PATTERNS",
        [r"(?P<id>EMP-\d{6})", r"(?P<id>CUS-\d{6})"],
        (r"(?P<id>EMP-\d{6})", r"(?P<id>CUS-\d{6})"),
    ),
    # repetitions that one text fills in one way only
    ("REDACT_PATTERNS", [r"(?:[a-z0-9]+\.)+[a-z]{2,}"], (r"(?:[a-z0-9]+\.)+[a-z]{2,}",)),
    ("REDACT_PATTERNS", [r"\b(?:\d[ -]*?){13,16}\b"], (r"\b(?:\d[ -]*?){13,16}\b",)),
    ("REDACT_PATTERNS", [r"(?:\\.|[^\"\\])+"], (r"(?:\\.|[^\"\\])+",)),
    ("REDACT_PATTERNS", [r"[^@\s]+@[^@\s.]+\.\S+"], (r"[^@\s]+@[^@\s.]+\.\S+",)),
]

REDACT_PATTERNS_EMPTY = (
    "ACTIVITY_AUDIT['REDACT_PATTERNS'] must be a list of regular expressions that match at least one "
    "character (this one can match empty text, so [REDACTED] would be put between the characters of "
    "every string and key: write + where * or ? lets the pattern match nothing, e.g. \\d+ rather than "
    "\\d*), got "
)
REDACT_PATTERNS_NESTED = (
    "ACTIVITY_AUDIT['REDACT_PATTERNS'] must be a list of regular expressions without nested repetition "
    "(this one repeats a part that an inner repeat can fill alone, as (a+)+, (\\w+\\s?)+ and (\\d+|x)+ "
    "do, so a text splits between the repetitions in exponentially many ways and a search of a few "
    "dozen characters can stall the process for minutes: start or end each repetition with a character "
    "the inner repeat cannot match, as in (?:\\w+\\s)+, or make it atomic or possessive, on Python "
    "3.11+), got "
)
REDACT_PATTERNS_CHOICE = (
    "ACTIVITY_AUDIT['REDACT_PATTERNS'] must be a list of regular expressions without ambiguous "
    "repeated choices (this one repeats a choice between alternatives that can match the same text, or "
    "one the start of the other, as (a|a)+, (a|aa)+ and (\\w|\\w\\w)+ do, so a search can take "
    "exponential time and stall the process: let the alternatives start with different characters, as "
    "in (?:\\d|[a-z])+), got "
)
REDACT_PATTERNS_SHARED_RUN = (
    "ACTIVITY_AUDIT['REDACT_PATTERNS'] must be a list of regular expressions without two long repeats "
    "that can share a run of text (in this one, as in \\d+\\d+x, .*secret.*= and \\S+@\\S+\\.\\S+, "
    "such a run splits between the repeats in many ways wherever a search starts, so a search takes "
    "time growing with the cube of the text's length, seconds to minutes for one string of 8 KiB: let "
    "the repeats match different characters, as in [^@\\s]+@[^@\\s.]+\\.\\S+), got "
)

# key, refused value, the exact message
REFUSED = [
    ("ENABLED", "yes", "ACTIVITY_AUDIT['ENABLED'] must be True or False, got 'yes'."),
    ("ENABLED", 1, "ACTIVITY_AUDIT['ENABLED'] must be True or False, got 1."),
    ("LOG_DIR", "", "ACTIVITY_AUDIT['LOG_DIR'] must be a directory path, got ''."),
    ("LOG_DIR", 3, "ACTIVITY_AUDIT['LOG_DIR'] must be a directory path, got 3."),
    ("SERVICE_NAME", "  ", "ACTIVITY_AUDIT['SERVICE_NAME'] must be a non-empty string, got '  '."),
    ("QUEUE_SIZE", 0, "ACTIVITY_AUDIT['QUEUE_SIZE'] must be a positive integer, got 0."),
    (
        "MAX_DEPTH",
        201,
        "ACTIVITY_AUDIT['MAX_DEPTH'] must be a positive integer of at most 200 (JSON nested deeper is "
        "refused), got 201.",
    ),
    ("QUEUE_SIZE", True, "ACTIVITY_AUDIT['QUEUE_SIZE'] must be a positive integer, got True."),
    ("QUEUE_SIZE", 10.0, "ACTIVITY_AUDIT['QUEUE_SIZE'] must be a positive integer, got 10.0."),
    ("WHEN_FULL", "wait", "ACTIVITY_AUDIT['WHEN_FULL'] must be one of 'block', 'drop', got 'wait'."),
    ("BLOCK_TIMEOUT", -1, "ACTIVITY_AUDIT['BLOCK_TIMEOUT'] must be a number of seconds (0 or more), got -1."),
    (
        "BLOCK_TIMEOUT",
        math.nan,
        "ACTIVITY_AUDIT['BLOCK_TIMEOUT'] must be a number of seconds (0 or more), got nan.",
    ),
    (
        "SHUTDOWN_TIMEOUT",
        math.inf,
        "ACTIVITY_AUDIT['SHUTDOWN_TIMEOUT'] must be a number of seconds (0 or more), got inf.",
    ),
    (
        "FLUSH_INTERVAL",
        0,
        "ACTIVITY_AUDIT['FLUSH_INTERVAL'] must be a number of seconds greater than 0, got 0.",
    ),
    (
        "REPORT_INTERVAL",
        0,
        "ACTIVITY_AUDIT['REPORT_INTERVAL'] must be a number of seconds of at least 1 (a report about a "
        "failing sink can fail again), got 0.",
    ),
    (
        "REPORT_INTERVAL",
        0.5,
        "ACTIVITY_AUDIT['REPORT_INTERVAL'] must be a number of seconds of at least 1 (a report about a "
        "failing sink can fail again), got 0.5.",
    ),
    (
        "FSYNC_INTERVAL",
        "1s",
        "ACTIVITY_AUDIT['FSYNC_INTERVAL'] must be a number of seconds (0 or more), got '1s'.",
    ),
    ("FILE_MODE", 0o1777, "ACTIVITY_AUDIT['FILE_MODE'] must be a permission mode such as 0o640, got 1023."),
    ("DIR_MODE", "0750", "ACTIVITY_AUDIT['DIR_MODE'] must be a permission mode such as 0o640, got '0750'."),
    (
        "HOOKS_MODULES",
        "shop.audit_hooks",
        "ACTIVITY_AUDIT['HOOKS_MODULES'] must be a list of strings, got 'shop.audit_hooks'.",
    ),
    (
        "DISABLED_PLUGINS",
        [""],
        "ACTIVITY_AUDIT['DISABLED_PLUGINS'] must be a list of non-empty strings, got [''].",
    ),
    (
        "PLUGINS",
        {"s3": {"secret_access_key": "wJalrXUtnFEMI/K7MDENG"}, "sftp": "password"},
        "ACTIVITY_AUDIT['PLUGINS']['sftp'] must be a dict of options, got a str.",  # no value, no secret
    ),
    (
        "PLUGINS",
        [("s3", {"bucket": "b"})],
        "ACTIVITY_AUDIT['PLUGINS'] must be a dict of plugin name -> dict of options, "
        'e.g. {"s3": {"bucket": "..."}}, got a list.',
    ),
    (
        "LOG_DIR",
        "~no-such-user-here/logs",
        "ACTIVITY_AUDIT['LOG_DIR'] = '~no-such-user-here/logs' cannot be expanded: "
        "Could not determine home directory.",
    ),
    (
        "INCLUDE_MODELS",
        ["User"],
        'ACTIVITY_AUDIT[\'INCLUDE_MODELS\'] must be a list of "app_label.Model" or "app_label.*" patterns, '
        "got 'User'.",
    ),
    (
        "MASK_FIELDS",
        {"shop.Card": "number"},
        "ACTIVITY_AUDIT['MASK_FIELDS']['shop.Card'] must be a list of strings, got 'number'.",
    ),
    (
        "EXCLUDE_FIELDS",
        ["shop.Card"],
        'ACTIVITY_AUDIT[\'EXCLUDE_FIELDS\'] must be a dict like {"app_label.Model": ["field", ...]}, '
        "got ['shop.Card'].",
    ),
    (
        "REDACT_PATTERNS",
        ["(unclosed"],
        "ACTIVITY_AUDIT['REDACT_PATTERNS'] must be a list of valid regular expressions "
        "(missing ), unterminated subpattern at position 0), got '(unclosed'.",
    ),
    # a pattern that can match empty text would mask between the characters of every string
    ("REDACT_PATTERNS", [r"\d*"], REDACT_PATTERNS_EMPTY + "'\\\\d*'."),
    ("REDACT_PATTERNS", ["EMP", "x|"], REDACT_PATTERNS_EMPTY + "'x|'."),
    ("REDACT_PATTERNS", [r"\b"], REDACT_PATTERNS_EMPTY + "'\\\\b'."),
    ("REDACT_PATTERNS", [r"(?<=password=)[^&]*"], REDACT_PATTERNS_EMPTY + "'(?<=password=)[^&]*'."),
    # the usual shapes of exponential backtracking: one log line of 27 characters would take seconds
    ("REDACT_PATTERNS", [r"(a+)+$"], REDACT_PATTERNS_NESTED + "'(a+)+$'."),
    ("REDACT_PATTERNS", [r"(\w+\s?)+$"], REDACT_PATTERNS_NESTED + "'(\\\\w+\\\\s?)+$'."),
    ("REDACT_PATTERNS", [r"x(?:\d+|[a-z]+)*!"], REDACT_PATTERNS_NESTED + "'x(?:\\\\d+|[a-z]+)*!'."),
    ("REDACT_PATTERNS", [r"(?i)(?:[A-Z][a-z]+ ?)+!"], REDACT_PATTERNS_NESTED + "'(?i)(?:[A-Z][a-z]+ ?)+!'."),
    ("REDACT_PATTERNS", [r"(a|a)*b"], REDACT_PATTERNS_CHOICE + "'(a|a)*b'."),
    # a path expression is searched in the path of every request, which any client picks
    (
        "SKIP_PATHS",
        [r"^/(\w+/?)+$"],
        REDACT_PATTERNS_NESTED.replace("REDACT_PATTERNS", "SKIP_PATHS") + "'^/(\\\\w+/?)+$'.",
    ),
    (
        "BODY_PATHS",
        [r"^/api/(a|a)*$"],
        REDACT_PATTERNS_CHOICE.replace("REDACT_PATTERNS", "BODY_PATHS") + "'^/api/(a|a)*$'.",
    ),
    ("REDACT_PATTERNS", [r"(\w|\w\w)+x"], REDACT_PATTERNS_CHOICE + "'(\\\\w|\\\\w\\\\w)+x'."),
    # two long repeats sharing a run: cubic
    ("REDACT_PATTERNS", [r".*secret.*="], REDACT_PATTERNS_SHARED_RUN + "'.*secret.*='."),
    ("REDACT_PATTERNS", [r"\S+@\S+\.\S+"], REDACT_PATTERNS_SHARED_RUN + "'\\\\S+@\\\\S+\\\\.\\\\S+'."),
]


@pytest.mark.parametrize(("key", "value", "expected"), ACCEPTED)
def test_accepted_values(key: str, value: Any, expected: Any) -> None:
    assert getattr(build({key: value}, PROJECT), key) == expected


@pytest.mark.parametrize(("key", "value", "message"), REFUSED)
def test_refused_values_name_the_setting(key: str, value: Any, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        build({key: value}, PROJECT)
    assert str(error.value) == message


@pytest.mark.parametrize("key", sorted(VALIDATORS))
def test_every_setting_accepts_its_default_and_refuses_a_wrong_type(key: str) -> None:
    default = getattr(AuditSettings(), key)
    clean = getattr(build({key: default}, PROJECT), key)
    assert clean == (Path.cwd() / default if key == "LOG_DIR" else default)  # the default is a fixed point
    with pytest.raises(ImproperlyConfigured, match=rf"^ACTIVITY_AUDIT\['{key}'\]"):
        build({key: object()}, PROJECT)


def test_every_field_has_a_validator_and_every_validator_a_field() -> None:
    assert set(VALIDATORS) == {field.name for field in fields(AuditSettings)}


def test_an_unknown_key_is_an_error_with_the_nearest_name() -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        build({"LOG_DIRS": "/tmp/x"}, PROJECT)
    assert (
        str(error.value)
        == "ACTIVITY_AUDIT['LOG_DIRS'] is not a setting of activity_audit. Did you mean 'LOG_DIR'?"
    )
    with pytest.raises(ImproperlyConfigured) as error:
        build({"COMPLETELY_ELSE": 1}, PROJECT)
    assert str(error.value) == "ACTIVITY_AUDIT['COMPLETELY_ELSE'] is not a setting of activity_audit."
    with pytest.raises(ImproperlyConfigured) as error:
        build({"log_dir": "/tmp/x"}, PROJECT)  # names are upper case
    assert (
        str(error.value)
        == "ACTIVITY_AUDIT['log_dir'] is not a setting of activity_audit. Did you mean 'LOG_DIR'?"
    )
    with pytest.raises(ImproperlyConfigured) as error:
        build({1: 2, "FOO": 3}, PROJECT)  # keys of mixed types: still a clear error, not a TypeError
    assert str(error.value) == "ACTIVITY_AUDIT['FOO'] is not a setting of activity_audit."


def test_the_setting_must_be_a_dict() -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        build(["LOG_DIR"], PROJECT)  # type: ignore[arg-type]
    assert str(error.value) == "ACTIVITY_AUDIT must be a dict, got list."


def test_defaults_depend_on_the_project(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SERVICE_NAME", raising=False)
    built = build({}, PROJECT)
    assert (Path("/srv/shop/audit_logs"), "shop") == (built.LOG_DIR, built.SERVICE_NAME)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SERVICE_NAME", "billing")
    built = build({}, SimpleNamespace())
    assert (tmp_path / "audit_logs", "billing") == (built.LOG_DIR, built.SERVICE_NAME)


def test_plugin_config_resolves_environment_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AA_TEST_SECRET", "s3cr3t")
    built = build(
        {"PLUGINS": {"sftp": {"host": "h", "auth": {"password": {"$env": "AA_TEST_SECRET"}}}}}, PROJECT
    )
    assert built.plugin_config("sftp") == {"host": "h", "auth": {"password": "s3cr3t"}}
    assert built.plugin_config("other") == {}
    monkeypatch.delenv("AA_TEST_SECRET")
    with pytest.raises(ImproperlyConfigured) as error:
        built.plugin_config("sftp")
    assert str(error.value) == (
        "ACTIVITY_AUDIT['PLUGINS']['sftp']['auth']['password'] reads the environment variable "
        "AA_TEST_SECRET, which is not set."
    )


@pytest.mark.parametrize("name", [["AUDIT_BUCKET"], "", 3])
def test_an_environment_reference_must_name_a_variable(name: object) -> None:
    built = build({"PLUGINS": {"s3": {"bucket": {"$env": name}}}}, PROJECT)
    with pytest.raises(ImproperlyConfigured) as error:
        built.plugin_config("s3")
    assert str(error.value) == (
        f"ACTIVITY_AUDIT['PLUGINS']['s3']['bucket'] must name an environment variable "
        f'({{"$env": "NAME"}}), got {name!r}.'
    )


def test_settings_are_cached_and_reset_when_the_setting_changes(tmp_path: Path) -> None:
    first = conf.get_settings()
    assert conf.get_settings() is first
    with override_settings(ACTIVITY_AUDIT={**BASE, "SERVICE_NAME": "changed", "LOG_DIR": str(tmp_path)}):
        assert conf.get_settings().SERVICE_NAME == "changed"
    assert conf.get_settings().SERVICE_NAME == first.SERVICE_NAME


# --- LOG_DIR --------------------------------------------------------------------------------------------


@pytest.fixture
def umask() -> Iterator[Any]:
    saved = os.umask(0o022)
    os.umask(saved)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    yield set_umask
    os.umask(saved)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o077, 0o000, 0o022])
def test_log_dir_is_created_0750_and_files_0640_whatever_the_umask(
    mask: int, umask: Any, tmp_path: Path
) -> None:
    umask(mask)
    directory = tmp_path / "parent" / "audit_logs"
    with override_settings(ACTIVITY_AUDIT={**BASE, "LOG_DIR": str(directory)}):
        for channel in (CHANNEL_AUDIT, CHANNEL_API, CHANNEL_APP):
            assert pipeline.submit(channel, new_record("INFO", "tests.settings", channel))
        assert activity_audit.flush(10)
        assert mode(directory) == 0o750
        assert {path.name: mode(path) for path in directory.iterdir()} == {
            "audit.log": 0o640,
            "api.log": 0o640,
            "app.log": 0o640,
        }


def test_configured_modes_are_applied(umask: Any, tmp_path: Path) -> None:
    umask(0o077)
    directory = tmp_path / "logs"
    with override_settings(
        ACTIVITY_AUDIT={**BASE, "LOG_DIR": str(directory), "DIR_MODE": 0o755, "FILE_MODE": 0o644}
    ):
        assert (mode(directory), mode(directory / "audit.log")) == (0o755, 0o644)


def impossible_log_dirs(tmp_path: Path) -> list[tuple[Path, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    return [
        (
            a_file / "logs",
            f"ACTIVITY_AUDIT['LOG_DIR'] = '{a_file / 'logs'}' cannot be created (Not a directory).",
        ),
        (a_file, f"ACTIVITY_AUDIT['LOG_DIR'] = '{a_file}' exists and is not a directory."),
        (
            Path("/proc/activity-audit"),
            "ACTIVITY_AUDIT['LOG_DIR'] = '/proc/activity-audit' cannot be created "
            "(No such file or directory).",
        ),
        (
            Path("/proc"),
            "ACTIVITY_AUDIT['LOG_DIR'] = '/proc': cannot open audit.log for writing "
            "(No such file or directory).",
        ),
    ]


def test_an_impossible_log_dir_stops_start_up_naming_the_setting(tmp_path: Path) -> None:
    for directory, message in impossible_log_dirs(tmp_path):
        with (
            pytest.raises(ImproperlyConfigured) as error,
            override_settings(ACTIVITY_AUDIT={**BASE, "LOG_DIR": str(directory)}),
        ):
            pass
        assert str(error.value) == message


def test_django_check_reports_an_impossible_log_dir_once_and_exits(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    (tmp_path / "bad_log_dir_settings.py").write_text(
        textwrap.dedent(
            f"""
            from tests.settings import *

            ACTIVITY_AUDIT = {{**ACTIVITY_AUDIT, "LOG_DIR": {str(blocked / "logs")!r}}}
            """
        )
    )
    environment = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
        "DJANGO_SETTINGS_MODULE": "bad_log_dir_settings",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    message = f"ACTIVITY_AUDIT['LOG_DIR'] = '{blocked / 'logs'}' cannot be created (Not a directory)."
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == f"django.core.exceptions.ImproperlyConfigured: {message}"
    assert result.stderr.count(message) == 1
    assert not list(tmp_path.glob("**/*.log"))


def test_a_pattern_that_would_stall_a_log_call_stops_start_up(tmp_path: Path) -> None:
    # With the console formatter of the original LOGGING block, the patterns run on the thread that logs:
    # (a+)+$ took 7 s for one logger.info("order %s", "a" * 27 + "!"), every thread of the process waiting.
    (tmp_path / "stalling_pattern_settings.py").write_text(
        textwrap.dedent(
            f"""
            from activity_audit import get_console_formatter
            from tests.settings import *

            ACTIVITY_AUDIT = {{**ACTIVITY_AUDIT, "LOG_DIR": {str(tmp_path / "logs")!r}}}
            ACTIVITY_AUDIT["REDACT_PATTERNS"] = [r"(a+)+$"]
            LOGGING = {{
                "version": 1,
                "formatters": {{"verbose": get_console_formatter()}},
                "handlers": {{"console": {{"class": "logging.StreamHandler", "formatter": "verbose"}}}},
                "root": {{"level": "INFO", "handlers": ["console"]}},
            }}
            """
        )
    )
    code = (
        'import django, logging; django.setup(); logging.getLogger("shop").info("order %s", "a" * 27 + "!")'
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
            "DJANGO_SETTINGS_MODULE": "stalling_pattern_settings",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    message = REDACT_PATTERNS_NESTED + "'(a+)+$'."
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"django.core.exceptions.ImproperlyConfigured: {message}"
    assert "order" not in result.stderr


# --- system checks -------------------------------------------------------------------------------------


def check_messages() -> list[tuple[str, str, str | None]]:
    from activity_audit.checks import check_setup

    return [(message.id or "", message.msg, message.hint) for message in check_setup()]


def test_checks_are_quiet_on_a_sound_set_up() -> None:
    assert check_messages() == []


def test_check_warns_when_auditing_is_off(tmp_path: Path) -> None:
    with override_settings(ACTIVITY_AUDIT={**BASE, "ENABLED": False}):
        assert check_messages() == [
            (
                "activity_audit.W001",
                "Auditing is off: ACTIVITY_AUDIT['ENABLED'] is False, so no audit record is written.",
                None,
            )
        ]


@pytest.mark.parametrize("root_setting", ["STATIC_ROOT", "MEDIA_ROOT"])
def test_check_refuses_a_log_dir_that_the_web_server_publishes(root_setting: str, tmp_path: Path) -> None:
    inside = tmp_path / "public" / "audit"
    with override_settings(
        **{root_setting: str(tmp_path / "public")}, ACTIVITY_AUDIT={**BASE, "LOG_DIR": str(inside)}
    ):
        assert check_messages() == [
            (
                "activity_audit.E001",
                f"ACTIVITY_AUDIT['LOG_DIR'] ({inside}) is inside {root_setting}: "
                "the audit trail would be public.",
                None,
            )
        ]
    with override_settings(
        **{root_setting: str(tmp_path / "public")},
        ACTIVITY_AUDIT={**BASE, "LOG_DIR": str(tmp_path / "public2")},
    ):
        assert check_messages() == []  # a sibling whose name merely starts the same is fine


def test_check_warns_about_a_disabled_plugin_that_does_not_exist() -> None:
    with override_settings(ACTIVITY_AUDIT={**BASE, "DISABLED_PLUGINS": ["activity_audit.plugins.file_snk"]}):
        assert check_messages() == [
            (
                "activity_audit.W002",
                "ACTIVITY_AUDIT['DISABLED_PLUGINS'] names 'activity_audit.plugins.file_snk', "
                "which is not a plugin here, so it blocks nothing.",
                "Did you mean 'activity_audit.plugins.file_sink'?",
            )
        ]
