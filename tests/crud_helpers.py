"""Shared helpers of the CRUD tests: exact records without their envelope, and settings overrides."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.test import override_settings

from activity_audit.context import process_source

ENVELOPE = ("timestamp", "event_id", "stream_id", "seq")
ISBN = uuid.UUID("12345678-1234-5678-1234-567812345678")


def system_actor() -> str:
    return f"system:{process_source()}"


def strip(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` without its envelope, after checking that the envelope is there."""
    missing = [key for key in ENVELOPE if key not in record]
    assert not missing, f"envelope keys missing: {missing} in {record}"
    return {key: value for key, value in record.items() if key not in ENVELOPE}


def crud(captured: Any, **matching: Any) -> list[dict[str, Any]]:
    """The ``audit.crud`` records captured so far (matching ``matching``), without their envelope."""
    return [strip(record) for record in captured.of("audit.crud", **matching)]


def record(
    event_type: str,
    model: str,
    instance_id: Any,
    changes: dict[str, Any],
    *,
    app: str = "testapp",
    actor: str | None = None,
    user: Any = None,
    db: str = "default",
    request_id: str | None = None,
    message: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The record the capture must write, in the documented key order."""
    out = {
        "level": "AUDIT",
        "name": "audit.crud",
        "message": message or f"{event_type} event for {model} (id: {instance_id})",
        "model": model,
        "event_type": event_type,
        "instance_id": None if instance_id is None else str(instance_id),
        "user": user,
        "extra": {},
        "model_label": f"{app}.{model}",
        "changes": changes,
        "request_id": request_id,
        "actor": actor or system_actor(),
        "db": db,
    }
    out.update(more)
    return out


def bulk(event_type: str, model: str, count: int, **more: Any) -> dict[str, Any]:
    return record(
        event_type,
        model,
        None,
        {},
        message=f"{event_type} event for {model} ({count} {'row' if count == 1 else 'rows'})",
        count=count,
        **more,
    )


@contextmanager
def audit_settings(**overrides: Any):
    """``ACTIVITY_AUDIT`` of the test settings with ``overrides`` (the pipeline is reconfigured)."""
    with override_settings(ACTIVITY_AUDIT={**settings.ACTIVITY_AUDIT, **overrides}):
        yield


def book_values(**overrides: Any) -> dict[str, Any]:
    """Constructor arguments of a Book with every field set to a known value."""
    values: dict[str, Any] = {
        "title": "Dune",
        "summary": "Spice.",
        "pages": 412,
        "price": Decimal("19.99"),
        "rating": 4.5,
        "in_print": True,
        "isbn": ISBN,
        "metadata": {"edition": 1, "languages": ["en"]},
        "cover": "covers/dune.png",
    }
    values.update(overrides)
    return values


def created_book_changes(author_pk: int, **overrides: Any) -> dict[str, Any]:
    """The ``changes`` of the CREATE record of ``Book(**book_values(), author=...)``."""
    new = {
        "title": "Dune",
        "summary": "Spice.",
        "pages": 412,
        "price": "19.99",
        "rating": 4.5,
        "in_print": True,
        "published": None,
        "last_sold_at": None,
        "isbn": str(ISBN),
        "metadata": {"edition": 1, "languages": ["en"]},
        "cover": "covers/dune.png",
        "author": author_pk,
    }
    new.update(overrides)
    return {name: {"old": None, "new": value} for name, value in new.items()}
