"""LOGIN, LOGOUT and LOGIN_FAILED records: username, client IP, request id, never a password."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from activity_audit.context import request_scope
from tests.crud_helpers import crud, record

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple"


@pytest.fixture
def carol():
    return User.objects.create_user("carol", password=PASSWORD)


def a_request(ip="203.0.113.9"):
    request = RequestFactory().post("/login/", REMOTE_ADDR=ip)
    request.session = SessionStore()
    request.user = AnonymousUser()  # as AuthenticationMiddleware leaves it before a login
    return request


def auth_record(event_type, user, username, request_id, client_ip, actor):
    return record(
        event_type,
        "User",
        None if user is None else user.pk,
        {},
        app="auth",
        actor=actor,
        user=None if user is None else {"id": user.pk, "username": user.username},
        db=None if user is None else "default",
        request_id=request_id,
        message=f"{event_type} event for User (username: {username})",
        username=username,
        client_ip=client_ip,
    )


def test_login_logout_and_failure(audit_records, carol):
    audit_records.clear()
    request = a_request()
    with request_scope(request, "req-login"):
        user = authenticate(request, username="carol", password=PASSWORD)
        login(request, user)
        logout(request)
    with request_scope(a_request("198.51.100.7"), "req-fail", client_ip="198.51.100.7"):
        assert authenticate(a_request(), username="carol", password="wrong password") is None

    records = [r for r in crud(audit_records) if r["event_type"] in ("LOGIN", "LOGOUT", "LOGIN_FAILED")]
    assert records == [
        auth_record("LOGIN", carol, "carol", "req-login", "203.0.113.9", f"user:{carol.pk}"),
        auth_record("LOGOUT", carol, "carol", "req-login", "203.0.113.9", f"user:{carol.pk}"),
        auth_record("LOGIN_FAILED", None, "carol", "req-fail", "198.51.100.7", "anonymous"),
    ]
    everything = str(audit_records.all_records)
    assert PASSWORD not in everything and "wrong password" not in everything
    # the login also updated last_login: an ordinary UPDATE, nothing secret in it
    (update,) = crud(audit_records, event_type="UPDATE", model="User")
    assert list(update["changes"]) == ["last_login"]


def test_logout_through_the_middleware_stack_is_recorded(audit_records, carol, settings):
    """A real logout: the user is AuthenticationMiddleware's lazy object, not a User instance."""
    from django.test import Client

    from tests.request_support import MIDDLEWARE

    settings.ROOT_URLCONF = "tests.request_urls"
    settings.MIDDLEWARE = MIDDLEWARE
    client = Client()
    client.force_login(carol)
    audit_records.clear()

    client.post("/logout/")

    [logged_out] = [r for r in crud(audit_records) if r["event_type"] == "LOGOUT"]
    assert (logged_out["model_label"], logged_out["instance_id"], logged_out["actor"]) == (
        "auth.User",
        str(carol.pk),
        f"user:{carol.pk}",
    )
    assert audit_records.of("activity_audit.pipeline", event_type="CAPTURE_FAILED") == []
