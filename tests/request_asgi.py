"""The ASGI application served by uvicorn in the async middleware test."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.request_server_settings")
application = get_asgi_application()
