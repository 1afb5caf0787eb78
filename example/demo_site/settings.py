"""A small library site that shows what activity_audit records. SQLite and files only."""

from pathlib import Path

from activity_audit import *  # noqa: F403 - the LOGGING helpers, exactly as the original package documented

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "demo-only-not-secret"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "demo_site.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "activity_audit",
    "library",
]
MIDDLEWARE = [
    "activity_audit.middleware.AuditLoggingMiddleware",  # first: it records the response the client gets
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}

ACTIVITY_AUDIT = {
    "SERVICE_NAME": "demo-library",
    "LOG_DIR": BASE_DIR / "audit_logs",
}

# The original package's LOGGING block, unchanged but for the import above.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": get_json_formatter(),  # noqa: F405
        "verbose": get_console_formatter(),  # noqa: F405
        "api_json": get_api_file_formatter(),  # noqa: F405
    },
    "handlers": {
        "console": {
            "level": "WARNING",
            "class": "logging.StreamHandler",
            "formatter": "verbose",
        },
        "file": get_json_handler(level="DEBUG", formatter="json"),  # noqa: F405
        "api_file": get_api_file_handler(formatter="api_json"),  # noqa: F405
    },
    "root": {"level": "INFO", "handlers": ["console", "file"]},
    "loggers": {
        "audit.request": {"handlers": ["api_file"], "level": "API", "propagate": False},
        "django": {"handlers": ["console", "file"], "level": "INFO", "propagate": False},
    },
}
