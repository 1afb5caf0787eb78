"""``PluginOptions``: the typed readers a plugin checks its options with, and their messages.

Every message names ``ACTIVITY_AUDIT['PLUGINS']['<plugin>']['<key>']``; the value of a secret key never
appears in one.
"""

from __future__ import annotations

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
