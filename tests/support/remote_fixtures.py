"""Fixtures every remote sink's test suite uses (imported by the conftest of each contrib plugin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from activity_audit.dispatch import pipeline


@pytest.fixture(autouse=True)
def fresh_pipeline() -> None:
    """A new stream and reporter per test, so that one test's rate-limited reports do not hide another's."""
    pipeline.reset_for_tests()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """An empty ``LOG_DIR`` of this test's own (the spool lives below it)."""
    path = tmp_path / "audit_logs"
    path.mkdir()
    return path
