"""Reading the user for a record must not change the response: no ``Vary: Cookie`` the view did not cause."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

from tests.testapp.models import Author

pytestmark = pytest.mark.django_db(transaction=True)


def creates_without_looking_at_the_user(request: HttpRequest) -> HttpResponse:
    Author.objects.create(name="Anonymous or not")
    return HttpResponse("ok")


def looks_at_the_user(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.user.get_username())


urlpatterns = [
    path("plain/", creates_without_looking_at_the_user),
    path("personal/", looks_at_the_user),
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "activity_audit.middleware.AuditLoggingMiddleware",
]


def _vary(response: HttpResponse) -> str:
    return response.headers.get("Vary", "")


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
@pytest.mark.parametrize("logged_in", [False, True])
def test_the_audit_reads_the_user_without_adding_vary_cookie(audit_records, logged_in):
    client = Client()
    user = User.objects.create_user("reader", password="pw-for-tests-only")
    if logged_in:
        client.force_login(user)
    audit_records.clear()

    response = client.get("/plain/")

    assert response.status_code == 200
    assert "Cookie" not in _vary(response)
    expected_actor = f"user:{user.pk}" if logged_in else "anonymous"
    [created] = audit_records.of("audit.crud", event_type="CREATE", model="Author")
    [request] = audit_records.of("audit.request")
    assert (created["actor"], request["actor"]) == (expected_actor, expected_actor)


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
def test_a_view_that_reads_the_user_still_gets_vary_cookie(audit_records):
    response = Client().get("/personal/")
    assert "Cookie" in _vary(response)
