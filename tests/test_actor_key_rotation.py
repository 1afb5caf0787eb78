"""A ``SECRET_KEY`` rotated with ``SECRET_KEY_FALLBACKS``: reading the user for the request record changes
nothing in the session (no new key, no flush, no save), so nobody is logged out, and the actor is who Django
says it is. Sync and async, with the real ``SessionMiddleware`` and ``AuthenticationMiddleware`` and database
sessions."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client
from django.urls import path

pytestmark = pytest.mark.django_db

OLD_KEY = "old-secret-key-" + "x" * 40
NEW_KEY = "new-secret-key-" + "y" * 40
SESSION_AND_AUTH = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
AUDIT = "activity_audit.middleware.AuditLoggingMiddleware"
AUDIT_FIRST = [AUDIT, *SESSION_AND_AUTH]  # as documented: the user is read after SessionMiddleware finished
AUDIT_INSIDE = [*SESSION_AND_AUTH, AUDIT]  # the user is read before SessionMiddleware saves the session


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("static page", content_type="text/plain")


async def aplain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("static page", content_type="text/plain")


def whoami(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(request.user), content_type="text/plain")


urlpatterns = [path("plain/", plain), path("aplain/", aplain), path("whoami/", whoami)]


@pytest.fixture
def rotated(settings):
    """A client logged in as "ada" under the old key, which has since been rotated into the fallbacks."""
    settings.ROOT_URLCONF = __name__
    settings.SECRET_KEY = OLD_KEY
    user = User.objects.create_user("ada", password="pw-for-tests-only")
    client = Client()
    client.force_login(user)
    settings.SECRET_KEY = NEW_KEY
    settings.SECRET_KEY_FALLBACKS = [OLD_KEY]
    return client, user


def get(kind: str, client: Client, name: str) -> HttpResponse:
    if kind == "wsgi":
        return client.get(f"/{name}/")
    aclient = AsyncClient()
    aclient.cookies = client.cookies
    return async_to_sync(aclient.get)(f"/a{name}/")


def stored_sessions() -> dict[str, dict]:
    return {row.session_key: row.get_decoded() for row in Session.objects.all()}


@pytest.mark.parametrize("stack", [AUDIT_FIRST, AUDIT_INSIDE], ids=["audit first", "audit inside"])
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_session_verified_by_a_fallback_key_is_the_user_and_is_left_alone(
    settings, audit_records, rotated, kind, stack
):
    client, user = rotated
    settings.MIDDLEWARE = stack
    before = stored_sessions()
    audit_records.clear()

    response = get(kind, client, "plain")

    assert response.status_code == 200
    assert response.cookies == {}  # no new session cookie: the view never asked for one
    assert stored_sessions() == before  # no new key, no flush, no save
    [record] = audit_records.of("audit.request")
    assert record["actor"] == f"user:{user.pk}"
    assert record["request_repr"]["user"] == {"id": user.pk, "username": "ada"}
    assert "actor_error" not in record
    assert client.get("/whoami/").content == b"ada"  # still logged in: Django upgrades the session now


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_session_no_key_verifies_is_anonymous_and_left_for_django_to_flush(
    settings, audit_records, rotated, kind
):
    client, user = rotated
    settings.MIDDLEWARE = AUDIT_FIRST
    user.set_password("changed-elsewhere")  # the session's hash now matches neither key: Django flushes it
    user.save()
    before = stored_sessions()
    assert [data["_auth_user_id"] for data in before.values()] == [str(user.pk)]
    audit_records.clear()

    response = get(kind, client, "plain")

    assert response.cookies == {}
    assert stored_sessions() == before
    [record] = audit_records.of("audit.request")
    assert (record["actor"], record["request_repr"]["user"]) == ("anonymous", None)
    assert client.get("/whoami/").content == b"AnonymousUser"  # Django's own read flushes it, as always
    assert stored_sessions() == {}


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_session_verified_by_the_current_key_is_the_user(settings, audit_records, kind):
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = AUDIT_FIRST
    user = User.objects.create_user("ada", password="pw-for-tests-only")
    client = Client()
    client.force_login(user)
    [session_key] = stored_sessions()
    audit_records.clear()

    get(kind, client, "plain")

    [record] = audit_records.of("audit.request")
    assert record["actor"] == f"user:{user.pk}"
    assert SessionStore(session_key).get(HASH_SESSION_KEY) == user.get_session_auth_hash()


def test_a_request_refused_before_authentication_leaves_the_session_alone(settings, audit_records, rotated):
    client, user = rotated
    settings.MIDDLEWARE = [
        AUDIT,
        SESSION_AND_AUTH[0],
        "django.middleware.common.CommonMiddleware",
        SESSION_AND_AUTH[1],
    ]
    settings.ALLOWED_HOSTS = ["good.example"]
    before = stored_sessions()
    audit_records.clear()

    response = client.get("/plain/", HTTP_HOST="bad.example")

    assert response.status_code == 400
    assert response.cookies == {}
    assert stored_sessions() == before
    [record] = audit_records.of("audit.request")
    assert (record["actor"], record["response_repr"]["status_code"]) == (f"user:{user.pk}", 400)
