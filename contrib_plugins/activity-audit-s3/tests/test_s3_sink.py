"""The S3 sink against a real S3 API (moto's server on loopback): configuration, checksums, Object Lock,
SSE, 403, an outage, a SIGKILL while the remote is down, and the spool cap. Every test counts event_ids."""

from __future__ import annotations

import gzip
import logging
import os
import re
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
from activity_audit_s3.config import OPTION_KEYS, SECRET_KEYS, S3Config
from activity_audit_s3.plugin import plugin
from botocore.exceptions import ClientError
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from s3_server import SECRET_ACCESS_KEY, MotoS3, s3_options

from activity_audit import flush
from activity_audit.conf import MAX_SECONDS, build
from activity_audit.dispatch import pipeline
from activity_audit.plugin_options import PluginOptions
from activity_audit.threads import pipeline_thread
from tests.support.remote_archive import (
    audit_settings,
    count_ids,
    emit_marked,
    every_log_record_into_the_trail,
    finish_child,
    pipeline_events,
    records_of_objects,
    start_child,
    wait_until,
)

S3 = "ACTIVITY_AUDIT['PLUGINS']['s3']"
KEY = re.compile(
    r"^archive/web/(\d{4})/(\d{2})/(\d{2})/(\d{2})/([0-9a-f-]{36})-(\d{12})-(\d{12})\.jsonl\.gz$"
)


def configure(**options: Any) -> None:
    """Run the plugin's audit_configure on settings built from ``options`` (no global state changed)."""
    plugin.audit_configure(settings=build({"PLUGINS": {"s3": options}}, django_settings))


def delivered(server: MotoS3, bucket: str, ids: list[str]) -> bool:
    return count_ids(records_of_objects(server.archive(bucket).values()), ids).complete


