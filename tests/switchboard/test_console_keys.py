"""The console's API key pages through Django's test client: listing with a status filter and
pages, creating and rotating (the plaintext once, never in a URL or a cache), revoking, and
the role and tenant checks (403 for a viewer's writes, 404 for another tenant's keys)."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gateway.runtime.snapshot import snapshot_holder
from tenants.audit import AuditContext
from tenants.models import ApiKey
from tenants.roles import Role
from tenants.services import api_key_create, api_key_revoke
from tests.tenants.factories import TeamFactory

CTX = AuditContext.system("test")
KEYS = "/console/t/acme/keys/"
HTMX = {"HTTP_HX_REQUEST": "true"}
ROW = re.compile(r'<tr id="key-(\d+)"')
PLAINTEXT = re.compile(r"sbk_[a-z0-9]{12}_[A-Za-z0-9]{40}")


def _key(tenant: Any, name: str = "app", **fields: Any) -> tuple[ApiKey, str]:
    return api_key_create(context=CTX, tenant=tenant, name=name, **fields)


def _rows(response: Any) -> list[int]:
    return [int(pk) for pk in ROW.findall(response.content.decode())]


def _gateway(client: Any, plaintext: str) -> int:
    return client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {plaintext}").status_code


# --- listing ---------------------------------------------------------------------------------


def test_list_pages_by_25_and_filters_by_status(cast) -> None:
    keys = [_key(cast.acme, f"k{i}")[0] for i in range(27)]
    api_key_revoke(context=CTX, api_key=keys[0])
    ApiKey.objects.filter(pk=keys[1].pk).update(expires_at=timezone.now() - timedelta(hours=1))
    _key(cast.globex, "not acme's")
    client = cast.client(cast.alice)

    first = client.get(KEYS)
    assert first.status_code == 200
    assert len(_rows(first)) == 25
    assert "<html" in first.content.decode()
    second = client.get(f"{KEYS}?page=2", **HTMX)  # the pager's fragment
    assert "<html" not in second.content.decode()
    assert sorted(_rows(first) + _rows(second)) == sorted(k.pk for k in keys)

    assert _rows(client.get(f"{KEYS}?status=revoked", **HTMX)) == [keys[0].pk]
    assert _rows(client.get(f"{KEYS}?status=expired", **HTMX)) == [keys[1].pk]
    active = client.get(f"{KEYS}?status=active", **HTMX)
    assert len(_rows(active)) == 25
    assert keys[0].pk not in _rows(active)
    assert "not acme" not in first.content.decode() + second.content.decode()


def test_list_shows_the_keys_settings(cast) -> None:
    team = TeamFactory(tenant=cast.acme, slug="research", name="Research")
    _key(
        cast.acme,
        "limited",
        team=team,
        allowed_models=["m-a", "m-b"],
        rpm_limit=60,
        tpm_limit=9000,
        max_concurrency=3,
    )
    page = cast.client(cast.alice).get(KEYS).content.decode()
    for text in ("limited", "Research", "m-a, m-b", "60 / 9000", ">3<", ">active<"):
        assert text in page


def test_list_queries_do_not_grow_with_the_keys(cast) -> None:
    team = TeamFactory(tenant=cast.acme, slug="research", name="Research")
    client = cast.client(cast.alice)
    _key(cast.acme, team=team)
    client.get(KEYS)  # warm the session and the caches
    with CaptureQueriesContext(connection) as one:
        client.get(KEYS)
    for i in range(20):
        _key(cast.acme, f"k{i}", team=team)
    with CaptureQueriesContext(connection) as many:
        client.get(KEYS)
    assert len(many) == len(one)


# --- creating --------------------------------------------------------------------------------


def test_create_shows_the_plaintext_once_and_never_caches_it(cast, client) -> None:
    alice = cast.client(cast.alice)
    response = alice.post(KEYS, {"name": "backend", "allowed_models": "m-a, m-b, m-a"}, **HTMX)
    assert response.status_code == 201
    assert "Location" not in response
    assert "HX-Redirect" not in response
    assert response["HX-Trigger"] == "keys-changed"
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    (plaintext,) = PLAINTEXT.findall(body)
    assert "will not be shown again" in body
    assert 'hx-history="false"' in body
    assert 'id="key-form"' in body  # a fresh form for the next key

    api_key = ApiKey.objects.get(tenant=cast.acme, name="backend")
    assert api_key.allowed_models == ["m-a", "m-b"]
    assert api_key.created_by == cast.alice
    assert _gateway(client, plaintext) == 200
    listing = alice.get(KEYS).content.decode()
    assert api_key.prefix in listing
    assert plaintext not in listing
    assert plaintext.rsplit("_", 1)[1] not in listing


def test_create_without_htmx_renders_the_page_with_the_key(cast) -> None:
    response = cast.client(cast.alice).post(KEYS, {"name": "plain"})
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    assert len(PLAINTEXT.findall(response.content.decode())) == 1


def test_invalid_create_puts_errors_next_to_fields(cast) -> None:
    alice = cast.client(cast.alice)
    past = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    fragment = alice.post(KEYS, {"name": "x", "rpm_limit": "0"}, **HTMX)
    assert fragment.status_code == 200  # htmx swaps it in
    assert re.search(r'class="error" data-field="rpm_limit"', fragment.content.decode())
    assert "<html" not in fragment.content.decode()

    service_error = alice.post(KEYS, {"name": "x", "expires_at": past}, **HTMX)
    assert re.search(
        r'data-field="expires_at">The expiry must be in the future', service_error.content.decode()
    )
    page = alice.post(KEYS, {"name": "", "max_concurrency": "many"})
    assert page.status_code == 400
    assert 'data-field="name"' in page.content.decode()
    assert 'data-field="max_concurrency"' in page.content.decode()
    assert not ApiKey.objects.filter(tenant=cast.acme).exists()


def test_a_team_of_another_tenant_is_refused(cast) -> None:
    theirs = TeamFactory(tenant=cast.globex, slug="theirs")
    response = cast.client(cast.alice).post(KEYS, {"name": "x", "team": theirs.pk}, **HTMX)
    assert 'data-field="team"' in response.content.decode()
    assert not ApiKey.objects.exists()


# --- rotating and revoking -------------------------------------------------------------------


def test_rotate_shows_the_new_key_once_and_keeps_the_old_for_the_grace(cast, client) -> None:
    old, old_plaintext = _key(cast.acme, "svc", rpm_limit=7)
    response = cast.client(cast.alice).post(
        f"{KEYS}{old.pk}/rotate/", {"grace_seconds": "600"}, **HTMX
    )
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    assert response["HX-Trigger"] == "keys-changed"
    (plaintext,) = PLAINTEXT.findall(response.content.decode())
    new = ApiKey.objects.get(rotated_from=old)
    assert plaintext.split("_")[1] == new.prefix
    assert new.rpm_limit == 7
    assert _gateway(client, plaintext) == 200
    assert _gateway(client, old_plaintext) == 200  # still inside its grace period
    old.refresh_from_db()
    assert old.revoked_at is not None
    assert old.revoked_at > timezone.now() + timedelta(seconds=590)


@pytest.mark.parametrize("grace", ["-1", "604801", "soon"])
def test_rotate_refuses_a_bad_grace(cast, grace) -> None:
    api_key, _ = _key(cast.acme)
    alice = cast.client(cast.alice)
    url = f"{KEYS}{api_key.pk}/rotate/"
    assert alice.post(url, {"grace_seconds": grace}).status_code == 400
    fragment = alice.post(url, {"grace_seconds": grace}, **HTMX)
    assert fragment.status_code == 200
    assert 'data-testid="key-error"' in fragment.content.decode()
    assert not ApiKey.objects.filter(rotated_from=api_key).exists()


def test_a_revoked_key_cannot_be_rotated(cast) -> None:
    api_key, _ = _key(cast.acme)
    api_key_revoke(context=CTX, api_key=api_key)
    response = cast.client(cast.alice).post(f"{KEYS}{api_key.pk}/rotate/")
    assert response.status_code == 400
    assert "Only an active key can be rotated." in response.content.decode()


def test_revoke_then_the_gateway_refuses_the_key(cast, client) -> None:
    api_key, plaintext = _key(cast.acme)
    alice = cast.client(cast.alice)
    row = alice.post(f"{KEYS}{api_key.pk}/revoke/", **HTMX)
    assert row.status_code == 200
    assert row.content.decode().lstrip().startswith(f'<tr id="key-{api_key.pk}"')
    assert ">revoked<" in row.content.decode()
    assert _gateway(client, plaintext) == 401
    again = alice.post(f"{KEYS}{api_key.pk}/revoke/")  # no htmx: back to the list
    assert again.status_code == 302
    assert again["Location"] == KEYS


def test_writes_are_post_only(cast) -> None:
    api_key, _ = _key(cast.acme)
    alice = cast.client(cast.alice)
    assert alice.get(f"{KEYS}{api_key.pk}/revoke/").status_code == 405
    assert alice.get(f"{KEYS}{api_key.pk}/rotate/").status_code == 405


# --- roles and tenants -----------------------------------------------------------------------


def test_a_viewer_sees_the_list_but_may_not_write(cast) -> None:
    api_key, _ = _key(cast.acme, "shared")
    bob = cast.client(cast.bob)  # viewer
    page = bob.get(KEYS)
    assert page.status_code == 200
    body = page.content.decode()
    assert "shared" in body
    assert 'id="key-form"' not in body
    assert "/revoke/" not in body
    assert "/rotate/" not in body
    assert bob.post(KEYS, {"name": "mine"}).status_code == 403
    assert bob.post(f"{KEYS}{api_key.pk}/revoke/").status_code == 403
    assert bob.post(f"{KEYS}{api_key.pk}/rotate/").status_code == 403
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    assert ApiKey.objects.filter(tenant=cast.acme).count() == 1


def test_a_developer_may_create_keys(cast) -> None:
    cast.set_bob_role(Role.DEVELOPER)
    page = cast.client(cast.bob).get(KEYS).content.decode()
    assert 'id="key-form"' in page
    assert cast.client(cast.bob).post(KEYS, {"name": "dev"}, **HTMX).status_code == 201


def test_another_tenants_keys_are_404(cast, client) -> None:
    theirs, plaintext = _key(cast.globex, "globex app")
    alice = cast.client(cast.alice)
    assert alice.get("/console/t/globex/keys/").status_code == 404
    assert alice.post(f"{KEYS}{theirs.pk}/revoke/").status_code == 404
    assert alice.post(f"{KEYS}{theirs.pk}/rotate/").status_code == 404
    assert alice.post("/console/t/globex/keys/", {"name": "x"}).status_code == 404
    assert cast.client(cast.charlie).get(KEYS).status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    snapshot_holder.invalidate()
    assert _gateway(client, plaintext) == 200
