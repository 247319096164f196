"""/metrics of a real gateway with three granian worker processes: every worker's calls are
counted exactly once, whichever worker answers the scrape, and the numbers agree with what
the calls' responses said (cost headers, usage)."""

import asyncio
import json
import math
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import aiohttp
import httpx
import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from analytics.usage import usage_stream_drain
from budgets.services import budget_create
from gateway.services import deployment_create
from tenants.audit import AuditContext
from tenants.services import api_key_create, tenant_create
from tests.system.conftest import forget_redis_state

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SYSTEM = AuditContext.system("test")
TENANT = "metrics-probe"  # used by no other test: its counters start at zero in the server
MODEL = "counted"
PRICE_OUT = Decimal(1)  # USD per 1M output tokens; input is free, so cost = completion tokens
PLAIN, STREAMED, UNKNOWN = 24, 6, 5
PROMPT_MARKER = "zebra-quartz-prompt-marker"
END_USER = "enduser-marker-4711"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _auth() -> dict[str, str]:
    """The server inherits this process's environment, METRICS_TOKEN included."""
    token = settings.METRICS_TOKEN
    return {"authorization": f"Bearer {token}"} if token else {}


def scrape(url: str) -> Samples:
    """One scrape on a fresh connection (so any of the three workers may answer), parsed."""
    response = httpx.get(f"{url}/metrics", headers=_auth(), timeout=10)
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and set(labels.items()) <= set(sample_labels)
    )


@pytest.fixture
def probe(request, multi_gateway, fake_llm, transactional_db):  # type: ignore[no-untyped-def]
    """A tenant (slug from the test's parameter, else TENANT) with a priced deployment, a
    budget and a key, loaded by every worker."""
    fake_llm.reset()
    slug = getattr(request, "param", TENANT)
    tenant = tenant_create(context=SYSTEM, slug=slug, name="Metrics probe")
    forget_redis_state(f"t:{tenant.pk}")
    deployment = deployment_create(context=SYSTEM, tenant=tenant, fields={
        "name": MODEL, "provider": "openai", "litellm_model": f"openai/{MODEL}@latency=20",
        "api_base": f"{fake_llm.url}/v1", "api_key_env": "FAKE_LLM_KEY",
        "input_price_per_mtok": Decimal(0), "output_price_per_mtok": PRICE_OUT,
    })  # fmt: skip
    budget = budget_create(context=SYSTEM, tenant=tenant, fields={
        "name": "probe", "scope": "tenant", "amount_usd": Decimal(1), "period": "monthly",
    })  # fmt: skip
    _, key = api_key_create(context=SYSTEM, tenant=tenant, name="metrics")
    time.sleep(1.5)  # every worker has loaded the new configuration (staleness ≤ 1 s)
    yield tenant, deployment, budget, key
    forget_redis_state(f"t:{tenant.pk}", f"dep:{deployment.pk}")


async def _plain(session: aiohttp.ClientSession, url: str, model: str, i: int) -> dict[str, Any]:
    content = f"{PROMPT_MARKER} " + "word " * (i % 7)
    body = {"model": model, "user": END_USER, "messages": [{"role": "user", "content": content}]}
    async with session.post(f"{url}/v1/chat/completions", json=body) as response:
        payload = await response.json()
        return {"status": response.status, "body": payload,
                "cost": response.headers.get("x-switchboard-cost-usd")}  # fmt: skip


async def _streamed(session: aiohttp.ClientSession, url: str, i: int) -> dict[str, Any]:
    body = {"model": MODEL, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"{PROMPT_MARKER} stream {i}"}]}  # fmt: skip
    usage = None
    async with session.post(f"{url}/v1/chat/completions", json=body) as response:
        assert response.status == 200
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage") or usage
    assert usage is not None
    return {"status": 200, "body": {"usage": usage}, "cost": None}


async def _traffic(url: str, key: str) -> list[dict[str, Any]]:
    headers = {"authorization": f"Bearer {key}"}
    # Concurrent connections, so the kernel spreads them over the three workers.
    connector = aiohttp.TCPConnector(limit=20, force_close=True)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        calls = [_plain(session, url, MODEL, i) for i in range(PLAIN)]
        calls += [_streamed(session, url, i) for i in range(STREAMED)]
        calls += [_plain(session, url, "no-such-model", i) for i in range(UNKNOWN)]
        return await asyncio.gather(*calls)


