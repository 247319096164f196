"""Liveness and readiness against the real PostgreSQL and Redis."""

import socket

from django.test import override_settings


def test_healthz(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_ok_with_database_and_redis(db, client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_readyz_503_when_redis_is_down(db, client) -> None:
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0"):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error: ")
    assert "127.0.0.1" not in response.content.decode()  # no connection details leak


def test_static_files_are_served_through_the_async_middleware(settings) -> None:
    """The console's CSS and htmx through the ASGI stack (WhiteNoise kept off the loop)."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True

    async def fetch(path: str) -> tuple[int, str, bytes]:
        response = await AsyncClient().get(path)
        content = response.streaming_content  # type: ignore[attr-defined]
        if hasattr(content, "__aiter__"):
            body = b"".join([chunk async for chunk in content])
        else:
            body = b"".join(content)
        return response.status_code, response["content-type"], body

    status, content_type, body = async_to_sync(fetch)("/static/console/htmx.min.js")
    assert status == 200
    assert "javascript" in content_type
    assert body.startswith(b"var htmx=")
    status, content_type, _ = async_to_sync(fetch)("/static/console/console.css")
    assert (status, content_type.split(";")[0]) == (200, "text/css")
