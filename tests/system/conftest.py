"""Real servers for end-to-end tests: the fake LLM upstream and Switchboard under granian.

The gateway runs as a subprocess (one granian worker) against the pytest-django test database
and the test Redis, so tests that use it must commit their data:
`@pytest.mark.django_db(transaction=True)`. Configuration reaches the server through the
config version in Redis, exactly as in production.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection

from gateway.services import deployment_create
from switchboard.fakellm.testing import FakeLLM
from switchboard.redis_client import redis_sync
from tenants.audit import AuditContext
from tenants.models import Tenant
from tenants.services import api_key_create, tenant_create

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = AuditContext.system("tests")

# Small breaker and retry settings so fault tests run in seconds.
SERVER_ENV = {
    "GATEWAY_SNAPSHOT_CHECK_S": "0.1",
    "GATEWAY_BREAKER_WINDOW_S": "10",
    "GATEWAY_BREAKER_MIN_REQUESTS": "4",
    "GATEWAY_BREAKER_OPEN_S": "1.5",
    "GATEWAY_DEADLINE_S": "20",
    # The provider key the test deployments reference (the fake upstream accepts any).
    "FAKE_LLM_KEY": "sk-fake-upstream-key",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveGateway:
    url: str
    process: subprocess.Popen[bytes]


def _database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


@pytest.fixture(scope="session")
def live_gateway(django_db_setup: Any, django_db_blocker: Any) -> Iterator[LiveGateway]:
    yield from _gateway_processes(workers=1)


@pytest.fixture(scope="session")
def multi_gateway(django_db_setup: Any, django_db_blocker: Any) -> Iterator[LiveGateway]:
    """Three web worker processes behind one port: cross-process limits must hold."""
    yield from _gateway_processes(workers=3)


def _gateway_processes(*, workers: int) -> Iterator[LiveGateway]:
    import tempfile

    port = free_port()
    # The server's workers share one fresh, empty metrics directory (its own, not this
    # process's): /metrics must count exactly the calls this server served.
    metrics_dir = tempfile.TemporaryDirectory(prefix="switchboard-metrics-gw-")
    env = {
        **os.environ,
        "SWITCHBOARD_ENV": "test",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir.name,
        **SERVER_ENV,
    }
    command = [
        str(Path(sys.executable).parent / "granian"), "--interface", "asginl",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--no-ws", "--log-level", "warning", "switchboard.asgi:application",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield LiveGateway(url=url, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        metrics_dir.cleanup()


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the gateway did not become healthy in 30 s")


@dataclass
class GatewayWorld:
    """A tenant with a key and deployments behind the fake upstream."""

    url: str
    fake: FakeLLM
    tenant: Tenant
    key: str
    deployment_ids: list[int] = field(default_factory=list)

    def deploy(self, name: str, **fields: Any) -> Any:
        fields.setdefault("provider", "openai")
        fields.setdefault("api_key_env", "FAKE_LLM_KEY")
        fields.setdefault("litellm_model", f"openai/{name}")
        if fields["provider"] in ("openai", "openai_compatible"):
            fields.setdefault("api_base", f"{self.fake.url}/v1")
        else:
            fields.setdefault("api_base", self.fake.url)
        fields.setdefault("input_price_per_mtok", Decimal("0.15"))
        fields.setdefault("output_price_per_mtok", Decimal("0.60"))
        deployment = deployment_create(
            context=SYSTEM, tenant=self.tenant, fields={"name": name, **fields}
        )
        forget_redis_state(f"dep:{deployment.pk}")
        self.deployment_ids.append(deployment.pk)
        return deployment

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {self.key}"}, timeout=30, **kwargs
        )

    def wait_for_model(self, name: str) -> None:
        """Block until the server's snapshot lists `name` (config propagation is ≤ 1 s)."""
        deadline = time.monotonic() + 5
        with self.client() as client:
            while time.monotonic() < deadline:
                response = client.get("/v1/models")
                if response.status_code == 200 and name in {
                    model["id"] for model in response.json()["data"]
                }:
                    return
                time.sleep(0.05)
        raise AssertionError(f"model {name} never appeared in /v1/models")


def forget_redis_state(*hash_tags: str) -> None:
    """Delete the Redis keys of these hash tags. Database ids restart in every test session,
    so usage streams or breaker state left by an earlier session would leak into this one."""
    client = redis_sync()
    for tag in hash_tags:
        keys = list(client.scan_iter(match=f"sb:{{{tag}}}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def world(
    live_gateway: LiveGateway, fake_llm: FakeLLM, transactional_db: Any
) -> Iterator[GatewayWorld]:
    fake_llm.reset()
    tenant = tenant_create(context=SYSTEM, slug="acme", name="Acme")
    forget_redis_state(f"t:{tenant.pk}")
    _, key = api_key_create(context=SYSTEM, tenant=tenant, name="system tests")
    world = GatewayWorld(url=live_gateway.url, fake=fake_llm, tenant=tenant, key=key)
    yield world
    forget_redis_state(f"t:{tenant.pk}", *(f"dep:{pk}" for pk in world.deployment_ids))
