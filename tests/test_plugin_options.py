"""``PluginOptions``: the typed readers a plugin checks its options with, and their messages.

Every message names ``ACTIVITY_AUDIT['PLUGINS']['<plugin>']['<key>']``; the value of a secret key never
appears in one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from activity_audit.conf import MAX_SECONDS
from activity_audit.plugin_options import PluginOptions

SETTING = "ACTIVITY_AUDIT['PLUGINS']['demo']"
TOO_LONG = f"must be at most {MAX_SECONDS} seconds (the longest wait Python supports), got"


def options(secret: tuple[str, ...] = (), **values: Any) -> PluginOptions:
    """The options ``values`` of a plugin named ``demo`` that knows every key it is given."""
    return PluginOptions("demo", values, known=tuple(values), secret=secret)


def message_of(read: Any) -> str:
    """The message of the ImproperlyConfigured that ``read()`` raises."""
    with pytest.raises(ImproperlyConfigured) as error:
        read()
    return str(error.value)


# --- seconds ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("inf"), "must be a number of seconds of at least 0.01, got inf."),
        (float("-inf"), "must be a number of seconds of at least 0.01, got -inf."),
        (float("nan"), "must be a number of seconds of at least 0.01, got nan."),
        (0.001, "must be a number of seconds of at least 0.01, got 0.001."),
        (True, "must be a number of seconds of at least 0.01, got True."),
        ("5", "must be a number of seconds of at least 0.01, got '5'."),
        (1e10, f"{TOO_LONG} 10000000000.0."),
        (MAX_SECONDS + 1, f"{TOO_LONG} {MAX_SECONDS + 1}."),
        (10**400, f"{TOO_LONG} {10**400}."),  # larger than any float: compared exactly, not converted
    ],
    ids=["inf", "-inf", "nan", "below-minimum", "bool", "text", "1e10", "max-plus-one", "huge-int"],
)
def test_seconds_python_cannot_wait_are_refused_naming_the_setting(value: Any, problem: str) -> None:
    assert message_of(lambda: options(wait=value).seconds("wait", 1.0, minimum=0.01)) == (
        f"{SETTING}['wait'] {problem}"
    )


@pytest.mark.parametrize(("value", "read"), [(0.01, 0.01), (5, 5.0), (MAX_SECONDS, float(MAX_SECONDS))])
def test_seconds_from_the_minimum_to_the_longest_wait_are_taken(value: float, read: float) -> None:
    assert options(wait=value).seconds("wait", 1.0, minimum=0.01) == read


def test_absent_seconds_are_the_default() -> None:
    assert options().seconds("wait", 60.0) == 60.0


# --- integers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "maximum", "problem"),
    [
        (70000, 65535, "must be an integer from 1 to 65535, got 70000."),
        (0, 65535, "must be an integer from 1 to 65535, got 0."),
        (True, 65535, "must be an integer from 1 to 65535, got True."),
        ("22", 65535, "must be an integer from 1 to 65535, got '22'."),
        (0, None, "must be an integer of at least 1, got 0."),
    ],
)
def test_an_integer_out_of_its_range_is_refused_naming_the_setting(
    value: Any, maximum: int | None, problem: str
) -> None:
    read = options(number=value)
    assert message_of(lambda: read.integer("number", 22, maximum=maximum)) == f"{SETTING}['number'] {problem}"


def test_an_integer_in_its_range_is_taken() -> None:
    assert options(number=65535).integer("number", 22, maximum=65535) == 65535
    assert options(number=10**30).integer("number", 22) == 10**30
    assert options().integer("number", 22, maximum=65535) == 22


# --- files ------------------------------------------------------------------------------------------------


def test_a_readable_file_is_its_path(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("x\n")
    assert options(path=str(path)).readable_file("path") == path
    assert options(path=path).readable_file("path") == path
    assert options().readable_file("path") is None


@pytest.mark.parametrize("secret", [False, True], ids=["plain", "secret"])
def test_a_path_the_system_refuses_is_an_error_naming_the_setting(secret: bool) -> None:
    value = "-----BEGIN OPENSSH PRIVATE KEY----- " + "b3BlbnNzaC1rZXktdjEAAAAA" * 20  # too long a name
    read = options(("path",) if secret else (), path=value)
    with pytest.raises(ImproperlyConfigured) as error:
        read.readable_file("path")
    if secret:
        assert str(error.value) == (
            f"{SETTING}['path'] cannot be used as a path: File name too long "
            "(the value is secret, so not shown)."
        )
    else:
        assert str(error.value) == (
            f"{SETTING}['path'] = '{value}' cannot be used as a path: File name too long."
        )
    assert (error.value.__cause__, error.value.__context__) == (None, None)  # no OSError naming the value


def test_a_home_directory_that_does_not_exist_is_an_error_naming_the_setting() -> None:
    message = message_of(lambda: options(path="~no-such-user-here/key").readable_file("path"))
    assert message == (
        f"{SETTING}['path'] = '~no-such-user-here/key' cannot be used as a path: Could not determine home "
        "directory."
    )


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (False, "= '{path}' is not a file."),
        (True, "is not a file (the value is secret, so not shown)."),
    ],
    ids=["plain", "secret"],
)
def test_a_missing_file_is_named_unless_the_option_is_secret(
    tmp_path: Path, secret: bool, problem: str
) -> None:
    path = tmp_path / "missing"
    read = options(("path",) if secret else (), path=str(path))
    assert message_of(lambda: read.readable_file("path")) == f"{SETTING}['path'] " + problem.format(path=path)


def test_text_or_readable_file_takes_content_as_it_is_and_checks_a_path(tmp_path: Path) -> None:
    path = tmp_path / "id"
    path.write_text("key\n")
    text = "-----BEGIN KEY-----\nabc\n-----END KEY-----\n"
    read = options(("text", "path", "missing"), text=text, path=str(path), missing=str(tmp_path / "none"))

    def is_text(value: str) -> bool:
        return value.startswith("-----BEGIN")

    assert read.text_or_readable_file("text", is_text) == text
    assert read.text_or_readable_file("path", is_text) == path
    assert read.text_or_readable_file("absent", is_text) is None
    assert message_of(lambda: read.text_or_readable_file("missing", is_text)) == (
        f"{SETTING}['missing'] is not a file (the value is secret, so not shown)."
    )
    assert message_of(lambda: read.text_or_readable_file("absent", is_text, required=True)) == (
        f"{SETTING}['absent'] is required."
    )