# --- configuration --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, f"{S3}['bucket'] is required."),
        (
            {"bukket": "b"},
            f"{S3}['bukket'] is not an option of this plugin. Did you mean 'bucket'?",
        ),
        (
            {"bucket": "acme-audit", "sse": "DES"},
            f"{S3}['sse'] must be one of 'AES256', 'aws:kms', got 'DES'.",
        ),
        (
            {"bucket": "acme-audit", "sse_kms_key_id": "k"},
            f"{S3}['sse_kms_key_id'] needs {S3}['sse'] = 'aws:kms'.",
        ),
        (
            {"bucket": "acme-audit", "secret_access_key": "Sup3rSecret"},
            f"{S3}['access_key_id'] is required when the other half of the key pair is set.",
        ),
        (
            {"bucket": "acme-audit", "access_key_id": "id", "secret_access_key": 1234567},
            f"{S3}['secret_access_key'] must be a non-empty string, got a secret value.",
        ),
        (
            {"bucket": "acme-audit", "secret_access_key": {"$env": "AUDIT_TEST_UNSET_VARIABLE"}},
            f"{S3}['secret_access_key'] reads the environment variable AUDIT_TEST_UNSET_VARIABLE, "
            "which is not set.",
        ),
        (
            {"bucket": "acme-audit", "endpoint_url": "ftp://x"},
            f"{S3}['endpoint_url'] must be an http:// or https:// URL, got 'ftp://x'.",
        ),
        (
            {"bucket": "acme-audit", "endpoint_url": "http://"},
            f"{S3}['endpoint_url'] must name a host (https://<host>[:<port>]), got 'http://'.",
        ),
        (
            {"bucket": "acme-audit", "endpoint_url": "https://minio internal:9000"},
            f"{S3}['endpoint_url'] has no valid host name or IP address, got 'https://minio internal:9000'.",
        ),
        (
            {"bucket": "acme-audit", "endpoint_url": "http://[zz]:9000"},
            f"{S3}['endpoint_url'] has no valid host name or IP address, got 'http://[zz]:9000'.",
        ),
        (
            {"bucket": "acme-audit", "endpoint_url": "http://minio:70000"},
            f"{S3}['endpoint_url'] has a port that is not a number from 1 to 65535, got 'http://minio:70000'.",
        ),
        (
            {"bucket": "acme-audit", "endpoint_url": "http://minio:port"},
            f"{S3}['endpoint_url'] has a port that is not a number from 1 to 65535, got 'http://minio:port'.",
        ),
        (
            {"bucket": "s3://acme-audit"},
            f"{S3}['bucket'] must be the bucket's name alone, got 's3://acme-audit': write 'acme-audit'.",
        ),
        (
            {"bucket": "s3://acme-audit/prod/web/"},
            f"{S3}['bucket'] must be the bucket's name alone, got 's3://acme-audit/prod/web/': write "
            f"'acme-audit' and {S3}['prefix'] = 'prod/web'.",
        ),
        *[
            (
                {"bucket": bucket},
                f"{S3}['bucket'] must be an S3 bucket name (3 to 63 lowercase letters, digits, dots and "
                "hyphens, starting and ending with a letter or digit) or an access point ARN, "
                f"got {bucket!r}.",
            )
            for bucket in (
                "acme-audit/prod",
                "ab",
                "acme..audit",
                "-acme-audit",
                "192.168.1.10",
                "acme audit",
            )
        ],
        (
            {"bucket": "acme-audit", "region": "eu west 1"},
            f"{S3}['region'] must be a region name (letters, digits and hyphens, like 'eu-west-1'), "
            "got 'eu west 1'.",
        ),
        (
            {"bucket": "acme-audit", "spool_max_bytes": 10},
            f"{S3}['spool_max_bytes'] must be an integer of at least 1024, got 10.",
        ),
        (
            {"bucket": "acme-audit", "segment_max_age": float("inf")},
            f"{S3}['segment_max_age'] must be a number of seconds of at least 0.01, got inf.",
        ),
        (
            {"bucket": "acme-audit", "segment_max_age": 1e10},
            f"{S3}['segment_max_age'] must be at most {MAX_SECONDS} seconds (the longest wait Python "
            "supports), got 10000000000.0.",
        ),
        (
            {"bucket": "acme-audit", "retry_initial": float("nan")},
            f"{S3}['retry_initial'] must be a number of seconds of at least 0.01, got nan.",
        ),
        (
            {"bucket": "acme-audit", "connect_timeout": float("nan")},
            f"{S3}['connect_timeout'] must be a number of seconds of at least 0.1, got nan.",
        ),
        (
            {"bucket": "acme-audit", "read_timeout": float("inf")},
            f"{S3}['read_timeout'] must be a number of seconds of at least 0.1, got inf.",
        ),
    ],
)
def test_a_wrong_setting_stops_start_up_naming_it(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        configure(**options)
    assert str(error.value) == message
    assert "Sup3rSecret" not in str(error.value) and "1234567" not in str(error.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("bucket", "acme.audit-2024"),
        ("bucket", "Acme_Audit_Legacy"),  # us-east-1 buckets made before March 2018
        ("bucket", "audit-ap-a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6-s3alias"),  # an access point alias
        ("bucket", "arn:aws:s3:eu-west-1:123456789012:accesspoint/audit-writer"),
        ("bucket", "audit--euw1-az1--x-s3"),  # a directory bucket
        ("region", "eu-west-1"),
        ("region", "us-gov-west-1"),
        ("region", "auto"),  # S3-compatible stores name their regions as they like
        ("region", "nyc3"),
        ("endpoint_url", "https://minio.internal:9000"),
        ("endpoint_url", "http://127.0.0.1:9000"),
        ("endpoint_url", "http://[::1]:9000"),
        ("endpoint_url", "https://s3.eu-west-1.amazonaws.com"),
        ("endpoint_url", "https://storage.example.com/s3"),
    ],
)
def test_the_forms_s3_and_compatible_stores_accept_are_taken(key: str, value: str) -> None:
    options = PluginOptions("s3", {"bucket": "acme-audit", key: value}, OPTION_KEYS, SECRET_KEYS)
    assert getattr(S3Config.read(options), key) == value


def test_installed_but_not_configured_stays_inactive() -> None:
    plugin.audit_configure(settings=build({}, django_settings))
    assert plugin.spool is None


def test_require_object_lock_refuses_a_bucket_without_it(moto_s3: MotoS3, bucket: str) -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        configure(**s3_options(moto_s3, bucket, require_object_lock=True))
    assert str(error.value) == (
        f"{S3}['require_object_lock'] is True but the bucket s3://{bucket} at "
        f"{moto_s3.endpoint_url} has no Object Lock configuration."
    )


def test_the_object_lock_check_at_start_up_keeps_boto_logging_out_of_the_trail(
    moto_s3: MotoS3, log_dir: Path
) -> None:
    """The check runs on the thread that configures (the main one), not on the spool's: botocore's DEBUG
    records of it carry the session token and the signature, and must not reach app.log."""
    token = "FwoGZXIvYXdzEBYaDHhPq3R0c2Vzc2lvbnRva2VuSUpXVzNHNENvUjJrZXkxMjM0NTY3ODkwYWJjZGVm"
    moto_s3.create_bucket("audit-locked-logging", object_lock=True)
    options = s3_options(moto_s3, "audit-locked-logging", require_object_lock=True, session_token=token)
    with (
        every_log_record_into_the_trail(),
        override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, s3=options)),
    ):
        assert getattr(pipeline_thread, "active", False) is False  # the mark was the check's only
        logging.getLogger("tests.s3").debug("configured")
        assert flush(10)
    records = [orjson.loads(line) for line in (log_dir / "app.log").read_bytes().splitlines()]
    assert [record["message"] for record in records if record["name"] == "tests.s3"] == ["configured"]
    assert [record["name"] for record in records if record["name"].startswith(("botocore", "urllib3"))] == []
    assert token[:20] not in (log_dir / "app.log").read_text()


