"""Budgets and rate limits under concurrent traffic through three gateway worker processes
(real granian, Redis, PostgreSQL and fake upstream): nothing overspends, nothing over-admits."""

import asyncio
from collections import Counter
from decimal import Decimal

import aiohttp
import pytest

from analytics.models import UsageRecord
from analytics.usage import usage_stream_drain
from budgets.selectors import budget_status
from budgets.services import budget_create
from gateway.services import deployment_create
from tenants.audit import AuditContext
from tenants.services import api_key_create, tenant_create
from tests.system.conftest import forget_redis_state

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SYSTEM = AuditContext.system("test")
PER_CALL = Decimal("0.00001")  # 10 output tokens at $1 / 1M, no input price: exact


async def _burst(url: str, key: str, n: int, *, user: str | None = None) -> list[tuple[int, dict]]:
    body: dict = {"model": "metered", "messages": [{"role": "user", "content": "hi"}]}
    if user:
        body["user"] = user
    headers = {"authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=n)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> tuple[int, dict]:
            async with session.post(f"{url}/v1/chat/completions", json=body,
                                    headers=headers) as response:  # fmt: skip
                return response.status, await response.json()

        return await asyncio.gather(*(one() for _ in range(n)))


@pytest.fixture
def metered_tenant(multi_gateway, fake_llm, transactional_db):  # type: ignore[no-untyped-def]
    fake_llm.reset()
    tenant = tenant_create(context=SYSTEM, slug="metered", name="Metered")
    forget_redis_state(f"t:{tenant.pk}")
    deployment = deployment_create(context=SYSTEM, tenant=tenant, fields={
        "name": "metered", "provider": "openai",
        "litellm_model": "openai/metered@tokens=10,latency=40",
        "api_base": f"{fake_llm.url}/v1", "api_key_env": "FAKE_LLM_KEY",
        "input_price_per_mtok": Decimal(0), "output_price_per_mtok": Decimal(1),
        "max_output_tokens": 10,
    })  # fmt: skip
    yield tenant
    forget_redis_state(f"t:{tenant.pk}", f"dep:{deployment.pk}")


def _wait_for_config(url: str, key: str) -> None:
    """Every worker has loaded the new config (≤ 1 s); asking each is not possible, so wait."""
    import time

    time.sleep(1.5)


def test_200_concurrent_calls_against_headroom_for_37(multi_gateway, metered_tenant) -> None:
    allowed = 37
    budget = budget_create(context=SYSTEM, tenant=metered_tenant, fields={
        "name": "tight", "scope": "tenant", "amount_usd": PER_CALL * allowed, "period": "daily",
    })  # fmt: skip
    _, key = api_key_create(context=SYSTEM, tenant=metered_tenant, name="burst")
    _wait_for_config(multi_gateway.url, key)
    results = asyncio.run(_burst(multi_gateway.url, key, 200))
    statuses = Counter(status for status, _ in results)
    assert statuses[200] == allowed, statuses
    assert statuses[429] == 200 - allowed, statuses
    codes = {body["error"]["code"] for status, body in results if status == 429}
    assert codes == {"budget_exceeded"}
    status = budget_status(budget)
    assert Decimal(status["spent_usd"]) == PER_CALL * allowed  # settled spend ≤ the budget
    assert Decimal(status["reserved_usd"]) == 0
    usage_stream_drain()
    billed = sum(r.cost_usd for r in UsageRecord.objects.filter(tenant=metered_tenant))
    assert billed == PER_CALL * allowed


def test_rate_limit_across_three_processes(multi_gateway, metered_tenant) -> None:
    limit = 25
    _, key = api_key_create(context=SYSTEM, tenant=metered_tenant, name="rpm", rpm_limit=limit)
    _wait_for_config(multi_gateway.url, key)
    results = asyncio.run(_burst(multi_gateway.url, key, 90))
    statuses = Counter(status for status, _ in results)
    # A sliding window over this and the previous minute: a burst of a few seconds admits
    # exactly the limit (drift needs the window to move by 60 s / limit per extra call).
    assert statuses[200] == limit, statuses
    assert statuses[429] == 90 - limit
    retry_afters = [body for status, body in results if status == 429]
    assert all(b["error"]["code"] == "rate_limit_exceeded" for b in retry_afters)


def test_concurrency_cap_across_processes(multi_gateway, metered_tenant) -> None:
    _, key = api_key_create(context=SYSTEM, tenant=metered_tenant, name="cc", max_concurrency=5)
    _wait_for_config(multi_gateway.url, key)
    results = asyncio.run(_burst(multi_gateway.url, key, 40))
    statuses = Counter(status for status, _ in results)
    # With 40 ms upstream calls arriving at once, about five run and the rest are refused.
    assert 5 <= statuses[200] < 40, statuses
    codes = {body["error"]["code"] for status, body in results if status == 429}
    assert codes == {"concurrency_limit_exceeded"}
