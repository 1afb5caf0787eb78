"""Shared fixtures. ``audit_records`` comes from ``activity_audit.testing`` (a pytest plugin)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from django.test import Client

from activity_audit.conf import get_settings
from tests.request_support import MIDDLEWARE


@pytest.fixture
def log_dir() -> Path:
    return get_settings().LOG_DIR


@pytest.fixture
def http(settings) -> Client:
    """A test client whose requests go through the audit middleware (``tests.request_urls``)."""
    settings.ROOT_URLCONF = "tests.request_urls"
    settings.MIDDLEWARE = MIDDLEWARE
    return Client()


def read_lines(path: Path) -> list[dict]:
    """Every line of a JSON-lines file, parsed; fails on a line that is not one JSON object."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]
