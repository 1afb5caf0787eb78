"""Shared body of the tracing plugins: each appends its own name to ``record["redact_trail"]``."""

from __future__ import annotations

from typing import Any


def mark(record: dict[str, Any], name: str) -> None:
    if record.get("name") == "tests.plugins":
        record.setdefault("redact_trail", []).append(name)
