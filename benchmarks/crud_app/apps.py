from django.apps import AppConfig


class CrudBenchConfig(AppConfig):
    name = "benchmarks.crud_app"
    label = "crud_bench"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from .models import BookAuditlog

        auditlog.register(BookAuditlog)
