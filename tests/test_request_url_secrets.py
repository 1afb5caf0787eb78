"""Secrets in the URL path: what a URL kwarg with a secret's name captured is masked wherever the record shows
it; ``route`` (the URLconf's pattern, not the client's text) is kept as it is. Exact outcomes."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.tokens import default_token_generator
from django.contrib.auth.views import PasswordResetConfirmView
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.test import Client
from django.urls import include, path, re_path, register_converter
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

pytestmark = pytest.mark.django_db

API_KEY = "sk_live_51HxQ2eLkdIwHu7ix"


class Ticket:
    def __init__(self, number: int) -> None:
        self.number = number

    def __str__(self) -> str:
        return f"ticket #{self.number}"


class TicketConverter:
    """``T-00042`` in the path, a :class:`Ticket` for the view: its ``str()`` is not the path's text."""

    regex = "T-[0-9]{5}"

    def to_python(self, value: str) -> Ticket:
        return Ticket(int(value[2:]))

    def to_url(self, value: Ticket) -> str:
        return f"T-{value.number:05d}"


register_converter(TicketConverter, "test_url_secrets_ticket")


def show(request, **kwargs):
    return JsonResponse({"seen": sorted(kwargs)})


def back_to_itself(request, api_key):
    return HttpResponseRedirect(f"/keys/{api_key}/done/")


def fails(request, api_key):
    raise ValueError(f"no such key: {api_key}")


def plain(request, pk):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("reset/<uidb64>/<token>/", PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("keys/<str:api_key>/", back_to_itself),
    path("keys/<str:api_key>/fail/", fails),
    path("books/<int:pk>/", plain),
    path("pins/<int:pin>/", show),
    path("tenants/<slug:tenant>/", include([re_path(r"^hooks/(?P<signing_secret>[0-9a-f]+)/$", show)])),
    path("settings/<name>/<value>/", show),
    path("claims/<test_url_secrets_ticket:claim_token>/", show),
]


@pytest.fixture
def client(settings) -> Client:
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = [
        "activity_audit.middleware.AuditLoggingMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    return Client(raise_request_exception=False)


def only_record(audit_records) -> dict:
    records = audit_records.of("audit.request")
    assert len(records) == 1, records
    return records[0]


def test_a_password_reset_token_is_masked_in_the_path_and_the_route_is_kept(client, audit_records):
    user = User.objects.create_user("ada", email="ada@example.com", password="old-pw")
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    response = client.get(f"/reset/{uid}/{token}/")
    assert (response.status_code, response["Location"]) == (302, f"/reset/{uid}/set-password/")
    record = only_record(audit_records)
    assert (record["request_repr"]["path"], record["route"]) == (
        f"/reset/{uid}/[REDACTED]/",
        "reset/<uidb64>/<token>/",
    )
    assert record["redacted"] == ["request_repr.path", "response_repr.headers.Set-Cookie"]
    assert token not in json.dumps(record)


def test_the_secret_is_masked_in_a_location_header_too(client, audit_records):
    client.get(f"/keys/{API_KEY}/")
    record = only_record(audit_records)
    assert record["request_repr"]["path"] == "/keys/[REDACTED]/"
    assert record["response_repr"]["headers"]["Location"] == "/keys/[REDACTED]/done/"
    assert record["route"] == "keys/<str:api_key>/"
    assert record["redacted"] == ["request_repr.path", "response_repr.headers.Location"]


def test_the_secret_is_masked_in_the_error_message(client, audit_records):
    response = client.get(f"/keys/{API_KEY}/fail/")
    assert response.status_code == 500
    record = only_record(audit_records)
    assert (record["request_repr"]["path"], record["error_message"]) == (
        "/keys/[REDACTED]/fail/",
        "ValueError: no such key: [REDACTED]",
    )
    assert record["redacted"] == ["request_repr.path", "error_message"]


def test_a_secret_captured_by_a_regex_pattern_under_an_include(client, audit_records):
    client.get("/tenants/acme/hooks/9f86d081884c7d65/")
    record = only_record(audit_records)
    assert (record["request_repr"]["path"], record["route"]) == (
        "/tenants/acme/hooks/[REDACTED]/",
        "tenants/<slug:tenant>/hooks/(?P<signing_secret>[0-9a-f]+)/$",
    )


def test_a_converted_value_is_masked_as_the_path_spells_it(client, audit_records):
    client.get("/pins/4711/")
    assert only_record(audit_records)["request_repr"]["path"] == "/pins/[REDACTED]/"


def test_a_path_without_secret_kwargs_is_kept_as_it_is(client, audit_records):
    client.get("/books/42/?token=abc")
    record = only_record(audit_records)
    assert (record["request_repr"]["path"], record["route"]) == ("/books/42/", "books/<int:pk>/")
    assert record["request_repr"]["query_params"] == {"token": "[REDACTED]"}
    assert record["redacted"] == ["request_repr.query_params.token"]


def test_the_configured_redact_keys_name_secrets_in_the_path_too(client, audit_records, settings):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "REDACT_KEYS": ["value"]}
    client.get("/settings/theme/dark-and-secret/")
    record = only_record(audit_records)
    assert record["request_repr"]["path"] == "/settings/theme/[REDACTED]/"
    assert record["route"] == "settings/<name>/<value>/"


def test_a_path_that_does_not_spell_the_captured_value_is_masked_whole(client, audit_records):
    client.get("/claims/T-00042/")
    record = only_record(audit_records)
    assert (record["request_repr"]["path"], record["route"]) == (
        "[REDACTED]",
        "claims/<test_url_secrets_ticket:claim_token>/",
    )
    assert record["redacted"] == ["request_repr.path"]