# --- delivery ---------------------------------------------------------------------------------------------
def test_normal_operation_delivers_every_record_exactly_once(
    moto_s3: MotoS3, bucket: str, s3_sink: dict
) -> None:
    ids = emit_marked(300, "normal")
    assert flush(10)
    wait_until(lambda: delivered(moto_s3, bucket, ids), 30, "every record in S3")

    objects = moto_s3.archive(bucket)
    count = count_ids(records_of_objects(objects.values()), ids)
    assert (count.found, count.missing, count.duplicated) == (300, [], {})
    client = moto_s3.client()
    for key, data in objects.items():
        match = KEY.match(key)
        assert match, key
        records = [orjson.loads(line) for line in gzip.decompress(data).splitlines()]
        first, last = records[0], records[-1]
        assert {record["stream_id"] for record in records} == {match[5]}
        assert (first["seq"], last["seq"]) == (int(match[6]), int(match[7]))
        assert first["timestamp"][:13].replace("-", "/").replace("T", "/") == "/".join(match.groups()[:4])
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == "application/gzip"
        assert head["Metadata"] == {
            "records": str(len(records)),
            "stream-id": first["stream_id"],
            "first-seq": str(first["seq"]),
            "last-seq": str(last["seq"]),
        }
    ours = [r for r in records_of_objects(objects.values()) if r.get("marker") == "normal"]
    assert set(ours[0]) == {
        "timestamp",
        "level",
        "name",
        "message",
        "marker",
        "number",
        "event_id",
        "stream_id",
        "seq",
    }
    assert [r["number"] for r in ours] == list(range(300))  # delivered in order


def test_object_lock_bucket_accepts_the_uploads_because_they_carry_a_checksum(
    moto_s3: MotoS3, log_dir: Path
) -> None:
    moto_s3.create_bucket("audit-locked", object_lock=True)
    bare = moto_s3.client(request_checksum_calculation="when_required")
    with pytest.raises(ClientError, match="Content-MD5"):
        bare.put_object(Bucket="audit-locked", Key="no-checksum", Body=b"x")  # the server does enforce it

    options = s3_options(moto_s3, "audit-locked", require_object_lock=True)
    with override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, s3=options)):
        ids = emit_marked(50, "locked")
        wait_until(lambda: delivered(moto_s3, "audit-locked", ids), 30, "every record in the locked bucket")
    count = count_ids(records_of_objects(moto_s3.archive("audit-locked").values()), ids)
    assert (count.found, count.duplicated) == (50, {})
    assert pipeline_events(log_dir, "UPLOAD_FAILED") == []


def test_server_side_encryption_is_requested(moto_s3: MotoS3, bucket: str, log_dir: Path) -> None:
    options = s3_options(moto_s3, bucket, sse="AES256")
    with override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, s3=options)):
        ids = emit_marked(5, "sse")
        wait_until(lambda: delivered(moto_s3, bucket, ids), 30, "the records in S3")
    client = moto_s3.client()
    for key in moto_s3.archive(bucket):
        assert client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"


def test_access_denied_is_a_clear_error_and_the_records_stay_spooled(tmp_path: Path, log_dir: Path) -> None:
    server = MotoS3(tmp_path, enforce_auth=True)
    server.start()
    try:
        options = s3_options(server, "audit-denied")
        with override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, s3=options)):
            emit_marked(5, "denied")
            assert flush(10)
            wait_until(lambda: pipeline_events(log_dir, "UPLOAD_FAILED"), 30, "an UPLOAD_FAILED record")
            assert plugin.spool is not None and plugin.spool.backlog()
    finally:
        server.stop()
    [event] = pipeline_events(log_dir, "UPLOAD_FAILED")
    assert event["source"] == "s3" and event["lost"] == 0
    assert event["error"].startswith("S3UploadError: upload of s3://audit-denied/archive/web/")
    assert "403 InvalidAccessKeyId: access denied" in event["error"]
    assert "check the credentials and that they may s3:PutObject on this bucket and prefix" in event["error"]
    assert SECRET_ACCESS_KEY not in (log_dir / "audit.log").read_text()


