"""Django system checks: what ``manage.py check`` tells about the audit set-up.

Settings errors stop start-up in ``AppConfig.ready`` already (servers like gunicorn never run checks); these
checks add the warnings that do not justify refusing to start.
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from . import conf

MIDDLEWARE_PATH = "activity_audit.middleware.AuditLoggingMiddleware"


def check_setup(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.conf import settings as django_settings

    messages: list[checks.CheckMessage] = []
    audit = conf.get_settings()
    if not audit.ENABLED:
        messages.append(
            checks.Warning(
                "Auditing is off: ACTIVITY_AUDIT['ENABLED'] is False, so no audit record is written.",
                id="activity_audit.W001",
            )
        )
    static_root = getattr(django_settings, "STATIC_ROOT", None)
    if static_root and str(audit.LOG_DIR).startswith(str(static_root)):
        messages.append(
            checks.Error(
                f"ACTIVITY_AUDIT['LOG_DIR'] ({audit.LOG_DIR}) is inside STATIC_ROOT: the audit trail would be public.",
                id="activity_audit.E001",
            )
        )
    return messages


def register() -> None:
    checks.register(check_setup, "activity_audit")
