"""Settings for the test suite. ``AUDIT_TEST_DB=postgres`` or ``mysql`` runs it on the machine's PostgreSQL or
MariaDB/MySQL instead of SQLite."""

import os
import tempfile
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "activity_audit",
    "tests.testapp",
]
if django.VERSION >= (5, 2):  # composite primary keys
    INSTALLED_APPS.append("tests.composite")
if django.VERSION >= (6, 1):  # foreign keys whose rows the database deletes or changes by itself
    INSTALLED_APPS.append("tests.dbdeletes")
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.request",
            ]
        },
    }
]

if os.environ.get("AUDIT_TEST_DB") == "postgres":
    _pg = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "NAME": os.environ.get("PGDATABASE", "test"),
    }
    # One test database per run, so that several runs on the same server do not collide.
    _run = f"{os.getpid()}"
    DATABASES = {
        "default": {**_pg, "TEST": {"NAME": f"test_activity_audit_{_run}"}},
        "other": {**_pg, "TEST": {"NAME": f"test_activity_audit_other_{_run}"}},
    }
elif os.environ.get("AUDIT_TEST_DB") == "mysql":
    _mysql = {
        "ENGINE": "django.db.backends.mysql",
        "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
        "PORT": os.environ.get("MYSQL_PORT", "3306"),
        "USER": os.environ.get("MYSQL_USER", "root"),
        "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
        "NAME": "test",
        "OPTIONS": {"charset": "utf8mb4"},
    }
    _run = f"{os.getpid()}"
    DATABASES = {
        "default": {**_mysql, "TEST": {"NAME": f"test_activity_audit_{_run}", "CHARSET": "utf8mb4"}},
        "other": {**_mysql, "TEST": {"NAME": f"test_activity_audit_other_{_run}", "CHARSET": "utf8mb4"}},
    }
else:
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    }
DATABASE_ROUTERS = ["tests.testapp.routers.OtherDatabaseRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

ACTIVITY_AUDIT = {
    "LOG_DIR": os.environ.get("AUDIT_TEST_LOG_DIR") or tempfile.mkdtemp(prefix="activity-audit-tests-"),
    "SERVICE_NAME": "tests",
    "FLUSH_INTERVAL": 0.05,
    "HANDLE_SIGTERM": False,
}
