"""Secrets the redactor once missed, sent through the real capture paths: outbound HTTP calls, a project's own
log calls and records logged at the ``API`` level. Each test shows the exact text written for its place."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from activity_audit.clients.http import HTTPClient
from activity_audit.logconfig import APIJSONFormatter, PipelineHandler
from activity_audit.redaction import MASK

M = MASK
SECRET = "hunter2secretXYZ"
RESPONSE = "6629fae49393a05397450978507c4ef1"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_POST = do_GET


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def app_log() -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.redaction.capture")
    handler = PipelineHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger
    logger.removeHandler(handler)


def written_lines(audit_records: Any) -> str:
    return "\n".join(entry.line.decode() for entry in audit_records.entries)


def only_request(audit_records: Any) -> dict[str, Any]:
    (record,) = [record for record in audit_records.records if "request_repr" in record]
    return record["request_repr"]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            f'sent Authorization: Digest username="bob", nonce="dcd98b71", response="{RESPONSE}"',
            f"sent Authorization: Digest {M}",
        ),
        (
            f"cannot reach postgres://app:pa'ss{SECRET}@db.internal:5432/app",
            f"cannot reach postgres://app:{M}@db.internal:5432/app",
        ),
        (f'cannot reach redis://:pa"ss{SECRET}@cache:6379/0', f"cannot reach redis://:{M}@cache:6379/0"),
        (f"cannot reach amqp://u:pa\\ss{SECRET}@mq/", f"cannot reach amqp://u:{M}@mq/"),
        (f"cannot reach amqp://u:pa<ss{SECRET}@mq/", f"cannot reach amqp://u:{M}@mq/"),
        ("configured client with ghp_" + "Ab1" * 12, f"configured client with ghp_{M}"),
        ("configured client with sk_live_4eC39HqLyjWDarjtT1zdp7dc", f"configured client with sk_live_{M}"),
        (
            "configured client with xoxb-1234567890-1234567890123-AbCdEfGhIjKl",
            f"configured client with xoxb-{M}",
        ),
        (f"retrying with X-Api-Key: {SECRET}", f"retrying with X-Api-Key: {M}"),
        (
            f"cloning https://a1b2c3d4e5f6a7b8c9d0{SECRET}@github.com/org/repo.git",
            f"cloning https://{M}@github.com/org/repo.git",
        ),
    ],
)
def test_messages_of_a_project_log_call(
    app_log: logging.Logger, audit_records: Any, message: str, expected: str
) -> None:
    app_log.info(message)
    (record,) = audit_records.records
    assert record["message"] == expected
    assert SECRET not in written_lines(audit_records) and RESPONSE not in written_lines(audit_records)


def test_pairs_in_the_extra_of_a_project_log_call(app_log: logging.Logger, audit_records: Any) -> None:
    app_log.info(
        "retrying",
        extra={
            "headers": [["Authorization", f"Token {SECRET}"], ["Accept", "*/*"]],
            "env": [{"name": "MYSQL_PWD", "value": SECRET}, {"name": "TZ", "value": "UTC"}],
        },
    )
    (record,) = audit_records.records
    assert record["extra_fields"] == {
        "headers": [["Authorization", M], ["Accept", "*/*"]],
        "env": [{"name": "MYSQL_PWD", "value": M}, {"name": "TZ", "value": "UTC"}],
    }


def test_an_outbound_body_cut_at_the_limit_holding_json_in_a_string(base: str, audit_records: Any) -> None:
    payload = {"event": "user.created", "raw": json.dumps({"password": SECRET}), "pad": "x" * 70_000}
    HTTPClient("hooks").post(f"{base}/webhook", json=payload)
    body = only_request(audit_records)["body"]
    assert body["truncated"] is True
    assert body["text"].startswith(
        '{"event": "user.created", "raw": "{\\"password\\": \\"' + M + '\\"}", "pad": "xxx'
    )
    assert SECRET not in written_lines(audit_records)


def test_an_outbound_json_body_with_named_values_and_a_percent_encoded_url(
    base: str, audit_records: Any
) -> None:
    payload = {
        "env": [{"name": "DB_PASSWORD", "value": SECRET}, {"name": "DEBUG", "value": "1"}],
        "return_to": f"https%3A%2F%2Fapp.example%2Fcb%3Faccess_token%3D{SECRET}",
    }
    HTTPClient("k8s").post(f"{base}/deploy", json=payload)
    assert only_request(audit_records)["body"] == {
        "env": [{"name": "DB_PASSWORD", "value": M}, {"name": "DEBUG", "value": "1"}],
        "return_to": f"https%3A%2F%2Fapp.example%2Fcb%3Faccess_token%3D{M}",
    }


def test_an_outbound_form_with_a_password_confirmation(base: str, audit_records: Any) -> None:
    HTTPClient("rails").post(
        f"{base}/users", data={"user[email]": "a@b.c", "user[password_confirmation]": SECRET}
    )
    assert only_request(audit_records)["body"] == {"user[email]": "a@b.c", "user[password_confirmation]": M}


def test_an_outbound_url_with_a_token_as_its_user_name(base: str, audit_records: Any) -> None:
    HTTPClient("git").get(base.replace("http://", "http://0123456789abcdef0123@") + "/org/repo.git?a=1")
    assert only_request(audit_records)["url"] == base.replace("http://", f"http://{M}@") + "/org/repo.git"


def test_fields_of_a_record_logged_at_the_api_level(audit_records: Any) -> None:
    logger = logging.getLogger("tests.redaction.api")
    handler = PipelineHandler(channel="api")
    handler.setFormatter(APIJSONFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(1)
    try:
        logger.log(
            22,
            "called",
            extra={
                "service_name": f"https://bob:{SECRET}@partner.example",
                "protocol": "http",
                "request_type": "x",
            },
        )
    finally:
        logger.removeHandler(handler)
    (record,) = audit_records.records
    assert (record["service_name"], record["protocol"], record["request_type"]) == (
        f"https://bob:{M}@partner.example",
        "http",
        "x",
    )
    assert record["redacted"] == ["service_name"]
