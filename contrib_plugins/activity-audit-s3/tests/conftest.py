"""Fixtures for the S3 sink: a moto S3 server on loopback, and settings that switch the plugin on.

The tests run from the activity_audit repository (``pythonpath`` in pyproject.toml puts its root first),
using its ``tests.settings`` and its end-to-end helpers in ``tests.support``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MotoS3, s3_options

from tests.support.remote_archive import audit_settings
from tests.support.remote_fixtures import fresh_pipeline, log_dir  # noqa: F401 - fixtures

os.environ["AUDIT_TEST_S3_KEY_ID"] = ACCESS_KEY_ID
os.environ["AUDIT_TEST_S3_SECRET"] = SECRET_ACCESS_KEY


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(moto_s3: MotoS3) -> str:
    name = f"audit-{uuid.uuid4().hex[:12]}"
    moto_s3.create_bucket(name)
    return name


@pytest.fixture
def s3_sink(moto_s3: MotoS3, bucket: str, log_dir: Path) -> Iterator[dict[str, Any]]:  # noqa: F811
    """The s3 plugin switched on against the test bucket; yields its options."""
    options = s3_options(moto_s3, bucket)
    with override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, s3=options)):
        yield options
