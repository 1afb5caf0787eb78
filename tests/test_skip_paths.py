"""``SKIP_PATHS``: a path skips itself and what is below it as a path segment, never a longer name
(``/health`` is not ``/healthcare``); ``/dir/`` skips a directory, ``/prefix*`` a prefix, ``^...`` a regular
expression. Checked at start-up. Exact outcomes through the real middleware."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
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


# --- regular expressions are each used alone --------------------------------------------------------------

SAME_GROUP_NAME = [r"^/api/(?P<version>v1)/ping$", r"^/api/(?P<version>v2)/health$"]


def test_skip_path_expressions_may_use_the_same_group_name(http, audit_records, settings):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "SKIP_PATHS": SAME_GROUP_NAME}
    paths = ["/api/v1/ping", "/api/v2/health", "/api/v1/health", "/books/"]
    assert recorded_paths(http, audit_records, paths) == ["/api/v1/health", "/books/"]


def test_body_path_expressions_may_use_the_same_group_name(http, audit_records, settings):
    settings.ACTIVITY_AUDIT = {**settings.ACTIVITY_AUDIT, "BODY_PATHS": ["/upload/", *SAME_GROUP_NAME]}
    for path in ["/api/v1/ping", "/api/v2/health", "/api/v1/health", "/upload/x", "/books/"]:
        assert http.post(path, data="hello", content_type="text/plain").status_code == 200
    bodies = [
        (r["request_repr"]["path"], r["request_repr"]["body"]) for r in audit_records.of("audit.request")
    ]
    assert bodies == [
        ("/api/v1/ping", "hello"),
        ("/api/v2/health", "hello"),
        ("/api/v1/health", None),
        ("/upload/x", "hello"),
        ("/books/", None),
    ]


def test_a_numbered_back_reference_points_at_its_own_group():
    test = path_test((r"^/(a)/x$", r"^/(b+)/\1$"))
    assert [path for path in ["/a/x", "/bb/bb", "/bb/b", "/b/a", "/a/a"] if test(path)] == ["/a/x", "/bb/bb"]


@pytest.mark.parametrize(
    ("key", "module"),
    [("SKIP_PATHS", "activity_audit.paths"), ("BODY_PATHS", "activity_audit.request_capture")],
)
def test_path_rules_are_built_with_the_settings_and_a_failure_names_the_setting(key, module, monkeypatch):
    # The rules used to be built on the first request, and a failure lost every request's record.
    def refuse(expressions):
        raise re.error("cannot be used here")

    monkeypatch.setattr(f"{module}.expressions_test", refuse)
    with (
        pytest.raises(ImproperlyConfigured) as error,
        override_settings(ACTIVITY_AUDIT={**settings.ACTIVITY_AUDIT, key: ["/static/", r"^/v\d+/ping$"]}),
    ):
        pass
    assert str(error.value) == f"ACTIVITY_AUDIT['{key}'] cannot be compiled (cannot be used here)."
