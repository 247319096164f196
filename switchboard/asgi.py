"""ASGI entry point: the gateway, management API, console and ops endpoints."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchboard.settings")

application = get_asgi_application()
