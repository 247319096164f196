"""Tenant scoping fails closed: an outsider gets 404 from every endpoint and changes nothing."""

import pytest

from tenants.audit import AuditContext
from tenants.models import ApiKey, AuditEvent, Membership, Team, Tenant
from tenants.services import api_key_create


@pytest.fixture
def acme_objects(cast, acme_team):  # type: ignore[no-untyped-def]
    api_key, _ = api_key_create(context=AuditContext.system("test"), tenant=cast.acme, name="k")
    event = AuditEvent.objects.filter(tenant=cast.acme).first()
    return {
        "team": acme_team.pk,
        "member": cast.bob_membership.pk,
        "key": api_key.pk,
        "event": event.pk,
    }


def _state() -> tuple:
    return (
        list(Tenant.objects.values_list("slug", "name", "tier", "status", "time_zone")),
        list(Team.objects.values_list("slug", "name", "description")),
        list(Membership.objects.values_list("user_id", "role")),
        list(ApiKey.objects.values_list("name", "revoked_at", "rpm_limit")),
        AuditEvent.objects.count(),
    )


REQUESTS = [
    ("get", "/api/v1/tenants/acme/", None),
    ("patch", "/api/v1/tenants/acme/", {"name": "Pwned"}),
    ("get", "/api/v1/tenants/acme/teams/", None),
    ("post", "/api/v1/tenants/acme/teams/", {"slug": "evil", "name": "Evil"}),
    ("get", "/api/v1/tenants/acme/teams/{team}/", None),
    ("patch", "/api/v1/tenants/acme/teams/{team}/", {"name": "Evil"}),
    ("delete", "/api/v1/tenants/acme/teams/{team}/", None),
    ("get", "/api/v1/tenants/acme/members/", None),
    ("post", "/api/v1/tenants/acme/members/", {"user": "charlie", "role": "owner"}),
    ("get", "/api/v1/tenants/acme/members/{member}/", None),
    ("patch", "/api/v1/tenants/acme/members/{member}/", {"role": "owner"}),
    ("delete", "/api/v1/tenants/acme/members/{member}/", None),
    ("get", "/api/v1/tenants/acme/api-keys/", None),
    ("post", "/api/v1/tenants/acme/api-keys/", {"name": "stolen"}),
    ("get", "/api/v1/tenants/acme/api-keys/{key}/", None),
    ("patch", "/api/v1/tenants/acme/api-keys/{key}/", {"rpm_limit": 1}),
    ("delete", "/api/v1/tenants/acme/api-keys/{key}/", None),
    ("post", "/api/v1/tenants/acme/api-keys/{key}/rotate/", {}),
    ("post", "/api/v1/tenants/acme/api-keys/{key}/revoke/", {}),
    ("get", "/api/v1/tenants/acme/audit-events/", None),
    ("get", "/api/v1/tenants/acme/audit-events/{event}/", None),
    # acme's objects addressed through the outsider's own tenant are not found either.
    ("get", "/api/v1/tenants/globex/teams/{team}/", None),
    ("patch", "/api/v1/tenants/globex/teams/{team}/", {"name": "Evil"}),
    ("get", "/api/v1/tenants/globex/members/{member}/", None),
    ("patch", "/api/v1/tenants/globex/members/{member}/", {"role": "viewer"}),
    ("delete", "/api/v1/tenants/globex/members/{member}/", None),
    ("get", "/api/v1/tenants/globex/api-keys/{key}/", None),
    ("post", "/api/v1/tenants/globex/api-keys/{key}/rotate/", {}),
    ("delete", "/api/v1/tenants/globex/api-keys/{key}/", None),
    ("get", "/api/v1/tenants/globex/audit-events/{event}/", None),
]


@pytest.mark.parametrize(("method", "url", "payload"), REQUESTS)
def test_outsider_gets_404_and_changes_nothing(cast, acme_objects, method, url, payload) -> None:
    before = _state()
    client = cast.client(cast.charlie)
    response = getattr(client, method)(url.format(**acme_objects), payload, format="json")
    assert response.status_code == 404, response.content
    assert response.json()["error"]["type"] == "not_found_error"
    assert _state() == before


def test_outsider_lists_only_own_tenants(cast) -> None:
    body = cast.client(cast.charlie).get("/api/v1/tenants/").json()
    assert [tenant["slug"] for tenant in body["results"]] == ["globex"]


def test_unknown_tenant_and_anonymous_caller(cast, client) -> None:
    assert cast.client(cast.alice).get("/api/v1/tenants/nope/teams/").status_code == 404
    anonymous = client.get("/api/v1/tenants/acme/teams/")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"


def test_platform_staff_see_every_tenant(cast) -> None:
    from tests.tenants.factories import UserFactory

    staff = UserFactory(username="platform", is_staff=True)
    body = cast.client(staff).get("/api/v1/tenants/").json()
    assert {tenant["slug"] for tenant in body["results"]} == {"acme", "globex"}
    assert cast.client(staff).get("/api/v1/tenants/acme/api-keys/").status_code == 200


def test_subclass_cannot_override_scoping() -> None:
    from tenants.api.base import TenantScopedViewSet

    with pytest.raises(TypeError, match="get_queryset"):

        class Leaky(TenantScopedViewSet):
            scoped_queryset = Team.objects.all()

            def get_queryset(self):  # type: ignore[no-untyped-def]
                return Team.objects.all()
