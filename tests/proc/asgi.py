"""ASGI entry point, for the uvicorn tests."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.proc.settings")
application = get_asgi_application()
