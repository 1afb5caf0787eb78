"""The options of ``ACTIVITY_AUDIT["PLUGINS"]["s3"]``, checked at start-up.

``bucket`` (required), ``prefix`` (default ``"audit"``), ``region``, ``endpoint_url`` (S3-compatible stores),
``sse`` (``"AES256"`` or ``"aws:kms"``) with ``sse_kms_key_id``, ``access_key_id`` / ``secret_access_key`` /
``session_token`` (default: the standard AWS credential chain), ``require_object_lock`` (default False),
``connect_timeout`` / ``read_timeout`` (seconds), ``max_attempts`` (boto3 retries within one upload), and the
spool's options (:data:`activity_audit.spool.SPOOL_OPTION_KEYS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from activity_audit.plugin_options import PluginOptions

SSE_CHOICES = ("AES256", "aws:kms")

OPTION_KEYS = (
    "bucket",
    "prefix",
    "region",
    "endpoint_url",
    "sse",
    "sse_kms_key_id",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "require_object_lock",
    "connect_timeout",
    "read_timeout",
    "max_attempts",
)
SECRET_KEYS = ("access_key_id", "secret_access_key", "session_token")


@dataclass(frozen=True, repr=False)
class S3Config:
    """Checked S3 options. ``repr`` is withheld: the object holds credentials."""

    bucket: str
    prefix: str
    region: str | None
    endpoint_url: str | None
    sse: str | None
    sse_kms_key_id: str | None
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None
    require_object_lock: bool
    connect_timeout: float
    read_timeout: float
    max_attempts: int
    options: PluginOptions

    @classmethod
    def read(cls, options: PluginOptions) -> S3Config:
        endpoint_url = options.text("endpoint_url")
        if endpoint_url is not None and urlsplit(endpoint_url).scheme not in ("http", "https"):
            raise options.error("endpoint_url", f"must be an http:// or https:// URL, got {endpoint_url!r}.")
        sse = options.choice("sse", SSE_CHOICES)
        kms_key = options.text("sse_kms_key_id")
        if kms_key is not None and sse != "aws:kms":
            raise options.error("sse_kms_key_id", "needs ACTIVITY_AUDIT['PLUGINS']['s3']['sse'] = 'aws:kms'.")
        key_id, secret = options.text("access_key_id"), options.text("secret_access_key")
        if (key_id is None) != (secret is None):
            missing = "secret_access_key" if secret is None else "access_key_id"
            raise options.error(missing, "is required when the other half of the key pair is set.")
        token = options.text("session_token")
        if token is not None and key_id is None:
            raise options.error("session_token", "needs access_key_id and secret_access_key.")
        return cls(
            bucket=options.required_text("bucket"),
            prefix=(options.text("prefix", "audit") or "").strip("/"),
            region=options.text("region"),
            endpoint_url=endpoint_url,
            sse=sse,
            sse_kms_key_id=kms_key,
            access_key_id=key_id,
            secret_access_key=secret,
            session_token=token,
            require_object_lock=options.boolean("require_object_lock", False),
            connect_timeout=options.seconds("connect_timeout", 10.0, minimum=0.1),
            read_timeout=options.seconds("read_timeout", 60.0, minimum=0.1),
            max_attempts=options.integer("max_attempts", 3),
            options=options,
        )

    def key(self, name: str) -> str:
        """The object key of a segment name."""
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def where(self) -> str:
        """``s3://bucket`` plus the endpoint when it is not AWS, for messages."""
        return f"s3://{self.bucket}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")
