"""Management API for model deployments: validation, egress policy, roles and scoping."""

import pytest
from django.test import override_settings

from gateway.models import ModelDeployment
from tenants.roles import Role
from tests.tenants.factories import UserFactory

URL = "/api/v1/tenants/acme/deployments/"
VALID = {
    "name": "gpt-4o-mini",
    "provider": "openai",
    "litellm_model": "openai/gpt-4o-mini",
    "api_base": "https://8.8.8.8/v1",  # an IP literal: no DNS on the test machine
    "api_key_env": "OPENAI_API_KEY",
}


def test_owner_creates_lists_updates_and_deletes(cast) -> None:
    alice = cast.client(cast.alice)
    created = alice.post(URL, VALID, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["scope"] == "tenant"
    assert body["capabilities"] == ["streaming", "tools", "json_mode"]
    detail = f"{URL}{body['id']}/"
    assert alice.patch(detail, {"enabled": False}, format="json").json()["enabled"] is False
    assert alice.get(URL).json()["count"] == 1
    assert alice.delete(detail).status_code == 204
    assert not ModelDeployment.objects.exists()


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"api_base": "ftp://example.com"}, "api_base"),
        ({"api_base": "http://169.254.169.254/latest"}, "api_base"),
        ({"api_base": "http://10.0.0.8:8000"}, "api_base"),
        ({"api_base": "http://[::ffff:127.0.0.1]/"}, "api_base"),
        ({"api_base": "http://127.0.0.1:9000"}, "api_base"),
        ({"provider": "azure", "api_version": ""}, "api_version"),
        ({"provider": "openai_compatible", "api_base": ""}, "api_base"),
        ({"capabilities": ["telepathy"]}, "capabilities"),
        ({"name": "bad name!"}, "name"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"input_price_per_mtok": "-1"}, "input_price_per_mtok"),
        ({"fallbacks": "gpt-4o"}, "fallbacks"),
        ({"fallbacks": ["gpt-4o-mini"]}, "fallbacks"),
        ({"api_key_env": "lower-case"}, "api_key_env"),
        ({"provider": "martian"}, "provider"),
        # Unknown to litellm's cost map and no price set: it would silently cost nothing.
        ({"litellm_model": "openai/my-private-model"}, "input_price_per_mtok"),
        (
            {"litellm_model": "openai/my-private-model", "input_price_per_mtok": "1"},
            "output_price_per_mtok",
        ),
    ],
)
@override_settings(ALLOWED_UPSTREAM_HOSTS=[])
def test_invalid_deployments_are_400(cast, patch, param) -> None:
    response = cast.client(cast.alice).post(URL, {**VALID, **patch}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert not ModelDeployment.objects.exists()


def test_allow_list_admits_a_private_upstream(cast) -> None:
    with override_settings(ALLOWED_UPSTREAM_HOSTS=["10.0.0.0/8"]):
        response = cast.client(cast.alice).post(
            URL, {**VALID, "api_base": "http://10.0.0.8:8000/v1"}, format="json"
        )
    assert response.status_code == 201, response.content


def test_roles_and_outsiders(cast) -> None:
    cast.set_bob_role(Role.DEVELOPER)
    assert cast.client(cast.bob).post(URL, VALID, format="json").status_code == 403
    created = cast.client(cast.alice).post(URL, VALID, format="json").json()
    assert cast.client(cast.bob).get(URL).json()["count"] == 1
    charlie = cast.client(cast.charlie)
    assert charlie.get(URL).status_code == 404
    assert charlie.get(f"/api/v1/tenants/globex/deployments/{created['id']}/").status_code == 404
    assert (
        charlie.patch(
            f"/api/v1/tenants/globex/deployments/{created['id']}/",
            {"enabled": False},
            format="json",
        ).status_code
        == 404
    )


def test_global_deployments_are_staff_only_and_read_only_to_tenants(cast) -> None:
    staff = cast.client(UserFactory(username="platform", is_staff=True))
    assert (
        cast.client(cast.alice).post("/api/v1/deployments/", VALID, format="json").status_code
        == 403
    )
    created = staff.post("/api/v1/deployments/", VALID, format="json")
    assert created.status_code == 201, created.content
    shared_id = created.json()["id"]
    alice = cast.client(cast.alice)
    listed = alice.get(URL).json()
    assert [(d["id"], d["scope"]) for d in listed["results"]] == [(shared_id, "global")]
    assert alice.get(f"{URL}{shared_id}/").status_code == 200
    assert alice.patch(f"{URL}{shared_id}/", {"enabled": False}, format="json").status_code == 404
    assert alice.delete(f"{URL}{shared_id}/").status_code == 404
    assert ModelDeployment.objects.get(pk=shared_id).enabled is True


def test_unlisted_model_is_accepted_with_explicit_prices(cast) -> None:
    response = cast.client(cast.alice).post(
        URL,
        {**VALID, "litellm_model": "openai/my-private-model",
         "input_price_per_mtok": "0", "output_price_per_mtok": "0.5"},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.content
    assert response.json()["output_price_per_mtok"] == "0.5000000000"
