"""The hot path in process: zero database queries in steady state, and config propagation."""

import time

import pytest
from django.test import override_settings

from gateway.runtime.snapshot import snapshot_holder
from gateway.services import deployment_create
from switchboard.config_version import CONFIG_VERSION_KEY
from switchboard.redis_client import redis_sync
from tenants.audit import AuditContext
from tenants.services import api_key_revoke

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def deployed(cast, fake_llm):  # type: ignore[no-untyped-def]
    deployment_create(
        context=AuditContext.system("test"),
        tenant=cast.acme,
        fields={"name": "gpt-4o-mini", "provider": "openai",
                "litellm_model": "openai/gpt-4o-mini", "api_base": f"{fake_llm.url}/v1"},
    )  # fmt: skip
    snapshot_holder.invalidate()


def _call(client, key: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/chat/completions", BODY, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )  # fmt: skip


@override_settings(GATEWAY_SNAPSHOT_CHECK_S=60)
def test_zero_database_queries_per_call_in_steady_state(
    deployed, acme_key, client, django_assert_num_queries
) -> None:
    _, key = acme_key
    assert _call(client, key).status_code == 200  # warm: builds the snapshot
    with django_assert_num_queries(0):
        for _ in range(3):
            response = _call(client, key)
            assert response.status_code == 200, response.content
        assert client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200


def test_snapshot_rebuilds_when_the_config_version_changes(deployed, acme_key, client) -> None:
    api_key, key = acme_key
    assert _call(client, key).status_code == 200
    api_key_revoke(context=AuditContext.system("test"), api_key=api_key)
    # In a test transaction on_commit never fires; bump the version as the commit would.
    redis_sync().incr(CONFIG_VERSION_KEY)
    time.sleep(0.6)  # > GATEWAY_SNAPSHOT_CHECK_S
    refused = _call(client, key)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]["message"]