def test_metrics_count_every_workers_calls_exactly(multi_gateway, probe) -> None:
    _, deployment, budget, key = probe
    before = scrape(multi_gateway.url)
    results = asyncio.run(_traffic(multi_gateway.url, key))
    assert Counter(r["status"] for r in results) == {200: PLAIN + STREAMED, 404: UNKNOWN}
    served = [r for r in results if r["status"] == 200]
    prompt = sum(r["body"]["usage"]["prompt_tokens"] for r in served)
    completion = sum(r["body"]["usage"]["completion_tokens"] for r in served)
    header_cost = sum(Decimal(r["cost"]) for r in served if r["cost"] is not None)
    streamed_cost = sum(
        Decimal(r["body"]["usage"]["completion_tokens"]) * PRICE_OUT / 1_000_000
        for r in served
        if r["cost"] is None
    )

    # Several scrapes, each on a new connection: whichever worker answers, it reports the
    # calls of all three (a per-process registry would show each worker's share only).
    scrapes = [scrape(multi_gateway.url) for _ in range(6)]
    for after in scrapes:
        requests = "switchboard_requests_total"
        assert total(after, requests, tenant=TENANT) == PLAIN + STREAMED + UNKNOWN
        assert total(after, requests, tenant=TENANT, model=MODEL, provider="openai",
                     status="success", stream="false") == PLAIN  # fmt: skip
        assert total(after, requests, tenant=TENANT, model=MODEL, status="success",
                     stream="true") == STREAMED  # fmt: skip
        assert total(after, requests, tenant=TENANT, model="none", provider="none",
                     status="blocked", stream="false") == UNKNOWN  # fmt: skip
        errors = "switchboard_errors_total"
        assert (
            total(after, errors, error_type="model_not_found")
            - total(before, errors, error_type="model_not_found")
            == UNKNOWN
        )

        tokens = "switchboard_tokens_total"
        assert total(after, tokens, tenant=TENANT, model=MODEL, kind="prompt") == prompt
        assert total(after, tokens, tenant=TENANT, model=MODEL, kind="completion") == completion
        assert total(after, tokens, tenant=TENANT, kind="cached") == 0
        cost = total(after, "switchboard_cost_usd_total", tenant=TENANT, model=MODEL)
        assert math.isclose(cost, float(header_cost + streamed_cost), rel_tol=0, abs_tol=1e-9)

        for histogram, count in (
            ("switchboard_request_latency_seconds", PLAIN + STREAMED + UNKNOWN),
            ("switchboard_gateway_overhead_seconds", PLAIN + STREAMED + UNKNOWN),
            ("switchboard_time_to_first_token_seconds", STREAMED),
        ):
            name = f"{histogram}_count"
            assert total(after, name) - total(before, name) == count, histogram
            inf = total(after, f"{histogram}_bucket", le="+Inf")
            assert inf - total(before, f"{histogram}_bucket", le="+Inf") == count

        # Gauges read at scrape time: the breaker of the new deployment is closed, and the
        # budget's utilisation is its settled spend over its 1 USD limit.
        assert after[("switchboard_breaker_state",
                      (("deployment", str(deployment.pk)), ("model", MODEL)))] == 0  # fmt: skip
        utilisation = after[("switchboard_budget_utilisation_ratio",
                             (("budget", str(budget.pk)), ("scope", "tenant"),
                              ("tenant", TENANT)))]  # fmt: skip
        assert math.isclose(utilisation, float(header_cost + streamed_cost), abs_tol=1e-6)
        # Each call appended one usage event to the tenant's stream; nothing drained it yet.
        assert total(after, "switchboard_usage_queue_lag_events") == PLAIN + STREAMED + UNKNOWN
        assert total(after, "switchboard_scrape_source_up") == 3

    usage_stream_drain()
    assert total(scrape(multi_gateway.url), "switchboard_usage_queue_lag_events") == 0


@pytest.mark.parametrize("probe", ["metrics-privacy"], indirect=True)
def test_metrics_never_carry_end_users_prompts_or_keys(multi_gateway, probe) -> None:
    tenant, _, _, key = probe
    asyncio.run(_traffic(multi_gateway.url, key))
    response = httpx.get(f"{multi_gateway.url}/metrics", headers=_auth(), timeout=10)
    text = response.text
    assert f'tenant="{tenant.slug}"' in text  # the scrape did see the calls
    for secret in (END_USER, PROMPT_MARKER, key, key.split("_")[1], "no-such-model"):
        assert secret not in text
