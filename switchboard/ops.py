"""Ops endpoints: liveness and readiness for probes, metrics for Prometheus."""

import time

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from switchboard import metrics as switchboard_metrics
from switchboard.api.errors import error_body

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


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape: every web worker's call metrics plus gauges read now. Guarded by
    METRICS_TOKEN when set, else open to loopback and private addresses only."""
    access = switchboard_metrics.metrics_access(request)
    if access is switchboard_metrics.MetricsAccess.UNAUTHORIZED:
        return JsonResponse(
            error_body(401, "A valid metrics token is required.", code="invalid_metrics_token"),
            status=401,
            headers={"www-authenticate": 'Bearer realm="metrics"'},
        )
    if access is switchboard_metrics.MetricsAccess.FORBIDDEN:
        return JsonResponse(
            error_body(403, "Metrics are served to internal addresses only.", code="forbidden"),
            status=403,
        )
    body, content_type = switchboard_metrics.exposition(request.headers.get("accept", ""))
    return HttpResponse(body, content_type=content_type)
