"""End to end: a gateway call whose provider key lives in a real vault server.

The fake upstream only accepts the key stored in the vault, so a 200 proves the key was
fetched from that vault at call time. Rotation in the vault is picked up after the provider
refuses the old key, with exactly one extra fetch.
"""

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from gateway.runtime.snapshot import snapshot_holder
from gateway.services import deployment_create
from keyvault.resolver import secret_resolver
from keyvault.services import secret_reference_create, vault_connection_create
from switchboard.fakellm.testing import FakeLLM
from tenants.audit import AuditContext
from tests.keyvault.fixtures_azure import azure_vault  # noqa: F401
from tests.keyvault.fixtures_moto import moto_server  # noqa: F401
from tests.keyvault.fixtures_openbao import OpenBao, openbao_fixture  # noqa: F401

CTX = AuditContext.system("test")
BODY = {"model": "vaulted", "messages": [{"role": "user", "content": "hi"}]}


def _vault_deployment(cast: Any, fake: FakeLLM, backend: str, settings: dict[str, Any],
                      secret_name: str, field: str = "") -> None:  # fmt: skip
    connection = vault_connection_create(
        context=CTX,
        tenant=cast.acme,
        fields={"name": backend, "backend": backend, "settings": settings},
    )
    reference = secret_reference_create(context=CTX, tenant=cast.acme, fields={
        "name": f"{backend}-ref", "connection": connection, "secret_name": secret_name,
        "field": field})  # fmt: skip
    deployment_create(context=CTX, tenant=cast.acme, fields={
        "name": "vaulted", "provider": "openai", "litellm_model": "openai/gpt-4o-mini",
        "api_base": f"{fake.url}/v1", "secret_reference": reference})  # fmt: skip
    secret_resolver.clear()
    snapshot_holder.invalidate()


def _call(client: Any, key: str) -> Any:
    return client.post("/v1/chat/completions", BODY, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {key}")  # fmt: skip


def _rotation(client: Any, key: str, fake: FakeLLM, write: Callable[[str], None]) -> None:
    assert _call(client, key).status_code == 200
    fetches = secret_resolver.fetches
    new_value = f"sk-rotated-{uuid.uuid4().hex}"
    write(new_value)
    fake.require(new_value)
    response = _call(client, key)
    assert response.status_code == 200, response.content
    assert secret_resolver.fetches == fetches + 1


def test_key_from_openbao_kv2_with_approle(cast, acme_key, client, openbao: OpenBao,
                                           tmp_path) -> None:  # fmt: skip
    value = f"sk-bao-{uuid.uuid4().hex}"
    path = f"switchboard/{uuid.uuid4().hex}"
    root = openbao.client()
    root.secrets.kv.v2.create_or_update_secret(path=path, secret={"api_key": value},
                                               mount_point=openbao.kv2_mount)  # fmt: skip
    (tmp_path / "role_id").write_text(openbao.role_id)
    (tmp_path / "secret_id").write_text(openbao.secret_id)
    settings = {"address": openbao.address, "auth_method": "approle",
                "role_id_file": str(tmp_path / "role_id"),
                "secret_id_file": str(tmp_path / "secret_id")}  # fmt: skip
    with FakeLLM(require_key=value) as fake:
        _vault_deployment(cast, fake, "hashicorp_vault", settings, path, field="api_key")

        def write(new: str) -> None:
            root.secrets.kv.v2.create_or_update_secret(path=path, secret={"api_key": new},
                                                       mount_point=openbao.kv2_mount)  # fmt: skip

        _rotation(client, acme_key[1], fake, write)


def test_key_from_aws_secrets_manager(cast, acme_key, client, moto_server) -> None:  # noqa: F811
    value = f"sk-aws-{uuid.uuid4().hex}"
    name = f"switchboard/{uuid.uuid4().hex}"
    secrets = moto_server.client()
    secrets.create_secret(Name=name, SecretString=f'{{"openai": "{value}"}}')
    settings = {"region": moto_server.region, "endpoint_url": moto_server.endpoint_url}
    with FakeLLM(require_key=value) as fake:
        _vault_deployment(cast, fake, "aws_secrets_manager", settings, name, field="openai")

        def write(new: str) -> None:
            secrets.put_secret_value(SecretId=name, SecretString=f'{{"openai": "{new}"}}')

        _rotation(client, acme_key[1], fake, write)


def test_key_from_azure_key_vault(cast, acme_key, client, azure_vault) -> None:  # noqa: F811
    value = f"sk-azure-{uuid.uuid4().hex}"
    name = f"switchboard-{uuid.uuid4().hex[:12]}"
    azure_vault.set_secret(name, value)
    with FakeLLM(require_key=value) as fake:
        _vault_deployment(cast, fake, "azure_key_vault", azure_vault.connection_settings, name)
        _rotation(client, acme_key[1], fake, lambda new: azure_vault.set_secret(name, new))
    assert azure_vault.requests.secret_gets[name] == 2  # first fetch + one after rotation


def test_vault_down_serves_cache_until_max_age_then_503(
    cast,
    acme_key,
    client,
    moto_server,  # noqa: F811
    settings,
) -> None:
    from moto.server import ThreadedMotoServer

    from tests.system.conftest import free_port

    port = free_port()
    private = ThreadedMotoServer(ip_address="127.0.0.1", port=port)  # a vault we can take down
    private.start()
    value = f"sk-aws-{uuid.uuid4().hex}"
    name = f"switchboard/{uuid.uuid4().hex}"
    vault = {"region": moto_server.region, "endpoint_url": f"http://127.0.0.1:{port}",
             "timeout_s": 0.5, "max_attempts": 1}  # fmt: skip
    import boto3

    boto = boto3.client(
        "secretsmanager", region_name=moto_server.region, endpoint_url=vault["endpoint_url"]
    )
    boto.create_secret(Name=name, SecretString=value)
    settings.KEYVAULT_CACHE_TTL_S = 0  # every call asks the vault
    settings.KEYVAULT_STALE_RETRY_S = 0
    with FakeLLM(require_key=value) as fake:
        _vault_deployment(cast, fake, "aws_secrets_manager", vault, name)
        assert _call(client, acme_key[1]).status_code == 200
        private.stop()  # the vault is down
        assert _call(client, acme_key[1]).status_code == 200  # the cached value still works
        assert secret_resolver.stale_served >= 1
        settings.KEYVAULT_MAX_STALE_S = 0  # ... until it is too old
        refused = _call(client, acme_key[1])
    assert refused.status_code == 503
    message = refused.json()["error"]["message"]
    assert "aws_secrets_manager" in message
    assert value not in refused.content.decode()
    assert name not in message  # the vault is named, not the secret


pytestmark = pytest.mark.slow
