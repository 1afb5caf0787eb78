"""A change whose actor cannot be read (the user directory is down) is recorded with actor ``unknown``: the
row was written, so its record must be too."""

from __future__ import annotations

import pytest
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

from tests.crud_helpers import crud, record
from tests.testapp.models import Author

pytestmark = pytest.mark.django_db(transaction=True)

MIDDLEWARE = [
    "activity_audit.middleware.AuditLoggingMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
BACKEND = f"{__name__}.DirectoryBackend"


class DirectoryBackend(ModelBackend):
    """Users kept in a directory service that is down: logging in worked, reading the user now fails."""

    def get_user(self, user_id: int) -> None:
        raise ConnectionError("directory service is down")


def create_author(request: HttpRequest) -> HttpResponse:
    Author.objects.create(name="Written anyway")
    return HttpResponse("created", content_type="text/plain")


urlpatterns = [path("create/", create_author)]


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE, AUTHENTICATION_BACKENDS=[BACKEND])
def test_a_change_whose_user_cannot_be_read_is_recorded_with_actor_unknown(audit_records):
    client = Client()
    client.force_login(User.objects.create_user("ada"), backend=BACKEND)
    audit_records.clear()

    response = client.get("/create/")

    assert (response.status_code, response.content) == (200, b"created")
    (author,) = Author.objects.all()
    [request_record] = audit_records.of("audit.request")
    assert crud(audit_records) == [
        record(
            "CREATE",
            "Author",
            author.pk,
            {"name": {"old": None, "new": "Written anyway"}},
            actor="unknown",
            request_id=request_record["request_id"],
            actor_error="ConnectionError",
        )
    ]
    assert (request_record["actor"], request_record["actor_error"]) == ("unknown", "ConnectionError")
