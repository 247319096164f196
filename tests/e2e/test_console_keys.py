"""The API key pages in a real browser: inline validation, the new key shown once and working
at the gateway, rotation and revocation behind a confirmation, htmx pages and filter, and
what a viewer and an outsider get."""

from typing import Any

import pytest

from tenants.audit import AuditContext
from tenants.models import ApiKey
from tenants.services import api_key_create, api_key_revoke
from tests.e2e.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)
CTX = AuditContext.system("test")


def _marker(page: Any) -> None:
    page.evaluate("window.__noReload = 42")


def _no_reload(page: Any) -> bool:
    return page.evaluate("window.__noReload") == 42


def _gateway(page: Any, live_server: Any, plaintext: str) -> int:
    response = page.request.get(
        f"{live_server.url}/v1/models", headers={"Authorization": f"Bearer {plaintext}"}
    )
    return int(response.status)


def _status(page: Any, api_key: ApiKey) -> str:
    return str(page.inner_text(f"[data-testid=key-{api_key.pk}] [data-testid=key-status]"))


def test_create_validates_inline_then_shows_the_key_once(users, live_server, page) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/console/t/acme/")
    page.click("nav.tabs >> text=API keys")
    page.wait_for_selector("#key-form")
    _marker(page)
    page.fill("#id_name", "backend")
    page.fill("#id_rpm_limit", "0")
    page.click("#key-form button[type=submit]")
    error = page.wait_for_selector("p.error[data-field=rpm_limit]")
    assert "greater than or equal to 1" in error.inner_text()
    assert _no_reload(page)  # htmx swapped the form in place
    page.fill("#id_rpm_limit", "60")
    page.fill("#id_expires_at", "2001-01-01T00:00")  # the service refuses a past expiry
    page.click("#key-form button[type=submit]")
    error = page.wait_for_selector("p.error[data-field=expires_at]")
    assert "must be in the future" in error.inner_text()
    assert page.input_value("#id_rpm_limit") == "60"  # what was typed survives
    assert _no_reload(page)

    page.fill("#id_expires_at", "")
    page.fill("#id_allowed_models", "m-a, m-b")
    page.click("#key-form button[type=submit]")
    plaintext = page.wait_for_selector("[data-testid=new-key-value]").inner_text().strip()
    assert plaintext.startswith("sbk_")
    assert "will not be shown again" in page.inner_text("[data-testid=new-key]")
    assert _no_reload(page)
    assert page.input_value("#id_name") == ""  # a fresh form for the next key
    api_key = ApiKey.objects.get(tenant=users.acme, name="backend")
    assert api_key.rpm_limit == 60
    assert api_key.allowed_models == ["m-a", "m-b"]
    page.wait_for_selector(f"[data-testid=key-{api_key.pk}]")  # the list reloaded itself
    assert api_key.prefix in page.inner_text("#key-rows")
    assert plaintext not in page.inner_text("#key-rows")
    assert plaintext not in page.url

    page.click("[data-copy-key]")
    page.wait_for_selector("text=Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == plaintext

    assert _gateway(page, live_server, plaintext) == 200
    page.reload()  # shown once: gone from the page now
    page.wait_for_selector(f"[data-testid=key-{api_key.pk}]")
    assert plaintext not in page.content()
    assert page.locator("[data-testid=new-key]").count() == 0


def test_revoke_asks_first_then_the_key_stops_working(users, live_server, page) -> None:
    api_key, plaintext = api_key_create(context=CTX, tenant=users.acme, name="to revoke")
    assert _gateway(page, live_server, plaintext) == 200
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/console/t/acme/keys/")
    _marker(page)
    row = f"[data-testid=key-{api_key.pk}]"
    page.once("dialog", lambda dialog: dialog.dismiss())  # first: cancel
    page.click(f"{row} [data-testid=revoke]")
    page.wait_for_timeout(300)
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    assert _status(page, api_key) == "active"

    messages: list[str] = []

    def accept(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click(f"{row} [data-testid=revoke]")
    page.wait_for_function(
        f"document.querySelector('{row} [data-testid=key-status]').innerText === 'revoked'"
    )
    assert "to revoke" in messages[0]
    assert _no_reload(page)
    assert page.locator(f"{row} [data-testid=revoke]").count() == 0
    assert _gateway(page, live_server, plaintext) == 401


def test_rotate_shows_the_new_key_once(users, live_server, page) -> None:
    old, old_plaintext = api_key_create(context=CTX, tenant=users.acme, name="svc", tpm_limit=500)
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/console/t/acme/keys/")
    _marker(page)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"[data-testid=key-{old.pk}] [data-testid=rotate]")  # grace 0: the old one stops
    plaintext = page.wait_for_selector("[data-testid=new-key-value]").inner_text().strip()
    assert plaintext.startswith("sbk_")
    assert plaintext != old_plaintext
    assert "rotated" in page.inner_text("[data-testid=new-key]")
    new = ApiKey.objects.get(rotated_from=old)
    assert new.tpm_limit == 500
    page.wait_for_selector(f"[data-testid=key-{new.pk}]")  # the list reloaded itself
    assert _status(page, old) == "revoked"
    assert _no_reload(page)
    assert _gateway(page, live_server, plaintext) == 200
    assert _gateway(page, live_server, old_plaintext) == 401


def test_pages_and_status_filter_update_in_place(users, live_server, page) -> None:
    keys = [api_key_create(context=CTX, tenant=users.acme, name=f"k{i:02}")[0] for i in range(27)]
    api_key_revoke(context=CTX, api_key=keys[3])
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/console/t/acme/keys/")
    _marker(page)
    rows = page.locator("#key-rows tbody tr")
    assert rows.count() == 25
    page.click("[data-testid=older]")
    page.wait_for_selector("text=Page 2 of 2")
    assert rows.count() == 2
    assert _no_reload(page)
    page.select_option("select[name=status]", "revoked")
    page.wait_for_selector("text=Page 1 of 1 · 1 key")
    assert rows.count() == 1
    assert "k03" in page.inner_text("#key-rows")
    assert "status=revoked" in page.url  # the filter is in the address (shareable)
    assert _no_reload(page)


def test_a_viewer_sees_the_keys_but_cannot_change_them(users, live_server, page) -> None:
    api_key, plaintext = api_key_create(context=CTX, tenant=users.acme, name="shared")
    login(page, live_server, "bob")  # a viewer in acme
    page.goto(f"{live_server.url}/console/t/acme/")
    page.click("nav.tabs >> text=API keys")
    page.wait_for_selector(f"[data-testid=key-{api_key.pk}]")
    assert "shared" in page.inner_text("#key-rows")
    assert page.locator("#key-form").count() == 0
    assert page.locator("[data-testid=revoke]").count() == 0
    assert page.locator("[data-testid=rotate]").count() == 0

    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    keys = f"{live_server.url}/console/t/acme/keys/"
    writes = [
        (keys, {"name": "mine"}),
        (f"{keys}{api_key.pk}/revoke/", {}),
        (f"{keys}{api_key.pk}/rotate/", {}),
    ]
    for url, form in writes:
        response = page.request.post(url, form=form, headers={"X-CSRFToken": csrf})
        assert response.status == 403, url
    assert ApiKey.objects.filter(tenant=users.acme).count() == 1
    assert _gateway(page, live_server, plaintext) == 200


def test_another_tenants_keys_are_404(users, live_server, page) -> None:
    theirs, plaintext = api_key_create(context=CTX, tenant=users.globex, name="globex app")
    login(page, live_server, "alice")
    assert page.goto(f"{live_server.url}/console/t/globex/keys/").status == 404
    page.goto(f"{live_server.url}/console/t/acme/keys/")
    assert "globex app" not in page.inner_text("main")
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"{live_server.url}/console/t/acme/keys/{theirs.pk}/revoke/", headers={"X-CSRFToken": csrf}
    )
    assert response.status == 404
    assert _gateway(page, live_server, plaintext) == 200
