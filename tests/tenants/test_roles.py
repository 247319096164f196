"""The role matrix: who may read, create and change what inside a tenant."""

import pytest

from tenants.models import ApiKey, Membership, Team
from tenants.roles import Role
from tests.tenants.factories import MembershipFactory, UserFactory

BASE = "/api/v1/tenants/acme"


def test_viewer_reads_but_cannot_create_anything(cast) -> None:
    bob = cast.client(cast.bob)
    assert bob.get(f"{BASE}/teams/").status_code == 200
    assert bob.get(f"{BASE}/api-keys/").status_code == 200
    for url, payload in (
        (f"{BASE}/teams/", {"slug": "t", "name": "T"}),
        (f"{BASE}/api-keys/", {"name": "k"}),
        (f"{BASE}/members/", {"user": "charlie", "role": "viewer"}),
    ):
        response = bob.post(url, payload, format="json")
        assert response.status_code == 403, url
        assert response.json()["error"]["type"] == "permission_error"
    assert bob.patch(f"{BASE}/", {"name": "Renamed"}, format="json").status_code == 403
    assert not Team.objects.filter(slug="t").exists()
    assert not ApiKey.objects.exists()


def test_viewer_cannot_read_the_audit_trail(cast) -> None:
    assert cast.client(cast.bob).get(f"{BASE}/audit-events/").status_code == 403
    cast.set_bob_role(Role.FINANCE)
    assert cast.client(cast.bob).get(f"{BASE}/audit-events/").status_code == 200


def test_developer_manages_keys_but_cannot_change_roles(cast) -> None:
    cast.set_bob_role(Role.DEVELOPER)
    bob = cast.client(cast.bob)
    assert bob.post(f"{BASE}/api-keys/", {"name": "dev key"}, format="json").status_code == 201
    dave = UserFactory(username="dave")
    dave_membership = MembershipFactory(tenant=cast.acme, user=dave, role=Role.VIEWER)
    response = bob.patch(f"{BASE}/members/{dave_membership.pk}/", {"role": "admin"}, format="json")
    assert response.status_code == 403
    assert bob.post(f"{BASE}/members/", {"user": "charlie", "role": "viewer"}).status_code == 403
    dave_membership.refresh_from_db()
    assert dave_membership.role == Role.VIEWER


@pytest.mark.parametrize("role", [Role.ADMIN, Role.DEVELOPER, Role.FINANCE, Role.VIEWER])
def test_nobody_can_raise_their_own_role(cast, role) -> None:
    cast.set_bob_role(role)
    response = cast.client(cast.bob).patch(
        f"{BASE}/members/{cast.bob_membership.pk}/", {"role": "owner"}, format="json"
    )
    assert response.status_code == 403
    cast.bob_membership.refresh_from_db()
    assert cast.bob_membership.role == role


def test_owner_cannot_change_own_role_either(cast) -> None:
    alice_membership = Membership.objects.get(tenant=cast.acme, user=cast.alice)
    response = cast.client(cast.alice).patch(
        f"{BASE}/members/{alice_membership.pk}/", {"role": "viewer"}, format="json"
    )
    assert response.status_code == 403


def test_admin_grants_up_to_admin_but_never_owner(cast) -> None:
    cast.set_bob_role(Role.ADMIN)
    bob = cast.client(cast.bob)
    dave = UserFactory(username="dave")
    created = bob.post(f"{BASE}/members/", {"user": "dave", "role": "developer"}, format="json")
    assert created.status_code == 201, created.content
    member_url = f"{BASE}/members/{created.json()['id']}/"
    assert bob.patch(member_url, {"role": "admin"}, format="json").status_code == 200
    assert bob.patch(member_url, {"role": "owner"}, format="json").status_code == 403
    assert Membership.objects.get(user=dave, tenant=cast.acme).role == Role.ADMIN

    alice_membership = Membership.objects.get(tenant=cast.acme, user=cast.alice)
    alice_url = f"{BASE}/members/{alice_membership.pk}/"
    assert bob.patch(alice_url, {"role": "viewer"}, format="json").status_code == 403
    assert bob.delete(alice_url).status_code == 403
    assert Membership.objects.get(pk=alice_membership.pk).role == Role.OWNER


def test_owner_promotes_and_last_owner_cannot_leave(cast) -> None:
    alice = cast.client(cast.alice)
    bob_url = f"{BASE}/members/{cast.bob_membership.pk}/"
    assert alice.patch(bob_url, {"role": "owner"}, format="json").status_code == 200

    alice_membership = Membership.objects.get(tenant=cast.acme, user=cast.alice)
    assert alice.delete(f"{BASE}/members/{alice_membership.pk}/").status_code == 204
    bob = cast.client(cast.bob)
    response = bob.delete(bob_url)
    assert response.status_code == 400
    assert "owner" in response.json()["error"]["message"]


def test_member_teams_must_be_of_the_same_tenant(cast, acme_team) -> None:
    from tests.tenants.factories import TeamFactory

    foreign = TeamFactory(tenant=cast.globex)
    url = f"{BASE}/members/{cast.bob_membership.pk}/"
    alice = cast.client(cast.alice)
    assert alice.patch(url, {"teams": [foreign.pk]}, format="json").status_code == 400
    response = alice.patch(url, {"teams": [acme_team.pk]}, format="json")
    assert response.status_code == 200
    assert response.json()["teams"] == [acme_team.pk]


def test_only_platform_staff_create_tenants_or_change_tier(cast) -> None:
    alice = cast.client(cast.alice)
    assert alice.post("/api/v1/tenants/", {"slug": "new", "name": "N"}).status_code == 403
    response = alice.patch(f"{BASE}/", {"tier": "enterprise"}, format="json")
    assert response.status_code == 403
    assert alice.patch(f"{BASE}/", {"name": "Acme Corp"}, format="json").status_code == 200

    staff = cast.client(UserFactory(username="platform", is_staff=True))
    created = staff.post(
        "/api/v1/tenants/",
        {"slug": "initech", "name": "Initech", "time_zone": "Europe/Paris", "owner": "bob"},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert Membership.objects.get(tenant__slug="initech", user=cast.bob).role == Role.OWNER
    suspended = staff.patch("/api/v1/tenants/initech/", {"status": "suspended"}, format="json")
    assert suspended.json()["status"] == "suspended"
