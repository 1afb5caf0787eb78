"""The Django app: adding ``"activity_audit"`` to ``INSTALLED_APPS`` is the whole installation."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed


class ActivityAuditConfig(AppConfig):
    name = "activity_audit"
    label = "activity_audit"
    verbose_name = "Activity audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, runtime

        checks.register()
        runtime.start()
        setting_changed.connect(runtime.on_setting_changed, dispatch_uid="activity_audit.settings")
