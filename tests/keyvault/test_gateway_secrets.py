"""Gateway calls with a provider key from a secret reference: rotation without downtime."""

import pytest

from gateway.runtime.snapshot import snapshot_holder
from gateway.services import deployment_create
from keyvault.resolver import secret_resolver
from keyvault.services import secret_reference_create, vault_connection_create
from switchboard.fakellm.testing import FakeLLM
from tenants.audit import AuditContext

CTX = AuditContext.system("test")
OLD, NEW = "sk-canary-old-4e1d", "sk-canary-new-9b7a"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def strict_upstream():  # type: ignore[no-untyped-def]
    with FakeLLM(require_key=OLD) as fake:
        yield fake


@pytest.fixture
def vaulted(cast, strict_upstream, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SB_ROTATING_KEY", OLD)
    connection = vault_connection_create(context=CTX, tenant=cast.acme,
                                         fields={"name": "dev", "backend": "env"})  # fmt: skip
    reference = secret_reference_create(
        context=CTX, tenant=cast.acme,
        fields={"name": "openai", "connection": connection, "secret_name": "SB_ROTATING_KEY"},
    )  # fmt: skip
    deployment_create(context=CTX, tenant=cast.acme, fields={
        "name": "gpt-4o-mini", "provider": "openai", "litellm_model": "openai/gpt-4o-mini",
        "api_base": f"{strict_upstream.url}/v1", "secret_reference": reference})  # fmt: skip
    secret_resolver.clear()
    snapshot_holder.invalidate()
    return reference


def _call(client, key: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/chat/completions", BODY, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {key}")  # fmt: skip


def test_rotation_refetches_once_and_succeeds(vaulted, acme_key, client, strict_upstream,
                                              monkeypatch) -> None:  # fmt: skip
    _, key = acme_key
    assert _call(client, key).status_code == 200
    fetches = secret_resolver.fetches
    # Rotate: the vault has the new key, the provider now rejects the old one.
    monkeypatch.setenv("SB_ROTATING_KEY", NEW)
    strict_upstream.require(NEW)
    response = _call(client, key)
    assert response.status_code == 200, response.content
    assert secret_resolver.fetches == fetches + 1  # exactly one extra fetch
    assert response["x-switchboard-attempts"] == "2"
    assert _call(client, key).status_code == 200
    assert secret_resolver.fetches == fetches + 1  # and cached again


def test_provider_rejecting_the_new_key_too_is_not_a_loop(vaulted, acme_key, client,
                                                          strict_upstream) -> None:  # fmt: skip
    _, key = acme_key
    strict_upstream.require("sk-something-else")
    response = _call(client, key)
    assert response.status_code == 502
    assert int(response["x-switchboard-attempts"]) == 2
    for secret in (OLD, NEW):
        assert secret not in response.content.decode()
