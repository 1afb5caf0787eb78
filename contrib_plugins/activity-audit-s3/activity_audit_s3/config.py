"""The options of ``ACTIVITY_AUDIT["PLUGINS"]["s3"]``, checked at start-up.

``bucket`` (required), ``prefix`` (default ``"audit"``), ``region``, ``endpoint_url`` (S3-compatible stores),
``sse`` (``"AES256"`` or ``"aws:kms"``) with ``sse_kms_key_id``, ``access_key_id`` / ``secret_access_key`` /
``session_token`` (default: the standard AWS credential chain), ``require_object_lock`` (default False),
``connect_timeout`` / ``read_timeout`` (seconds), ``max_attempts`` (boto3 retries within one upload), and the
spool's options (:data:`activity_audit.spool.SPOOL_OPTION_KEYS`).

What S3 or botocore would refuse on every upload is refused here, naming the option: a bucket name S3 cannot
have (``s3://acme-audit``), an endpoint URL without a valid host or port, a region that is no host label.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from activity_audit.plugin_options import PluginOptions

SSE_CHOICES = ("AES256", "aws:kms")

# A bucket name as S3 names buckets today: 3 to 63 lowercase letters, digits, dots and hyphens, first and last
# a letter or digit, no "..", not an IP address.
_BUCKET_NAME = re.compile(r"(?!\d+\.\d+\.\d+\.\d+$)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Buckets made in us-east-1 before March 2018 may also have capitals and underscores, up to 255 characters.
_LEGACY_BUCKET_NAME = re.compile(r"[A-Za-z0-9._-]{3,255}")
# An access point (or Object Lambda, or Outposts access point) ARN, which S3 takes where a bucket name goes.
_ACCESS_POINT_ARN = re.compile(
    r"arn:aws[a-z-]*:(?:s3|s3-object-lambda):[a-z0-9-]*:\d{12}:accesspoint[/:][A-Za-z0-9.-]{1,63}"
    r"|arn:aws[a-z-]*:s3-outposts:[a-z0-9-]+:\d{12}:outpost[/:][A-Za-z0-9-]{1,63}"
    r"[/:]accesspoint[/:][A-Za-z0-9-]{1,63}"
)
# A region as botocore takes it: a host label (letters, digits, hyphens; not all digits): "eu-west-1", and
# the names S3-compatible stores use ("auto", "nyc3", "garage").
_REGION = re.compile(r"(?![0-9]+$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# One label of a host name, as botocore checks the host of endpoint_url.
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")

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
        endpoint_url = _endpoint_url(options)
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
            bucket=_bucket(options),
            prefix=(options.text("prefix", "audit") or "").strip("/"),
            region=_region(options),
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


def _bucket(options: PluginOptions) -> str:
    """``bucket``: a bucket name S3 can serve (see :data:`_BUCKET_NAME`, :data:`_LEGACY_BUCKET_NAME`) or an
    access point ARN; an ``s3://`` URL is refused with the name to write instead."""
    bucket = options.required_text("bucket")
    if _ACCESS_POINT_ARN.fullmatch(bucket) or _BUCKET_NAME.fullmatch(bucket):
        return bucket
    legacy = len(bucket) > 63 or bucket.lower() != bucket or "_" in bucket
    if legacy and _LEGACY_BUCKET_NAME.fullmatch(bucket):
        return bucket
    if bucket.startswith("s3://"):
        name, _, prefix = bucket[len("s3://") :].partition("/")
        where = f" and {options.setting('prefix')} = {prefix.strip('/')!r}" if prefix.strip("/") else ""
        raise options.error(
            "bucket", f"must be the bucket's name alone, got {bucket!r}: write {name!r}{where}."
        )
    raise options.error(
        "bucket",
        "must be an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens, starting and ending "
        f"with a letter or digit) or an access point ARN, got {bucket!r}.",
    )


def _region(options: PluginOptions) -> str | None:
    """``region`` when it has the shape botocore accepts (see :data:`_REGION`), None when absent."""
    region = options.text("region")
    if region is not None and not _REGION.fullmatch(region):
        raise options.error(
            "region",
            f"must be a region name (letters, digits and hyphens, like 'eu-west-1'), got {region!r}.",
        )
    return region


def _endpoint_url(options: PluginOptions) -> str | None:
    """``endpoint_url``: an http:// or https:// URL with a host name or IP address and, if any, a port from 1
    to 65535 (what botocore checks only when it builds the client, on the upload thread); None when absent."""
    url = options.text("endpoint_url")
    if url is None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # brackets holding no IPv6 address
        raise options.error("endpoint_url", f"has no valid host name or IP address, got {url!r}.") from None
    if parts.scheme not in ("http", "https"):
        raise options.error("endpoint_url", f"must be an http:// or https:// URL, got {url!r}.")
    if not parts.hostname:
        raise options.error("endpoint_url", f"must name a host (https://<host>[:<port>]), got {url!r}.")
    if any(character in url for character in "\t\r\n") or not _is_host(parts.hostname, parts.netloc):
        raise options.error("endpoint_url", f"has no valid host name or IP address, got {url!r}.")
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0:
        raise options.error("endpoint_url", f"has a port that is not a number from 1 to 65535, got {url!r}.")
    return url


def _is_host(hostname: str, netloc: str) -> bool:
    """True for a DNS name (labels of :data:`_HOST_LABEL`, a final dot allowed) or an IP address (IPv6 in
    brackets in ``netloc``)."""
    if "[" in netloc:
        try:
            return ipaddress.ip_address(hostname).version == 6
        except ValueError:
            return False
    name = hostname.removesuffix(".")
    return len(name) <= 255 and all(_HOST_LABEL.fullmatch(label) for label in name.split("."))
