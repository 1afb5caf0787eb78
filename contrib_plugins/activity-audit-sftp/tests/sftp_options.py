"""Settings that switch the sftp plugin on against the test sshd."""

from __future__ import annotations

import os
from typing import Any

from tests.support.sshd import SshdServer

# Short cuts and retries so that the tests see several segments and retries in a few seconds.
FAST_SPOOL = {"segment_max_age": 0.3, "retry_initial": 0.1, "retry_max": 0.5}


def sftp_options(server: SshdServer, remote_dir: str, **extra: Any) -> dict[str, Any]:
    os.environ["AUDIT_TEST_SFTP_PASSWORD"] = server.password
    return {
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "password": {"$env": "AUDIT_TEST_SFTP_PASSWORD"},
        "remote_dir": remote_dir,
        "known_hosts": str(server.known_hosts_path),
        "timeout": 5,
        **FAST_SPOOL,
        **extra,
    }
