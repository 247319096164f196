"""A few thousand calls through the real gateway (three worker processes), then every view
of the money must agree to the cent with the budget ledger: records, rollups, the usage API,
the CSV statement and the XLSX statement."""

import asyncio
import io
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
import pytest
from django.db.models import Sum
from openpyxl import load_workbook
from rest_framework.test import APIClient

from analytics.models import UsageRecord, UsageRollup
from analytics.usage import usage_stream_drain
from budgets.selectors import budget_status
from budgets.services import budget_create
from gateway.services import deployment_create
from tenants.audit import AuditContext
from tenants.roles import Role
from tenants.services import api_key_create, tenant_create
from tests.system.conftest import forget_redis_state
from tests.tenants.factories import MembershipFactory, UserFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SYSTEM = AuditContext.system("test")
CALLS = 2400
CENT = Decimal("0.01")


async def _traffic(url: str, key: str) -> Counter[int]:
    models = ["cheap", "pricey", "missing"]
    statuses: Counter[int] = Counter()
    semaphore = asyncio.Semaphore(60)
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {key}"}) as session:

        async def one(i: int) -> None:
            body = {"model": models[i % 3] if i % 10 else "missing",
                    "messages": [{"role": "user", "content": "word " * (i % 40 + 1)}],
                    "user": f"user-{i % 17}", "max_tokens": 5 + i % 30}  # fmt: skip
            async with semaphore, session.post(f"{url}/v1/chat/completions", json=body) as r:
                await r.read()
                statuses[r.status] += 1

        await asyncio.gather(*(one(i) for i in range(CALLS)))
    return statuses


def test_every_view_of_the_money_agrees_with_the_ledger(multi_gateway, fake_llm) -> None:
    tenant = tenant_create(context=SYSTEM, slug="ledgered", name="Ledgered")
    forget_redis_state(f"t:{tenant.pk}")
    for name, price_in, price_out in (("cheap", "0.15", "0.6"), ("pricey", "2.5", "10")):
        deployment = deployment_create(context=SYSTEM, tenant=tenant, fields={
            "name": name, "provider": "openai", "litellm_model": f"openai/{name}",
            "api_base": f"{fake_llm.url}/v1", "api_key_env": "FAKE_LLM_KEY",
            "input_price_per_mtok": Decimal(price_in), "output_price_per_mtok": Decimal(price_out),
        })  # fmt: skip
        forget_redis_state(f"dep:{deployment.pk}")
    budget = budget_create(context=SYSTEM, tenant=tenant, fields={
        "name": "ledger", "scope": "tenant", "amount_usd": Decimal(1000), "hard": False,
        "period": "monthly"})  # fmt: skip
    _, key = api_key_create(context=SYSTEM, tenant=tenant, name="traffic")
    import time

    time.sleep(1.5)  # every worker has the new configuration
    statuses = asyncio.run(_traffic(multi_gateway.url, key))
    assert statuses[200] > 1200
    assert statuses[404] > 200  # refused calls are recorded too (and cost nothing)
    assert sum(statuses.values()) == CALLS
    usage_stream_drain()

    ledger = Decimal(budget_status(budget)["spent_usd"])  # the Redis ledger (nano-dollars)
    records = UsageRecord.objects.filter(tenant=tenant)
    assert records.count() == CALLS
    exact = records.aggregate(t=Sum("cost_usd"))["t"]
    assert exact.quantize(CENT) == ledger.quantize(CENT)
    assert abs(exact - ledger) < Decimal("0.000001")
    rollups = UsageRollup.objects.filter(tenant=tenant)
    assert rollups.filter(granularity="hour").aggregate(t=Sum("cost_usd"))["t"] == exact
    assert rollups.filter(granularity="day").aggregate(t=Sum("requests"))["t"] == CALLS

    finance = UserFactory(username="ledger-finance")
    MembershipFactory(tenant=tenant, user=finance, role=Role.FINANCE)
    api = APIClient()
    api.force_login(finance)
    month = f"{datetime.now(UTC):%Y-%m}"
    usage = api.get("/api/v1/tenants/ledgered/usage/", {"month": month}).json()
    assert Decimal(usage["results"][0]["cost_usd"]) == exact
    assert usage["results"][0]["requests"] == CALLS
    by_user = api.get("/api/v1/tenants/ledgered/usage/", {"month": month, "group_by": "end_user"})
    assert sum(Decimal(r["cost_usd"]) for r in by_user.json()["results"]) == exact

    csv = api.get("/api/v1/tenants/ledgered/reports/statement/", {"month": month})
    total = b"".join(csv.streaming_content).decode().strip().splitlines()[-1].split(",")
    assert total[0] == "total"
    assert int(total[2]) == CALLS
    assert Decimal(total[-1]) == exact
    xlsx = api.get("/api/v1/tenants/ledgered/reports/statement/", {"month": month, "as": "xlsx"})
    sheet = load_workbook(io.BytesIO(b"".join(xlsx.streaming_content)), read_only=True).active
    last = list(sheet.iter_rows(values_only=True))[-1]
    assert Decimal(str(last[-1])).quantize(CENT) == ledger.quantize(CENT)
    forget_redis_state(f"t:{tenant.pk}")
