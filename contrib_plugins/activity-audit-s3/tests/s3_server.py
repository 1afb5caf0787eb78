"""A real S3 API on loopback: moto's standalone server (``python -m moto.server``) in a subprocess.

moto keeps its state in memory, so :meth:`MotoS3.stop` loses every bucket: :meth:`MotoS3.archive` reads what
is stored, and an outage test saves it before stopping and recreates the bucket after starting again.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

HOST = "127.0.0.1"
ACCESS_KEY_ID = "testing-key-id"
SECRET_ACCESS_KEY = "testing-secret-access-key"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class MotoS3:
    def __init__(self, workdir: Path, enforce_auth: bool = False) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.enforce_auth = enforce_auth
        self.log_path = workdir / f"moto-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        import os

        env = dict(os.environ)
        if self.enforce_auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"  # moto then checks credentials like IAM does
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"moto server did not listen on {self.port}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.wait(10)

    def client(self, **config: Any) -> Any:
        return boto3.session.Session(
            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY, region_name=REGION
        ).client("s3", endpoint_url=self.endpoint_url, config=Config(**config))

    def create_bucket(self, bucket: str, object_lock: bool = False) -> None:
        client = self.client()
        client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=object_lock)
        if object_lock:
            client.put_object_lock_configuration(
                Bucket=bucket,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
                },
            )

    def archive(self, bucket: str) -> dict[str, bytes]:
        """Every object of ``bucket``: key -> bytes as stored."""
        client = self.client()
        objects = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                objects[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return objects


# Short cuts and retries so that the tests see several segments and retries in a few seconds.
FAST_SPOOL = {"segment_max_age": 0.3, "retry_initial": 0.1, "retry_max": 0.5}


def s3_options(server: MotoS3, bucket: str, **extra: Any) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "prefix": "archive/web",
        "region": "us-east-1",
        "endpoint_url": server.endpoint_url,
        "access_key_id": {"$env": "AUDIT_TEST_S3_KEY_ID"},
        "secret_access_key": {"$env": "AUDIT_TEST_S3_SECRET"},
        **FAST_SPOOL,
        **extra,
    }
