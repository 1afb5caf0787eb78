"""When the user cannot be read (the database is down, a user backend raises): the request record is kept with
actor ``unknown`` and ``actor_error``, sync and async, and the failure is reported once. A failure that does
cost the record is counted as one record lost. Exact outcomes."""

from __future__ import annotations

from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from activity_audit import middleware
from activity_audit.dispatch import pipeline
from tests.request_support import UUID4

pytestmark = pytest.mark.django_db

MIDDLEWARE = [
    "activity_audit.middleware.AuditLoggingMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
SOURCE = "AuditLoggingMiddleware"


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("static page", content_type="text/plain")


async def aplain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("static page", content_type="text/plain")


class UnreadableUser:
    """A user set by some authentication layer whose ``is_authenticated`` raises."""

    @property
    def is_authenticated(self) -> bool:
        raise RuntimeError("user backend is down")


def unreadable(request: HttpRequest) -> HttpResponse:
    request.user = UnreadableUser()
    return HttpResponse("still fine", content_type="text/plain")


async def aunreadable(request: HttpRequest) -> HttpResponse:
    return unreadable(request)


urlpatterns = [
    path("plain/", plain),
    path("aplain/", aplain),
    path("unreadable/", unreadable),
    path("aunreadable/", aunreadable),
]


def database_down():
    """Every new cursor fails as it does when the database server is unreachable. A real outage cannot be
    arranged inside a test (the test database is the one the test itself runs on), so the cursor is patched,
    below the session store and the auth backend, which run unchanged."""
    return mock.patch.object(
        BaseDatabaseWrapper, "cursor", side_effect=OperationalError("could not connect to server")
    )


def reports():
    """A spy on the pipeline's reporter: every problem reported, as (kind, source, lost, error)."""
    return mock.patch.object(pipeline.reporter, "problem", wraps=pipeline.reporter.problem)


def reported(spy) -> list[tuple[str, str, int, str]]:
    return [
        (call.args[0], call.args[1], call.kwargs.get("lost", 0), call.kwargs.get("error", ""))
        for call in spy.call_args_list
    ]


def get(kind: str, client: Client, url: str) -> HttpResponse:
    if kind == "wsgi":
        return client.get(url)
    aclient = AsyncClient()
    aclient.cookies = client.cookies
    return async_to_sync(aclient.get)(url)


def only_request_record(audit_records) -> dict:
    records = audit_records.of("audit.request")
    assert len(records) == 1, records
    return records[0]


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_database_outage_while_reading_the_user_keeps_the_record(audit_records, kind):
    client = Client()
    client.force_login(User.objects.create_user("ada"))
    audit_records.clear()

    with database_down(), reports() as spy:
        response = get(kind, client, "/plain/" if kind == "wsgi" else "/aplain/")

    assert (response.status_code, response.content) == (200, b"static page")
    record = only_request_record(audit_records)
    assert (record["actor"], record["actor_error"]) == ("unknown", "OperationalError")
    assert record["request_repr"]["user"] is None
    assert record["request_repr"]["path"] == ("/plain/" if kind == "wsgi" else "/aplain/")
    assert record["response_repr"]["status_code"] == 200
    assert record["error_message"] is None
    assert UUID4.fullmatch(record["request_id"])
    assert reported(spy) == [("ACTOR_UNKNOWN", SOURCE, 0, "OperationalError: could not connect to server")]


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_user_that_cannot_be_read_gives_actor_unknown(audit_records, kind):
    with reports() as spy:
        response = get(kind, Client(), "/unreadable/" if kind == "wsgi" else "/aunreadable/")

    assert (response.status_code, response.content) == (200, b"still fine")
    record = only_request_record(audit_records)
    assert (record["actor"], record["actor_error"]) == ("unknown", "RuntimeError")
    assert record["request_repr"]["user"] is None
    assert record["response_repr"]["status_code"] == 200
    assert reported(spy) == [("ACTOR_UNKNOWN", SOURCE, 0, "RuntimeError: user backend is down")]


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_known_actor_carries_no_actor_error(audit_records, kind):
    client = Client()
    user = User.objects.create_user("ada")
    client.force_login(user)
    audit_records.clear()

    get(kind, client, "/plain/" if kind == "wsgi" else "/aplain/")

    record = only_request_record(audit_records)
    assert record["actor"] == f"user:{user.pk}"
    assert "actor_error" not in record


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_failure_that_costs_the_record_is_counted_as_one_record_lost(audit_records, kind):
    # Stands for any bug in building a record: nothing a request can do makes the builder fail.
    bug = RuntimeError("record builder bug")
    with mock.patch.object(middleware, "new_record", side_effect=bug), reports() as spy:
        response = get(kind, Client(), "/plain/" if kind == "wsgi" else "/aplain/")

    assert (response.status_code, response.content) == (200, b"static page")
    assert UUID4.fullmatch(response["X-Request-ID"])
    assert audit_records.of("audit.request") == []
    assert reported(spy) == [("CAPTURE_FAILED", SOURCE, 1, "RuntimeError: record builder bug")]
