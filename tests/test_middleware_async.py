"""AuditLoggingMiddleware in an ASGI stack: Django's ASGI handler (AsyncClient) and a real uvicorn server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient

from activity_audit.context import current
from tests import request_urls
from tests.conftest import read_lines
from tests.request_support import MIDDLEWARE, incoming, stable

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ahttp(settings) -> AsyncClient:
    settings.ROOT_URLCONF = "tests.request_urls"
    settings.MIDDLEWARE = MIDDLEWARE
    return AsyncClient()


def test_the_middleware_takes_the_mode_of_the_stack():
    from asgiref.sync import iscoroutinefunction

    from activity_audit.middleware import AuditLoggingMiddleware

    async def async_view(request):
        return None

    def sync_view(request):
        return None

    in_async_stack = AuditLoggingMiddleware(async_view)
    in_sync_stack = AuditLoggingMiddleware(sync_view)
    # Django adapts a middleware only when its mode differs from the stack's: these need no adapter.
    assert iscoroutinefunction(in_async_stack)
    assert not iscoroutinefunction(in_sync_stack)


@pytest.mark.django_db
def test_async_json_post_exact_record(ahttp, audit_records):
    @async_to_sync
    async def scenario():
        response = await ahttp.post(
            "/async-echo/?q=1", data=json.dumps({"a": [1, 2]}), content_type="application/json"
        )
        assert response.status_code == 201
        records = await sync_to_async(audit_records.of)("audit.request")
        assert len(records) == 1
        assert response["X-Request-ID"] == records[0]["request_id"]
        assert stable(records[0]) == incoming(
            "POST",
            "/async-echo/",
            query={"q": "1"},
            request_headers={
                "Host": "testserver",
                "Content-Length": "13",
                "Content-Type": "application/json",
                "Cookie": "",
            },
            body={"a": [1, 2]},
            status=201,
            response_headers={"Content-Type": "application/json"},
            response_body={"received": {"a": [1, 2]}},
            route="async-echo/",
        )
        assert current().request is None

    scenario()


@pytest.mark.django_db
def test_async_user_is_read_after_the_view_without_a_sync_query(ahttp, audit_records):
    @async_to_sync
    async def scenario():
        user = await sync_to_async(User.objects.create_user)("grace", password="pw-not-logged")
        await sync_to_async(ahttp.force_login)(user)  # aforce_login is Django 5.0+
        await sync_to_async(audit_records.clear)()
        await ahttp.get("/async-whoami/")
        (record,) = await sync_to_async(audit_records.of)("audit.request")
        assert (record["actor"], record["request_repr"]["user"]) == (
            f"user:{user.pk}",
            {"id": user.pk, "username": "grace"},
        )

    scenario()


@pytest.mark.django_db
def test_async_view_exception_is_recorded_and_propagates(ahttp, audit_records):
    @async_to_sync
    async def scenario():
        with pytest.raises(ValueError, match="the async view failed"):
            await ahttp.get("/async-boom/")
        (record,) = await sync_to_async(audit_records.of)("audit.request")
        assert (record["response_repr"]["status_code"], record["error_message"], record["actor"]) == (
            500,
            "ValueError: the async view failed",
            "anonymous",
        )
        assert current().request is None

    scenario()


@pytest.mark.django_db
def test_async_streaming_response_is_not_consumed(ahttp, audit_records):
    @async_to_sync
    async def scenario():
        request_urls.STREAM_PROGRESS.clear()
        response = await ahttp.get("/async-stream/")
        received = b"".join([chunk async for chunk in response.streaming_content])
        assert received == b"".join(request_urls.STREAM_CHUNKS)
        (record,) = await sync_to_async(audit_records.of)("audit.request")
        assert record["response_repr"]["body"] == {"type": "text/plain", "size": None, "streaming": True}

    scenario()


# --- a real ASGI server ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def uvicorn_server(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.request_server_settings",
        "AUDIT_TEST_LOG_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.request_asgi:application",
            "--port",
            str(port),
            "--lifespan",
            "off",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/health/", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail(f"uvicorn did not start: {process.communicate()[0]}")
    try:
        yield base, tmp_path
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_under_uvicorn_streams_reach_the_client_whole_and_records_are_written(uvicorn_server):
    base, log_dir = uvicorn_server
    posted = requests.post(f"{base}/async-echo/", json={"password": "hunter2", "n": 1}, timeout=10)
    streamed = requests.get(f"{base}/async-stream/", headers={"X-Request-ID": "uv-1"}, timeout=10)
    assert posted.status_code == 201 and posted.headers["X-Request-ID"]
    assert streamed.content == b"".join(request_urls.STREAM_CHUNKS)
    assert streamed.headers["X-Request-ID"] == "uv-1"
    deadline = time.monotonic() + 10
    records: list[dict] = []
    while time.monotonic() < deadline and len(records) < 2:
        records = [r for r in read_lines(log_dir / "api.log") if r.get("name") == "audit.request"]
        time.sleep(0.05)
    post_record, stream_record = records
    assert post_record["request_repr"]["body"] == {"password": "[REDACTED]", "n": 1}
    assert post_record["request_id"] == posted.headers["X-Request-ID"]
    assert post_record["redacted"] == ["request_repr.body.password", "response_repr.body.received.password"]
    assert (stream_record["request_id"], stream_record["response_repr"]["body"]) == (
        "uv-1",
        {"type": "text/plain", "size": None, "streaming": True},
    )
    assert "hunter2" not in (log_dir / "api.log").read_text()


def test_django_s_own_line_about_an_error_response_carries_the_request_id_in_an_async_stack(
    ahttp, audit_records
):
    import logging

    from activity_audit.logconfig import PipelineHandler

    logger = logging.getLogger("django.request")
    handler = PipelineHandler()
    logger.addHandler(handler)
    try:
        response = async_to_sync(ahttp.get)("/no-such-page/")
    finally:
        logger.removeHandler(handler)

    assert response.status_code == 404
    [request] = audit_records.of("audit.request")
    lines = [r for r in audit_records.records if r.get("name") == "django.request"]
    assert [(r["message"], r["request"]) for r in lines] == [
        ("Not Found: /no-such-page/", request["request_id"])
    ]
