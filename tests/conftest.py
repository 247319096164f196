"""Shared fixtures: the fixed cast (alice, bob, charlie) and API clients acting as them.

alice owns tenant `acme`; bob is a member of `acme` with a lesser role (viewer unless a test
changes it); charlie owns `globex` and must never see anything of `acme`.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from switchboard.fakellm.testing import FakeLLM
from tenants.audit import AuditContext
from tenants.models import Membership, Tenant
from tenants.roles import Role
from tenants.services import api_key_create
from tests.tenants.factories import MembershipFactory, TeamFactory, TenantFactory, UserFactory


@dataclass
class Cast:
    acme: Tenant
    globex: Tenant
    alice: Any
    bob: Any
    charlie: Any
    bob_membership: Membership

    def client(self, user: Any) -> APIClient:
        client = APIClient()
        client.force_login(user)
        return client

    def set_bob_role(self, role: str) -> None:
        self.bob_membership.role = role
        self.bob_membership.save(update_fields=["role"])


@pytest.fixture
def cast(db: None) -> Cast:
    acme = TenantFactory(slug="acme", name="Acme")
    globex = TenantFactory(slug="globex", name="Globex")
    alice = UserFactory(username="alice")
    bob = UserFactory(username="bob")
    charlie = UserFactory(username="charlie")
    MembershipFactory(tenant=acme, user=alice, role=Role.OWNER)
    bob_membership = MembershipFactory(tenant=acme, user=bob, role=Role.VIEWER)
    MembershipFactory(tenant=globex, user=charlie, role=Role.OWNER)
    return Cast(acme, globex, alice, bob, charlie, bob_membership)


@pytest.fixture
def acme_team(cast: Cast) -> Any:
    return TeamFactory(tenant=cast.acme, slug="research", name="Research")


@pytest.fixture
def acme_key(cast: Cast) -> tuple[Any, str]:
    """An active API key of acme and its plaintext."""
    return api_key_create(context=AuditContext.system("test"), tenant=cast.acme, name="acme app")


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLM]:
    """The project's fake LLM upstream, a real HTTP server on 127.0.0.1."""
    with FakeLLM() as fake:
        yield fake


@pytest.fixture(scope="session", autouse=True)
def _fresh_test_redis() -> None:
    """Database ids restart in every test session, so Redis state keyed by them (usage streams,
    breakers) must too. The test settings give the suite its own Redis database."""
    from django.conf import settings

    from switchboard.redis_client import redis_sync

    assert settings.SWITCHBOARD_ENV == "test", "refusing to flush a non-test Redis"
    redis_sync().flushdb()
