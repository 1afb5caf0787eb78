"""``SKIP_PATHS``: a path skips itself and what is below it as a path segment, never a longer name
(``/health`` is not ``/healthcare``); ``/dir/`` skips a directory, ``/prefix*`` a prefix, ``^...`` a regular
expression. Checked at start-up. Exact outcomes through the real middleware."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import re_path

from activity_audit.conf import build
from activity_audit.paths import path_test

pytestmark = pytest.mark.django_db


def anything(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [re_path(r"^.*$", anything)]


@pytest.fixture
def http(settings) -> Client:
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = ["activity_audit.middleware.AuditLoggingMiddleware"]
    return Client()


def recorded_paths(http: Client, audit_records, paths: list[str]) -> list[str]:
    """Request each path (each answered 200 with its request id); the paths that got a record, in order."""
    for one in paths:
        response = http.get(one)
        assert (response.status_code, bool(response["X-Request-ID"])) == (200, True)
    return [record["request_repr"]["path"] for record in audit_records.of("audit.request")]


def test_the_default_health_entry_skips_health_checks_but_not_healthcare(http, audit_records):
    paths = [
        "/health",
        "/health/",
        "/health/live",
        "/healthcare/patients/7/",
        "/health-plans/",
        "/healthz",
        "/static/app.css",
        "/static",
        "/staticfiles/app.css",
        "/media/a.png",
        "/favicon.ico",
        "/favicon.ico.bak",
    ]
    assert recorded_paths(http, audit_records, paths) == [
        "/healthcare/patients/7/",
        "/health-plans/",
        "/healthz",
        "/static",
        "/staticfiles/app.css",
        "/favicon.ico.bak",
    ]


def test_a_star_makes_a_prefix_and_a_caret_a_regular_expression(http, audit_records, settings):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "SKIP_PATHS": ["/metrics*", r"^/api/v\d+/ping$"]}
    paths = ["/metrics", "/metrics-v2", "/metrics/cpu", "/metric", "/api/v2/ping", "/api/v2/pings", "/health"]
    assert recorded_paths(http, audit_records, paths) == ["/metric", "/api/v2/pings", "/health"]


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        (
            "/health",
            ["/health", "/health/", "/health/live/x"],
            ["/healthcare", "/health-plans/", "/heal", "/"],
        ),
        ("/static/", ["/static/", "/static/css/a.css"], ["/static", "/staticfiles/a.css"]),
        ("/metrics*", ["/metrics", "/metricsx", "/metrics/a"], ["/metric", "/x/metrics"]),
        ("/", ["/", "/anything/at/all"], []),
        ("/*", ["/", "/anything"], []),
        (r"^/v\d+/ping$", ["/v1/ping", "/v22/ping"], ["/v1/ping/", "/vx/ping", "/x/v1/ping"]),
    ],
)
def test_each_form_of_pattern(pattern, matches, misses):
    test = path_test((pattern,))
    assert [path for path in matches + misses if test(path)] == matches


def test_no_patterns_skip_nothing():
    assert path_test(())("/health") is False


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (["health"], "a list of paths starting with '/'"),
        (["/health*/live"], "prefixes ending in '*'"),
        (["*"], "a list of paths starting with '/'"),
        (["^/(unclosed"], "a list of paths or '^' regular expressions (missing )"),
        ("/health", "a list of strings"),
    ],
)
def test_a_wrong_pattern_stops_start_up_naming_the_setting(value, detail):
    with pytest.raises(ImproperlyConfigured) as raised:
        build({"SKIP_PATHS": value}, None)
    message = str(raised.value)
    assert message.startswith("ACTIVITY_AUDIT['SKIP_PATHS'] must be ")
    assert detail in message
    assert repr(value[0] if isinstance(value, list) else value) in message


def test_every_form_is_accepted_as_written():
    built = build({"SKIP_PATHS": ["/health", "/static/", "/metrics*", r"^/v\d+/ping$"]}, None)
    assert built.SKIP_PATHS == ("/health", "/static/", "/metrics*", r"^/v\d+/ping$")
