"""Django system checks: what ``manage.py check`` tells about the audit set-up.

Settings errors stop start-up in ``AppConfig.ready`` already (servers like gunicorn never run checks); these
checks add what does not justify refusing to start, and what only a look at other settings reveals.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from django.core import checks

from . import conf

MIDDLEWARE_PATH = "activity_audit.middleware.AuditLoggingMiddleware"


def check_setup(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    audit = conf.get_settings()
    messages: list[checks.CheckMessage] = []
    if not audit.ENABLED:
        messages.append(
            checks.Warning(
                "Auditing is off: ACTIVITY_AUDIT['ENABLED'] is False, so no audit record is written.",
                id="activity_audit.W001",
            )
        )
    messages.extend(_public_log_dir(audit.LOG_DIR))
    messages.extend(_unknown_disabled_plugins(audit.DISABLED_PLUGINS))
    return messages


def _public_log_dir(log_dir: Path) -> list[checks.CheckMessage]:
    from django.conf import settings as django_settings

    messages: list[checks.CheckMessage] = []
    for name in ("STATIC_ROOT", "MEDIA_ROOT"):
        root = getattr(django_settings, name, None)
        if root and log_dir.resolve().is_relative_to(Path(root).resolve()):
            messages.append(
                checks.Error(
                    f"ACTIVITY_AUDIT['LOG_DIR'] ({log_dir}) is inside {name}: the audit trail would be "
                    "public.",
                    id="activity_audit.E001",
                )
            )
    return messages


def _unknown_disabled_plugins(disabled: tuple[str, ...]) -> list[checks.CheckMessage]:
    """A misspelled name in DISABLED_PLUGINS leaves the plugin it meant running: say so."""
    from .manager import known_plugin_names

    known = known_plugin_names()
    messages: list[checks.CheckMessage] = []
    for name in disabled:
        if name in known:
            continue
        near = difflib.get_close_matches(name, known, n=1)
        messages.append(
            checks.Warning(
                f"ACTIVITY_AUDIT['DISABLED_PLUGINS'] names '{name}', which is not a plugin here, so it "
                "blocks nothing.",
                hint=f"Did you mean '{near[0]}'?" if near else f"Known plugins: {', '.join(sorted(known))}.",
                id="activity_audit.W002",
            )
        )
    return messages


def register() -> None:
    checks.register(check_setup, "activity_audit")
