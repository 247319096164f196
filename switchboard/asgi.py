"""ASGI entry point: the gateway fast path in front of Django (management API, console, ops)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchboard.settings")

django_application = get_asgi_application()

from gateway.asgi import GatewayFastPath  # noqa: E402  (needs the app registry loaded above)

application = GatewayFastPath(django_application)  # type: ignore[arg-type]
