"""Upload spool segments to S3 with boto3: one ``PutObject`` per segment, with a checksum.

* Every upload carries ``Content-MD5`` and a SHA-256 checksum (``ChecksumAlgorithm``): buckets with Object
  Lock refuse uploads without one, and S3 verifies the bytes it stored.
* The key is deterministic (:meth:`activity_audit.spool.Segment.object_name` below ``prefix``), so a retried
  upload overwrites itself (or adds an identical version in a versioned bucket) instead of duplicating.
* boto3 retries 5xx, throttling and connection errors ``max_attempts`` times (``standard`` mode); after that
  the spool retries with backoff. A 403 is reported as a permission problem naming bucket and key.
* Messages never contain credentials.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import ImproperlyConfigured

from activity_audit.spool import Segment
from activity_audit.threads import pipeline_work

from .config import S3Config


class S3UploadError(Exception):
    """An upload that S3 refused or that did not reach it; the message says which and why."""


class S3Uploader:
    """The :class:`~activity_audit.spool.Uploader` of the ``s3`` plugin."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self._client: Any = None

    @classmethod
    def connect(cls, config: S3Config) -> S3Uploader:
        """Build the uploader; with ``require_object_lock``, check the bucket now (failing stops start-up)."""
        uploader = cls(config)
        if config.require_object_lock:
            uploader.check_object_lock()
        return uploader

    def client(self) -> Any:
        if self._client is None:
            config = self.config
            session = boto3.session.Session(
                aws_access_key_id=config.access_key_id,
                aws_secret_access_key=config.secret_access_key,
                aws_session_token=config.session_token,
                region_name=config.region,
            )
            self._client = session.client(
                "s3",
                endpoint_url=config.endpoint_url,
                config=Config(
                    connect_timeout=config.connect_timeout,
                    read_timeout=config.read_timeout,
                    retries={"mode": "standard", "max_attempts": config.max_attempts},
                ),
            )
        return self._client

    def check_object_lock(self) -> None:
        """Raise ``ImproperlyConfigured`` unless the bucket has Object Lock enabled.

        Runs on the thread that configures the plugin, marked as pipeline work meanwhile: botocore's DEBUG
        records of the request (its headers hold the session token and the signature) stay out of the trail.
        """
        config, setting = self.config, self.config.options.setting("require_object_lock")
        try:
            with pipeline_work():
                answer = self.client().get_object_lock_configuration(Bucket=config.bucket)
        except ClientError as exc:
            if _error_code(exc) == "ObjectLockConfigurationNotFoundError":
                raise ImproperlyConfigured(
                    f"{setting} is True but the bucket {config.where} has no Object Lock configuration."
                ) from exc
            raise ImproperlyConfigured(
                f"{setting} is True but the Object Lock configuration of {config.where} cannot be read: "
                f"{_describe_client_error(exc)}"
            ) from exc
        except BotoCoreError as exc:
            raise ImproperlyConfigured(
                f"{setting} is True but {config.where} cannot be reached to check Object Lock: {exc}"
            ) from exc
        if answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise ImproperlyConfigured(f"{setting} is True but Object Lock is not enabled on {config.where}.")

    def upload(self, name: str, segment: Segment) -> None:
        config, key = self.config, self.config.key(name)
        arguments: dict[str, Any] = {
            "Bucket": config.bucket,
            "Key": key,
            "Body": segment.data,
            "ContentType": "application/gzip",
            "ContentMD5": base64.b64encode(
                hashlib.md5(segment.data, usedforsecurity=False).digest()
            ).decode(),
            "ChecksumAlgorithm": "SHA256",
            "Metadata": {
                "records": str(segment.records),
                "stream-id": segment.stream_id,
                "first-seq": str(segment.first_seq),
                "last-seq": str(segment.last_seq),
            },
        }
        if config.sse is not None:
            arguments["ServerSideEncryption"] = config.sse
        if config.sse_kms_key_id is not None:
            arguments["SSEKMSKeyId"] = config.sse_kms_key_id
        try:
            self.client().put_object(**arguments)
        except ClientError as exc:
            raise S3UploadError(
                f"upload of s3://{config.bucket}/{key} failed: {_describe_client_error(exc)}"
            ) from exc
        except BotoCoreError as exc:
            raise S3UploadError(
                f"upload of s3://{config.bucket}/{key} failed: {config.where}: {exc}"
            ) from exc

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def forget(self) -> None:
        self._client = None  # a forked child must not reuse the parent's pooled connections


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe_client_error(exc: ClientError) -> str:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = _error_code(exc)
    message = exc.response.get("Error", {}).get("Message", "")
    if status == 403:
        return (
            f"403 {code}: access denied ({message}); check the credentials and that they may s3:PutObject "
            "on this bucket and prefix"
        )
    retry = " (retried)" if status is None or status >= 500 or code in ("SlowDown", "Throttling") else ""
    return f"{status} {code}: {message}{retry}"
