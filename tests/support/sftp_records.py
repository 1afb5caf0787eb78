"""The record an ``SFTPClient`` operation writes, as the SFTP tests expect it (``execution_time`` and the
envelope left out)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.sshd import SshdServer


def sftp_record(
    server: SshdServer,
    operation: str,
    remote_path: str | None,
    transferred: int | None,
    error_message: str | None = None,
    **details: Any,
) -> dict[str, Any]:
    """One operation of the ``bank`` client on ``server``, done as ``system:tests`` outside any request."""
    return {
        "level": "API",
        "name": "audit.request",
        "message": "Audit External Service",
        "service_name": "bank",
        "request_type": "external",
        "protocol": "sftp",
        "operation": operation,
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "remote_path": remote_path,
        "bytes": transferred,
        **details,
        "error_message": error_message,
        "request_id": None,
        "actor": "system:tests",
    }
