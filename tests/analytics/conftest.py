"""Fixtures of the analytics tests.

The test Redis database is shared with other test runs, and the drain reads the stream of
every tenant in the test database. So these tests create their own tenants with random,
very large ids (no other run has such a tenant, so no stream is shared) and delete exactly
those tenants' keys afterwards. They do not use the `cast` fixture: its small ids could
collide with another concurrent run's tenants.
"""

import random
from collections.abc import Callable, Iterator
from uuid import uuid4

import pytest
import redis

from analytics.usage import usage_dead_letter_key, usage_stream_key
from switchboard.redis_client import redis_sync
from tenants.models import Tenant
from tests.tenants.factories import TenantFactory


@pytest.fixture
def redis_client() -> redis.Redis:
    return redis_sync()


@pytest.fixture
def make_tenant(transactional_db: None) -> Iterator[Callable[[str], Tenant]]:
    created: list[int] = []

    def make(name: str) -> Tenant:
        tenant_id = random.randint(10**12, 9 * 10**15)
        tenant = TenantFactory(id=tenant_id, slug=f"{name}-{uuid4().hex[:8]}")
        created.append(tenant_id)
        return tenant

    yield make
    keys = [key for t in created for key in (usage_stream_key(t), usage_dead_letter_key(t))]
    if keys:
        redis_sync().delete(*keys)
