"""Settings of the child-process project.

``AUDIT_PROC_LOG_DIR`` is the directory the file sink writes to; ``AUDIT_PROC_OPTIONS`` (JSON) is merged into
``ACTIVITY_AUDIT`` so each test states the knobs it exercises.
"""

import json
import os

from activity_audit import get_json_formatter, get_json_handler

SECRET_KEY = "child-process-tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.proc.urls"
INSTALLED_APPS = ["activity_audit"]
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}

ACTIVITY_AUDIT = {
    "LOG_DIR": os.environ["AUDIT_PROC_LOG_DIR"],
    "SERVICE_NAME": "proc",
    "LOAD_ENTRY_POINTS": False,
    "FSYNC_INTERVAL": None,
    **json.loads(os.environ.get("AUDIT_PROC_OPTIONS", "{}")),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": get_json_formatter()},
    "handlers": {"file": get_json_handler(level="DEBUG", formatter="json")},
    "loggers": {"tests.proc": {"handlers": ["file"], "level": "INFO", "propagate": False}},
}