def test_outage_then_recovery_delivers_the_backlog_in_order(tmp_path: Path, log_dir: Path) -> None:
    server = MotoS3(tmp_path)
    server.start()
    server.create_bucket("audit-outage")
    options = s3_options(server, "audit-outage")
    try:
        with override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, s3=options)):
            before = emit_marked(100, "before")
            wait_until(lambda: delivered(server, "audit-outage", before), 30, "the first records in S3")
            kept = server.archive("audit-outage")  # moto forgets everything when stopped
            server.stop()

            during = emit_marked(200, "during")
            assert flush(10)
            wait_until(lambda: pipeline_events(log_dir, "UPLOAD_FAILED"), 30, "an UPLOAD_FAILED record")
            assert plugin.spool is not None and len(plugin.spool.backlog()) >= 1

            server.start()
            server.create_bucket("audit-outage")
            wait_until(lambda: delivered(server, "audit-outage", during), 60, "the backlog in S3")
            after = server.archive("audit-outage")
    finally:
        server.stop()

    records = records_of_objects([*kept.values(), *after.values()])
    count = count_ids(records, before + during)
    assert (count.found, count.missing, count.duplicated) == (300, [], {})
    numbers = [r["number"] for r in records if r.get("marker") == "during"]
    assert numbers == list(range(200))  # objects read in key order = seq order: the backlog kept its order
    [warning] = pipeline_events(log_dir, "UPLOAD_FAILED")  # one report per REPORT_INTERVAL, not one per retry
    assert warning["source"] == "s3" and f"http://127.0.0.1:{server.port}" in warning["error"]


def test_sigkill_while_the_remote_is_down_loses_nothing(tmp_path: Path) -> None:
    server = MotoS3(tmp_path)
    log_dir = tmp_path / "shared_log_dir"
    log_dir.mkdir()
    plugins = {"s3": {**s3_options(server, "audit-killed"), "retry_max": 0.3}}
    killed = start_child(plugins, log_dir, 150, "killed", mode="hold")  # the remote is not even started
    os.kill(killed.process.pid, signal.SIGKILL)
    killed.process.wait(10)
    spooled = list((log_dir / "spool" / "s3").iterdir())
    assert spooled and all(path.stat().st_mode & 0o777 == 0o640 for path in spooled)

    server.start()
    try:
        server.create_bucket("audit-killed")
        restarted = start_child(plugins, log_dir, 20, "restarted", mode="drain")
        finish_child(restarted)
        archive = server.archive("audit-killed")
    finally:
        server.stop()
    count = count_ids(records_of_objects(archive.values()), killed.ids + restarted.ids)
    assert (count.found, count.missing, count.duplicated) == (170, [], {})


def test_a_full_spool_refuses_records_counts_them_and_says_so(tmp_path: Path, log_dir: Path) -> None:
    server = MotoS3(tmp_path)
    options = s3_options(server, "audit-full", spool_max_bytes=20_000)
    with override_settings(ACTIVITY_AUDIT=audit_settings(log_dir, s3=options)):
        before = pipeline.stats()["submitted"]  # handed to the plugin while it was not configured yet
        ids = []
        for _burst in range(20):  # the remote is down: the spool fills up
            ids += emit_marked(20, "full")
            assert flush(10)
        spool_dir = log_dir / "spool" / "s3"
        assert sum(path.stat().st_size for path in spool_dir.iterdir()) <= 20_000
        [alarm] = [e for e in pipeline_events(log_dir, "SINK_FAILED") if e["source"] == "s3"]
        assert "spool_max_bytes=20000" in alarm["error"] and alarm["lost"] > 0
        stream = pipeline.stream_id

        def archived() -> list[dict[str, Any]]:
            records = records_of_objects(server.archive("audit-full").values())
            return [record for record in records if record["stream_id"] == stream]

        server.start()
        try:
            server.create_bucket("audit-full")

            def settled() -> bool:
                assert flush(10)
                sink = pipeline.stats()["sinks"]["s3"]
                return (
                    len(archived()) == sink["delivered"]
                    and sink["delivered"] + sink["lost"] == stream_records()
                )

            def stream_records() -> int:
                return int(pipeline.stats()["submitted"]) - before

            wait_until(settled, 60, "every spooled record in S3")
            records = archived()
            stats = pipeline.stats()
        finally:
            server.stop()
    delivered, lost = stats["sinks"]["s3"]["delivered"], stats["sinks"]["s3"]["lost"]
    seqs = [record["seq"] for record in records]
    assert len(seqs) == len(set(seqs)) == delivered  # no duplicate
    assert delivered + lost == stats["submitted"] - before  # each record was either archived or counted lost
    assert len(set(range(before + 1, stats["submitted"] + 1)) - set(seqs)) == lost
    count = count_ids(records, ids)
    assert 0 < len(count.missing) <= lost and count.found == len(ids) - len(count.missing)
