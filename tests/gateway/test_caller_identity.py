"""What a caller may claim about itself: request ids and user tiers."""

import time

import pytest

from analytics.models import UsageRecord
from analytics.usage import usage_stream_drain
from gateway.runtime.auth import Caller
from gateway.runtime.routing import caller_tier_rank
from gateway.runtime.snapshot import KeyEntry, TenantEntry, snapshot_holder
from gateway.services import deployment_create
from tenants.audit import AuditContext
from tenants.models import USER_TIER_RANK


def _caller(tenant_tier: str, key_max: str = "") -> Caller:
    key = KeyEntry(id=1, prefix="p", secret_hmac="h", name="k", tenant_id=1, team_id=None,
                   expires_at=None, revoked_at=None, allowed_models=frozenset(),
                   allowed_task_types=frozenset(), max_user_tier=key_max, rpm_limit=None,
                   tpm_limit=None)  # fmt: skip
    return Caller(key=key, tenant=TenantEntry(id=1, slug="t", active=True, tier=tenant_tier,
                                              time_zone="UTC"))  # fmt: skip


@pytest.mark.parametrize(
    ("tenant_tier", "key_max", "requested", "expected"),
    [
        ("free", "", "enterprise", "free"),  # a request cannot lift the tenant's tier
        ("enterprise", "", "premium", "premium"),
        ("enterprise", "standard", "enterprise", "standard"),  # nor the key's maximum
        ("premium", "", None, "premium"),
        ("enterprise", "standard", None, "standard"),
        ("premium", "", "platinum", "free"),  # an unknown tier is the lowest
    ],
)
def test_user_tier_is_capped(tenant_tier, key_max, requested, expected) -> None:
    assert caller_tier_rank(_caller(tenant_tier, key_max), requested) == USER_TIER_RANK[expected]


@pytest.mark.django_db(transaction=True)
def test_client_request_id_cannot_merge_or_suppress_usage(cast, acme_key, client,
                                                          fake_llm) -> None:  # fmt: skip
    deployment_create(context=AuditContext.system("test"), tenant=cast.acme, fields={
        "name": "gpt-4o-mini", "provider": "openai", "litellm_model": "openai/gpt-4o-mini",
        "api_base": f"{fake_llm.url}/v1"})  # fmt: skip
    snapshot_holder.invalidate()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    responses = [
        client.post(
            "/v1/chat/completions",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {acme_key[1]}",
            HTTP_X_REQUEST_ID="constant-id-0001",
        )
        for _ in range(3)
    ]
    assert [r.status_code for r in responses] == [200, 200, 200]
    ids = {r["x-request-id"] for r in responses}
    assert len(ids) == 3  # minted by the server
    assert {r["x-client-request-id"] for r in responses} == {"constant-id-0001"}
    time.sleep(0.1)
    usage_stream_drain()
    records = UsageRecord.objects.filter(request_id__in=ids)
    assert records.count() == 3  # every call billed
    assert {r.metadata["client_request_id"] for r in records} == {"constant-id-0001"}
