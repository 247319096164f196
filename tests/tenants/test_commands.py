"""Bootstrap commands for automation: tenant, admin, key (printed once, alone with --quiet)."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tenants.models import ApiKey, AuditEvent, Membership, Tenant


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_bootstrap_a_tenant_an_admin_and_a_key(client, tmp_path, monkeypatch) -> None:
    _run("create_tenant", "initech", "--name", "Initech", "--time-zone", "America/New_York")
    password_file = tmp_path / "pw"
    password_file.write_text("a-long-and-unusual-passphrase\n")
    _run("create_admin", "peter", "--password-file", str(password_file), "--tenant", "initech")
    assert Membership.objects.get(user__username="peter").role == "owner"
    assert client.login(username="peter", password="a-long-and-unusual-passphrase")

    key = _run("create_api_key", "initech", "--name", "ci", "--quiet").strip()
    assert key.startswith("sbk_")
    assert "\n" not in key
    assert client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    assert ApiKey.objects.get(name="ci").tenant.slug == "initech"
    assert AuditEvent.objects.filter(
        action="api_key.create", actor_label__contains="create_api_key"
    )

    loud = _run("create_api_key", "initech", "--name", "second")
    assert "shown once" in loud


@pytest.mark.django_db
def test_commands_are_idempotent_when_asked_and_clear_when_not() -> None:
    _run("create_tenant", "initech")
    assert "already exists" in _run("create_tenant", "initech", "--exist-ok")
    with pytest.raises(CommandError, match="already exists"):
        _run("create_tenant", "initech")
    with pytest.raises(CommandError, match="time zone"):
        _run("create_tenant", "other", "--time-zone", "Nowhere/Land")
    with pytest.raises(CommandError, match="No tenant"):
        _run("create_api_key", "nope")
    assert Tenant.objects.count() == 1


@pytest.mark.django_db
def test_seed_demo_rotates_the_demo_key_and_password(client) -> None:
    import json

    first = json.loads(_run("seed_demo", "--json"))
    second = json.loads(_run("seed_demo", "--json"))
    assert first["api_key"] != second["api_key"]
    ok = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {second['api_key']}")
    old = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {first['api_key']}")
    assert (ok.status_code, old.status_code) == (200, 401)
    assert client.login(username="admin", password=second["password"])
