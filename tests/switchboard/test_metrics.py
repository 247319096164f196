"""/metrics against the real PostgreSQL and Redis: who may scrape it, the gauges it computes
at scrape time, and the single-process mode (no PROMETHEUS_MULTIPROC_DIR) in a production
process of its own."""

import asyncio
import os
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from django.conf import settings
from django.db import connection
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from budgets.services import budget_create
from gateway.runtime.breaker import BreakerConfig, CircuitBreaker, breaker_keys
from gateway.services import deployment_create
from switchboard.redis_client import redis_sync
from tenants.audit import AuditContext

SYSTEM = AuditContext.system("tests")
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-tests-0123456789"


def _samples(response) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content
    text = response.content.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# --- Access ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "10.1.2.3", "172.20.0.9", "192.168.1.20", "fd00::5"]
)
def test_loopback_and_private_peers_may_scrape_without_a_token(db, client, address) -> None:
    response = client.get("/metrics", REMOTE_ADDR=address)
    assert response.status_code == 200, response.content
    assert response["content-type"].startswith("text/plain")
    assert ("switchboard_scrape_source_up", (("source", "breakers"),)) in _samples(response)


@pytest.mark.parametrize(
    "address",
    ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "0.0.0.0", ""],  # noqa: S104
)
def test_public_peers_are_refused_without_a_token(client, address) -> None:
    response = client.get("/metrics", REMOTE_ADDR=address)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert b"switchboard_" not in response.content


@override_settings(METRICS_TOKEN=TOKEN)
def test_token_is_required_when_set_even_from_loopback(db, client) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN},
                    {"authorization": f"Basic {TOKEN}"}):  # fmt: skip
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response["www-authenticate"] == 'Bearer realm="metrics"'
        assert TOKEN not in response.content.decode()
    ok = client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    # With a token the address does not matter: Prometheus may scrape from anywhere.
    remote = client.get(
        "/metrics", headers={"authorization": f"Bearer {TOKEN}"}, REMOTE_ADDR="1.1.1.1"
    )
    assert remote.status_code == 200


def test_only_get(client) -> None:
    assert client.post("/metrics").status_code == 405


def test_openmetrics_when_the_scraper_asks_for_it(db, client) -> None:
    response = client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.status_code == 200
    assert response["content-type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


# --- Scrape-time gauges --------------------------------------------------------------------


@pytest.fixture
def deployment(db, cast):  # type: ignore[no-untyped-def]
    created = deployment_create(context=SYSTEM, tenant=cast.acme, fields={
        "name": "gauged", "provider": "openai", "litellm_model": "openai/gauged",
        "api_base": "http://127.0.0.1:9/v1", "api_key_env": "FAKE_LLM_KEY",
        "input_price_per_mtok": Decimal(0), "output_price_per_mtok": Decimal(0),
    })  # fmt: skip
    yield created
    redis_sync().delete(*breaker_keys(created.pk))


def _trip(deployment_id: int, open_s: float) -> None:
    """Open the deployment's breaker the way failing calls do: through the real scripts."""

    async def main() -> None:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        breaker = CircuitBreaker(BreakerConfig(min_requests=2, open_s=open_s),
                                 client_factory=lambda: client)  # fmt: skip
        try:
            for _ in range(2):
                await breaker.admit(deployment_id)
                await breaker.record(deployment_id, success=False)
        finally:
            await client.aclose()

    asyncio.run(main())


def test_breaker_state_gauge_follows_the_shared_breaker(client, deployment) -> None:
    key = ("switchboard_breaker_state", (("deployment", str(deployment.pk)), ("model", "gauged")))
    assert _samples(client.get("/metrics"))[key] == 0  # closed
    _trip(deployment.pk, open_s=0.5)
    assert _samples(client.get("/metrics"))[key] == 2  # open
    time.sleep(0.6)
    assert _samples(client.get("/metrics"))[key] == 1  # half-open: the next call probes


def test_disabled_deployments_have_no_breaker_series(client, deployment) -> None:
    deployment.enabled = False
    deployment.save(update_fields=["enabled"])
    names = {name for name, labels in _samples(client.get("/metrics")) if dict(labels).get(
        "deployment") == str(deployment.pk)}  # fmt: skip
    assert names == set()


def test_budget_utilisation_is_spend_over_limit(client, cast) -> None:
    budget = budget_create(context=SYSTEM, tenant=cast.acme, fields={
        "name": "gauge", "scope": "tenant", "amount_usd": Decimal(4), "period": "monthly",
    })  # fmt: skip
    key = ("switchboard_budget_utilisation_ratio",
           (("budget", str(budget.pk)), ("scope", "tenant"), ("tenant", "acme")))  # fmt: skip
    assert _samples(client.get("/metrics"))[key] == 0


def test_a_sick_redis_leaves_the_rest_of_the_scrape_standing(client, cast) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{port}/0"):
        response = client.get("/metrics")
    samples = _samples(response)
    up = "switchboard_scrape_source_up"
    assert samples[(up, (("source", "usage_queue"),))] == 0
    assert samples[(up, (("source", "budgets"),))] == 1  # PostgreSQL answers for Redis
    assert not any(name == "switchboard_usage_queue_lag_events" for name, _ in samples)
    assert str(port) not in response.content.decode()


# --- Single-process mode -------------------------------------------------------------------

SINGLE_PROCESS_SCRIPT = """
import django
django.setup()
from prometheus_client import values
from switchboard import metrics
assert not values.ValueClass._multiprocess, "expected the in-memory registry"
metrics.observe_cache_hit("acme")
metrics.observe_cache_hit("acme")
body, _ = metrics.exposition("")
print(body.decode())
"""


def test_without_a_multiprocess_dir_a_production_process_reports_its_own_numbers(db) -> None:
    """Production leaves PROMETHEUS_MULTIPROC_DIR unset unless told: one process, one
    in-memory registry, with process metrics on top."""
    db = connection.settings_dict
    database_url = (
        f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}:"
        f"{db.get('PORT') or 5432}/{db['NAME']}"
    )
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({
        "SWITCHBOARD_ENV": "production", "DJANGO_SETTINGS_MODULE": "switchboard.settings",
        "SECRET_KEY": "x" * 50, "API_KEY_HMAC_SECRET": "y" * 50, "REDIS_URL": settings.REDIS_URL,
        "DATABASE_URL": database_url,
    })  # fmt: skip
    result = subprocess.run([sys.executable, "-c", SINGLE_PROCESS_SCRIPT], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    families = {family.name: family for family in text_string_to_metric_families(result.stdout)}
    hits = families["switchboard_cache_hits"].samples
    assert [(s.labels, s.value) for s in hits if s.name.endswith("_total")] == [
        ({"tenant": "acme"}, 2.0)
    ]
    assert "process_cpu_seconds" in families
    assert "switchboard_usage_queue_lag_events" in families
