"""A Celery app on the child-process project: ``python -m celery -A tests.proc.celery_app worker ...``.

Its one task emits records the way the other scenarios do. Broker and result backend come from
``AUDIT_CELERY_BROKER`` (the same Redis for both).
"""

from __future__ import annotations

import os

import django
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.proc.settings")
django.setup()

from .emitting import emit  # noqa: E402

app = Celery(
    "audit_proc", broker=os.environ["AUDIT_CELERY_BROKER"], backend=os.environ["AUDIT_CELERY_BROKER"]
)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="tests.emit_records")
def emit_records(origin: str, count: int) -> int:
    return emit(origin, count)
