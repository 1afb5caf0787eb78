"""The Django app: adding ``"activity_audit"`` to ``INSTALLED_APPS`` is the whole installation."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed


class ActivityAuditConfig(AppConfig):
    name = "activity_audit"
    label = "activity_audit"
    verbose_name = "Activity audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, request_capture, runtime

        checks.register()
        runtime.start()
        request_capture.current_rules()  # the request rules too: one that cannot be built stops start-up
        setting_changed.connect(runtime.on_setting_changed, dispatch_uid="activity_audit.settings")
        setting_changed.connect(_build_request_rules, dispatch_uid="activity_audit.request_rules")


def _build_request_rules(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver, connected after the one that applies the settings: the request rules of
    a new ``ACTIVITY_AUDIT`` are built at once."""
    if setting == "ACTIVITY_AUDIT":
        from .request_capture import current_rules

        current_rules()
