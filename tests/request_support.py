"""Shared pieces of the request-middleware tests."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "activity_audit.middleware.AuditLoggingMiddleware",
]
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """The record without the values that change on every run, after checking their types.

    ``request_id`` is replaced by ``"<uuid4>"`` when it is a generated UUID4 (also in the echoed header).
    """
    out = dict(record)
    assert dt.datetime.fromisoformat(out.pop("timestamp")).tzinfo is not None
    elapsed = out.pop("execution_time")
    assert isinstance(elapsed, float) and 0 < elapsed < 60
    for key in ("event_id", "stream_id", "seq"):
        assert out.pop(key)
    if UUID4.fullmatch(out["request_id"]):
        generated = out["request_id"]
        out["request_id"] = "<uuid4>"
        headers = out.get("response_repr", {}).get("headers", {})
        if headers.get("X-Request-ID") == generated:
            headers["X-Request-ID"] = "<uuid4>"
    return out


def incoming(
    method: str,
    path: str,
    *,
    request_headers: dict[str, Any],
    body: Any = None,
    query: dict[str, Any] | None = None,
    status: int = 200,
    response_headers: dict[str, Any] | None = None,
    response_body: Any = None,
    route: str | None = None,
    actor: str = "anonymous",
    user: dict[str, Any] | None = None,
    error: str | None = None,
    client_ip: str | None = "127.0.0.1",
    forwarded_for: str | None = None,
    user_agent: str | None = None,
    request_id: str = "<uuid4>",
    **extra: Any,
) -> dict[str, Any]:
    """The expected stable part of an incoming-request record."""
    return {
        "level": "API",
        "name": "audit.request",
        "message": "Audit Internal Request",
        "service_name": "tests",
        "request_type": "internal",
        "protocol": "http",
        "request_repr": {
            "method": method,
            "path": path,
            "query_params": query or {},
            "headers": request_headers,
            "user": user,
            "body": body,
        },
        "response_repr": {
            "status_code": status,
            "headers": {"X-Request-ID": request_id, **(response_headers or {})},
            "body": response_body,
        },
        "error_message": error,
        "request_id": request_id,
        "client_ip": client_ip,
        "forwarded_for": forwarded_for,
        "user_agent": user_agent,
        "route": route,
        "actor": actor,
        **extra,
    }
