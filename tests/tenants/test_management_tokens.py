"""Management tokens: automation acts as its user, and only while the token is valid."""

from io import StringIO

from django.core.management import call_command

from tenants.models import ManagementToken


def test_token_created_once_and_used_as_bearer(cast, client) -> None:
    created = cast.client(cast.alice).post(
        "/api/v1/management-tokens/", {"name": "ci"}, format="json"
    )
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("sbm_")
    stored = ManagementToken.objects.get(prefix=created.json()["prefix"])
    assert token.split("_")[2] not in stored.secret_hmac

    response = client.get("/api/v1/tenants/acme/teams/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert (
        client.get(
            "/api/v1/tenants/globex/teams/", HTTP_AUTHORIZATION=f"Bearer {token}"
        ).status_code
        == 404
    )

    listing = cast.client(cast.alice).get("/api/v1/management-tokens/").json()
    assert "token" not in listing["results"][0]
    assert (
        cast.client(cast.alice).delete(f"/api/v1/management-tokens/{stored.pk}/").status_code == 200
    )
    revoked = client.get("/api/v1/tenants/acme/teams/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert revoked.status_code == 401
    assert revoked.json()["error"]["type"] == "authentication_error"


def test_other_users_tokens_are_invisible(cast) -> None:
    created = cast.client(cast.alice).post("/api/v1/management-tokens/", {"name": "ci"}).json()
    charlie = cast.client(cast.charlie)
    assert charlie.get("/api/v1/management-tokens/").json()["count"] == 0
    assert charlie.delete(f"/api/v1/management-tokens/{created['id']}/").status_code == 404


def test_api_key_is_not_a_management_token(cast, client, acme_key) -> None:
    response = client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {acme_key[1]}")
    assert response.status_code == 401


def test_command_prints_only_the_token_when_quiet(cast, client) -> None:
    out = StringIO()
    call_command("create_management_token", "alice", "--quiet", stdout=out)
    token = out.getvalue().strip()
    assert "\n" not in token
    me = client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert me.json()["username"] == "alice"
    assert me.json()["memberships"] == [{"tenant": "acme", "role": "owner"}]
