"""The test settings on a SQLite file (``AUDIT_TEST_SQLITE``), for management commands run as subprocesses."""

import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["AUDIT_TEST_SQLITE"]},
    "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["AUDIT_TEST_SQLITE"] + ".other"},
}
