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


SEEN_REQUESTS: list[HttpRequest] = []


def keeps_the_request(request: HttpRequest) -> HttpResponse:
    SEEN_REQUESTS.append(request)
    return HttpResponse("ok")


class ReplacesTheUser:
    """A project middleware that authenticates by a header of its own, after AuthenticationMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "HTTP_X_TEST_USER" in request.META:
            request.user = User.objects.get(username=request.META["HTTP_X_TEST_USER"])
        return self.get_response(request)


def fills_the_cart(request: HttpRequest) -> HttpResponse:
    SEEN_REQUESTS.append(request)
    request.session["cart"] = ["book-1"]
    return HttpResponse("ok")


urlpatterns = [
    path("cart/", fills_the_cart),
    path("plain/", creates_without_looking_at_the_user),
    path("kept/", keeps_the_request),
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


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
def test_an_anonymous_request_is_recorded_without_building_its_user(audit_records):
    SEEN_REQUESTS.clear()
    response = Client().get("/kept/")

    [request] = SEEN_REQUESTS
    assert response.status_code == 200
    assert "_cached_user" not in request.__dict__  # Django's lazy user was never evaluated
    [record] = audit_records.of("audit.request")
    assert (record["actor"], record["request_repr"]["user"]) == ("anonymous", None)


@override_settings(
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[*MIDDLEWARE[:2], f"{__name__}.ReplacesTheUser", MIDDLEWARE[2]],
)
def test_a_user_set_by_another_middleware_is_the_actor(audit_records):
    user = User.objects.create_user("by-header", password="pw-for-tests-only")
    audit_records.clear()

    Client().get("/kept/", HTTP_X_TEST_USER="by-header")

    [record] = audit_records.of("audit.request")
    assert record["actor"] == f"user:{user.pk}"
    assert record["request_repr"]["user"] == {"id": user.pk, "username": "by-header"}


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
def test_an_anonymous_session_with_data_is_still_anonymous(audit_records):
    client = Client()
    client.get("/cart/")  # no cookie yet: the view writes into a new session
    client.get("/cart/")  # the session cookie comes back: a stored session without a user
    SEEN_REQUESTS.clear()
    audit_records.clear()

    client.get("/kept/")

    [request] = SEEN_REQUESTS
    assert "_cached_user" not in request.__dict__
    [record] = audit_records.of("audit.request")
    assert (record["actor"], record["request_repr"]["user"]) == ("anonymous", None)
