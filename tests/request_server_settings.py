"""Settings of the ASGI server the async middleware test starts (uvicorn on loopback)."""

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.request_urls"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "activity_audit.middleware.AuditLoggingMiddleware",
]
