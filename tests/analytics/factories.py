"""Builders of usage events for the analytics tests."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import redis.asyncio as aioredis
from django.conf import settings

from analytics.usage import UsageEvent, usage_event_append
from tenants.models import Tenant

# The `make_tenant` fixture: a tenant with a random, very large id (see conftest.py).
MakeTenant = Callable[[str], Tenant]


def usage_event(tenant_id: int, **overrides: Any) -> UsageEvent:
    """A valid event with only the required fields set, unless overridden."""
    values: dict[str, Any] = {
        "request_id": f"req-{uuid4().hex}",
        "created_at": datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
        "tenant_id": tenant_id,
        "model": "gpt-4o-mini",
        "provider": "openai",
        "cost_usd": Decimal("0.0001234567"),
        "latency_ms": 840,
        "status": "success",
        "http_status": 200,
    }
    values.update(overrides)
    return UsageEvent(**values)


def events_append(events: list[UsageEvent]) -> list[str]:
    """Append through the real async path, as the gateway does, from synchronous test code."""

    async def append() -> list[str]:
        # A client of this loop only: asyncio.run closes the loop when it returns.
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            return [await usage_event_append(event, client=client) for event in events]
        finally:
            await client.aclose()

    return asyncio.run(append())
