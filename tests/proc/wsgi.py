"""WSGI entry point. With ``AUDIT_PROC_BOOT_RECORDS=N`` the process that loads it (the gunicorn master under
``--preload``) emits N records before any worker is forked."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.proc.settings")
application = get_wsgi_application()

_boot_records = int(os.environ.get("AUDIT_PROC_BOOT_RECORDS", "0"))
if _boot_records:
    from .emitting import emit

    emit(f"boot-{os.getpid()}", _boot_records)
