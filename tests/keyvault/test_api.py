"""Vault connections and secret references through the management API; the test action."""

import pytest
from django.test import override_settings

from keyvault.models import SecretAccessRollup, SecretReference, VaultConnection
from tenants.roles import Role
from tests.tenants.factories import UserFactory

BASE = "/api/v1/tenants/acme"
CANARY = "canary-71b2-provider-key"


@pytest.fixture
def env_reference(cast, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SB_ACME_OPENAI", CANARY)
    alice = cast.client(cast.alice)
    connection = alice.post(f"{BASE}/vault-connections/", {"name": "dev", "backend": "env"},
                            format="json")  # fmt: skip
    assert connection.status_code == 201, connection.content
    reference = alice.post(
        f"{BASE}/secret-references/",
        {"name": "openai", "connection": connection.json()["id"], "secret_name": "SB_ACME_OPENAI"},
        format="json",
    )
    assert reference.status_code == 201, reference.content
    return reference.json()


def test_test_action_reports_ok_and_latency_never_the_value(cast, env_reference) -> None:
    response = cast.client(cast.alice).post(f"{BASE}/secret-references/{env_reference['id']}/test/")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["latency_ms"] >= 0
    assert CANARY not in response.content.decode()
    rollup = SecretAccessRollup.objects.get(reference_id=env_reference["id"])
    assert (rollup.outcome, rollup.accessor, rollup.count) == ("ok", "test:alice", 1)


def test_test_action_reports_the_error_class(cast, env_reference, monkeypatch) -> None:
    monkeypatch.delenv("SB_ACME_OPENAI")
    body = (
        cast.client(cast.alice).post(f"{BASE}/secret-references/{env_reference['id']}/test/").json()
    )
    assert (body["ok"], body["error"]) == (False, "not_found")


def test_validation_and_platform_setting(cast) -> None:
    alice = cast.client(cast.alice)
    bad = alice.post(f"{BASE}/vault-connections/", {"name": "x", "backend": "env",
                     "settings": {"token": "nope"}}, format="json")  # fmt: skip
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "settings"
    assert alice.post(f"{BASE}/vault-connections/", {"name": "x", "backend": "martian"},
                      format="json").status_code == 400  # fmt: skip
    with override_settings(KEYVAULT_ALLOW_ENV_BACKEND=False):
        refused = alice.post(f"{BASE}/vault-connections/", {"name": "x", "backend": "env"},
                             format="json")  # fmt: skip
    assert refused.status_code == 400
    assert "disabled" in refused.json()["error"]["message"]
    assert not VaultConnection.objects.exists()


def test_roles_outsiders_and_foreign_connections(cast, env_reference) -> None:
    cast.set_bob_role(Role.DEVELOPER)
    bob = cast.client(cast.bob)
    assert bob.get(f"{BASE}/secret-references/").json()["count"] == 1
    assert bob.post(f"{BASE}/vault-connections/", {"name": "y", "backend": "env"},
                    format="json").status_code == 403  # fmt: skip
    assert bob.post(f"{BASE}/secret-references/{env_reference['id']}/test/").status_code == 403
    charlie = cast.client(cast.charlie)
    assert charlie.get(f"{BASE}/secret-references/").status_code == 404
    # globex cannot point a reference at acme's connection.
    foreign = charlie.post(
        "/api/v1/tenants/globex/secret-references/",
        {"name": "steal", "connection": env_reference["connection"], "secret_name": "X"},
        format="json",
    )
    assert foreign.status_code == 400
    assert not SecretReference.objects.filter(name="steal").exists()


def test_deployment_cannot_use_another_tenants_reference(cast, env_reference) -> None:
    response = cast.client(cast.charlie).post(
        "/api/v1/tenants/globex/deployments/",
        {"name": "gpt-4o-mini", "provider": "openai", "litellm_model": "openai/gpt-4o-mini",
         "api_base": "https://8.8.8.8/v1", "secret_reference": env_reference["id"]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "secret_reference"


def test_global_references_are_staff_only(cast) -> None:
    staff = cast.client(UserFactory(username="platform", is_staff=True))
    connection = staff.post("/api/v1/vault-connections/", {"name": "shared", "backend": "env"},
                            format="json")  # fmt: skip
    assert connection.status_code == 201, connection.content
    assert (
        cast.client(cast.alice)
        .post("/api/v1/vault-connections/", {"name": "x", "backend": "env"}, format="json")
        .status_code
        == 403
    )
    # Tenants neither see nor use platform connections and references.
    assert cast.client(cast.alice).get(f"{BASE}/vault-connections/").json()["count"] == 0
    borrowed = cast.client(cast.alice).post(
        f"{BASE}/secret-references/",
        {"name": "borrow", "connection": connection.json()["id"], "secret_name": "ANY_SECRET"},
        format="json",
    )
    assert borrowed.status_code == 400
    assert borrowed.json()["error"]["param"] == "connection"


def test_tenant_deployment_cannot_use_a_platform_reference(cast) -> None:
    """Else a tenant could send the platform's provider key to an api_base it controls."""
    staff = cast.client(UserFactory(username="platform", is_staff=True))
    connection = staff.post("/api/v1/vault-connections/", {"name": "shared", "backend": "env"},
                            format="json").json()  # fmt: skip
    reference = staff.post(
        "/api/v1/secret-references/",
        {"name": "platform-openai", "connection": connection["id"], "secret_name": "OPENAI_KEY"},
        format="json",
    )
    assert reference.status_code == 201, reference.content
    response = cast.client(cast.charlie).post(
        "/api/v1/tenants/globex/deployments/",
        {"name": "gpt-4o-mini", "provider": "openai", "litellm_model": "openai/gpt-4o-mini",
         "api_base": "https://8.8.8.8/v1", "secret_reference": reference.json()["id"]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "secret_reference"


def test_connection_test_action(cast, env_reference) -> None:
    alice = cast.client(cast.alice)
    body = alice.post(f"{BASE}/vault-connections/{env_reference['connection']}/test/").json()
    assert body["ok"] is True
    assert body["error"] is None


def test_connection_test_reports_an_unreachable_vault(cast) -> None:
    alice = cast.client(cast.alice)
    created = alice.post(
        f"{BASE}/vault-connections/",
        {"name": "bao", "backend": "hashicorp_vault",
         "settings": {"address": "http://127.0.0.1:9", "token_env": "NO_SUCH_TOKEN",
                      "timeout_s": 0.5}},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.content
    body = alice.post(f"{BASE}/vault-connections/{created.json()['id']}/test/").json()
    assert body["ok"] is False
    assert body["error"] in ("unavailable", "auth")
