"""The spool under faults: options, failing uploaders and disks, forks, a removed directory.

Every test counts records exactly: what the spool acknowledged is delivered, and what it did not is counted.
The remote is a directory, as in ``test_spool.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from activity_audit.conf import get_settings
from activity_audit.plugin_options import PluginOptions
from activity_audit.spool import SPOOL_OPTION_KEYS, SpoolOptions


def spool_options(**values: Any) -> SpoolOptions:
    return SpoolOptions.read(PluginOptions("s3", values, SPOOL_OPTION_KEYS), get_settings())


def test_retry_max_defaults_to_at_least_retry_initial() -> None:
    assert (spool_options(retry_initial=600).retry_initial, spool_options(retry_initial=600).retry_max) == (
        600.0,
        600.0,
    )
    assert spool_options(retry_initial=2).retry_max == 300.0


def test_a_retry_max_below_retry_initial_names_both_options() -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        spool_options(retry_initial=600, retry_max=100)
    assert str(error.value) == (
        "ACTIVITY_AUDIT['PLUGINS']['s3']['retry_max'] must be a number of seconds of at least retry_initial "
        "(600), got 100."
    )
