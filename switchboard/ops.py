"""Liveness and readiness endpoints for load balancers and Kubernetes probes."""

import time

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

_redis_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    """One pooled client per configured URL (a probe must not open a connection per call)."""
    url = settings.REDIS_URL
    if url not in _redis_clients:
        _redis_clients[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    return _redis_clients[url]


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving; checks nothing else on purpose."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return type(exc).__name__
    return None


def _check_redis() -> str | None:
    try:
        _redis().ping()
    except Exception as exc:
        return type(exc).__name__
    return None


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when PostgreSQL and Redis answer; 503 with the failing check otherwise."""
    started = time.perf_counter()
    failures = {
        name: error
        for name, error in (("database", _check_database()), ("redis", _check_redis()))
        if error is not None
    }
    body = {
        "status": "unavailable" if failures else "ok",
        "checks": {
            name: ("error: " + failures[name]) if name in failures else "ok"
            for name in ("database", "redis")
        },
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    return JsonResponse(body, status=503 if failures else 200)
