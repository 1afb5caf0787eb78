"""Fixtures for the SFTP sink: the repository's real OpenSSH server (``tests.support.sshd``) on loopback.

The tests run from the activity_audit repository (``pythonpath`` in pyproject.toml puts its root first),
using its ``tests.settings`` and its end-to-end helpers in ``tests.support``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.support.remote_fixtures import fresh_pipeline, log_dir  # noqa: F401 - fixtures
from tests.support.sshd import SshdServer, sshd_server  # noqa: F401 - the fixture


@pytest.fixture
def remote_dir(sshd_server: SshdServer) -> Path:  # noqa: F811 - the imported fixture
    """A directory of the server's (local) file system that this test's uploads go to; not created."""
    return sshd_server.root_dir / f"audit-{uuid.uuid4().hex[:8]}"
