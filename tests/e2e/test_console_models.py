"""The console's Models and Routing pages in a real browser: a deployment form whose service
errors appear in place, the name filter, disabling with a confirmation, a routing rule whose
invalid condition is named by its path, the explain panel, and who may see and change what."""

from decimal import Decimal
from typing import Any

import pytest

from gateway.models import ModelDeployment, RoutingRule
from gateway.services import deployment_create, routing_rule_create
from keyvault.models import SecretReference, VaultConnection
from tenants.audit import AuditContext
from tests.e2e.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)
CTX = AuditContext.system("test")


def _deployment(tenant: Any, name: str, fake_llm: Any, **fields: Any) -> ModelDeployment:
    return deployment_create(context=CTX, tenant=tenant, fields={
        "name": name, "provider": "openai", "litellm_model": f"openai/{name}",
        "api_base": f"{fake_llm.url}/v1", "input_price_per_mtok": Decimal(1),
        "output_price_per_mtok": Decimal(2), **fields})  # fmt: skip


def _reference(tenant: Any, name: str) -> SecretReference:
    connection = VaultConnection.objects.create(tenant=tenant, name=f"{name}-vault", backend="env")
    return SecretReference.objects.create(tenant=tenant, connection=connection, name=name,
                                          secret_name="OPENAI_API_KEY")  # fmt: skip


def _marker(page: Any) -> None:
    page.evaluate("window.__noReload = 42")


def _no_reload(page: Any) -> bool:
    return page.evaluate("window.__noReload") == 42


def _post_as_page_user(page: Any, url: str, form: dict[str, str]) -> Any:
    """A form post with the signed-in user's session and CSRF token, as a forged page would."""
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    return page.request.post(url, form=form, headers={"X-CSRFToken": token})


def test_deployment_form_errors_in_place_then_creates_filters_and_disables(
    users, live_server, page, fake_llm
) -> None:
    shared = _deployment(None, "shared-model", fake_llm)
    own_reference = _reference(users.acme, "acme-openai")
    _reference(users.globex, "globex-openai")
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/console/t/acme/models/")
    assert "Models" in page.inner_text("nav.tabs")
    global_row = page.locator(f"[data-testid=model-{shared.pk}]")
    assert "global" in global_row.inner_text()
    assert global_row.locator("[data-testid=toggle]").count() == 0  # read-only here
    options = page.locator("#id_secret_reference option").all_inner_texts()
    assert any("acme-openai" in o for o in options)
    assert not any("globex" in o for o in options)  # another tenant's secrets are not offered
    _marker(page)
    page.fill("#id_name", "m-ui")
    page.select_option("#id_provider", "openai_compatible")
    page.fill("#id_litellm_model", "openai/m-ui")
    page.fill("#id_api_base", "ftp://x")
    page.fill("#id_input_price_per_mtok", "0.5")
    page.fill("#id_output_price_per_mtok", "1.5")
    page.select_option("#id_secret_reference", str(own_reference.pk))
    page.fill("#id_fallbacks", "shared-model")
    page.click("#model-form button[type=submit]")
    error = page.wait_for_selector("p.error[data-field=api_base]")
    assert "valid URL" in error.inner_text()
    assert _no_reload(page)  # htmx swapped the form in place
    assert page.input_value("#id_name") == "m-ui"  # what was typed is kept
    assert not ModelDeployment.objects.filter(name="m-ui").exists()
    page.fill("#id_api_base", f"{fake_llm.url}/v1")
    page.click("#model-form button[type=submit]")
    page.wait_for_selector("[data-name=m-ui]")
    created = ModelDeployment.objects.get(tenant=users.acme, name="m-ui")
    assert created.secret_reference_id == own_reference.pk
    assert created.fallbacks == ["shared-model"]
    assert created.enabled
    row = page.locator(f"[data-testid=model-{created.pk}]")
    assert "closed" in row.locator("[data-testid=breaker]").inner_text()
    assert "0.5" in row.inner_text()

    _marker(page)
    page.fill("[data-testid=model-filter]", "zzz")
    page.wait_for_selector("text=No deployment name contains")
    page.fill("[data-testid=model-filter]", "m-u")
    page.wait_for_selector(f"[data-testid=model-{created.pk}]")
    assert page.locator(f"[data-testid=model-{shared.pk}]").count() == 0
    assert _no_reload(page)
    assert "q=m-u" in page.url

    page.once("dialog", lambda dialog: dialog.dismiss())  # first: cancel
    page.click(f"[data-testid=model-{created.pk}] [data-testid=toggle]")
    page.wait_for_timeout(300)
    created.refresh_from_db()
    assert created.enabled
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"[data-testid=model-{created.pk}] [data-testid=toggle]")
    page.wait_for_selector(f"[data-testid=model-{created.pk}] [data-testid=enabled]:text-is('no')")
    created.refresh_from_db()
    assert not created.enabled
    assert _no_reload(page)
    page.click(f"[data-testid=model-{created.pk}] [data-testid=toggle]")  # enable: no dialog
    page.wait_for_selector(f"[data-testid=model-{created.pk}] [data-testid=enabled]:text-is('yes')")
    created.refresh_from_db()
    assert created.enabled
    assert page.goto(f"{live_server.url}/console/t/acme/models/{shared.pk}/").status == 404


def test_deployment_edit_shows_service_errors_then_saves(users, live_server, page,
                                                         fake_llm) -> None:  # fmt: skip
    deployment = _deployment(users.acme, "editable", fake_llm)
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/console/t/acme/models/{deployment.pk}/")
    assert page.input_value("#id_name") == "editable"
    _marker(page)
    page.fill("#id_context_window", "10")
    page.click("#model-form button[type=submit]")
    assert "256" in page.wait_for_selector("p.error[data-field=context_window]").inner_text()
    assert _no_reload(page)
    page.fill("#id_context_window", "64000")
    page.click("#model-form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/console/t/acme/models/")
    deployment.refresh_from_db()
    assert deployment.context_window == 64000


def test_routing_rule_condition_errors_by_path_and_explain_shows_the_route(
    users, live_server, page, fake_llm
) -> None:
    _deployment(users.acme, "short", fake_llm, context_window=8000)
    _deployment(users.acme, "long", fake_llm, context_window=200_000, fallbacks=["short"])
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/console/t/acme/routing/")
    _marker(page)
    page.fill("#id_name", "long prompts")
    page.fill("#id_condition", '{"field": "prompt_tokens", "op": "between", "value": 1}')
    page.fill("#id_models", "long")
    page.click("#rule-form button[type=submit]")
    error = page.wait_for_selector("p.error[data-field=condition]")
    assert "condition.op" in error.inner_text()
    assert _no_reload(page)
    assert not RoutingRule.objects.exists()
    page.fill("#id_condition", '{"field": "prompt_tokens", "op": "gt", "value": 32000}')
    page.click("#rule-form button[type=submit]")
    page.wait_for_selector("[data-testid=rules] >> text=prompt_tokens > 32000")
    rule = RoutingRule.objects.get(tenant=users.acme)
    assert rule.action == {"models": ["long"], "strategy": "priority"}

    _marker(page)
    page.fill("#id_explain-model", "short")
    page.fill("#id_explain-prompt", "word " * 28_000)  # ~35,000 estimated prompt tokens
    page.fill("#id_explain-max_tokens", "100")
    page.click("#explain-form button[type=submit]")
    page.wait_for_selector("[data-testid=explain-order] li")
    assert "long prompts" in page.inner_text("[data-testid=explain-rule]")
    order = page.locator("[data-testid=explain-order] li").all_inner_texts()
    assert order[0].startswith("long")
    candidates = page.inner_text("[data-testid=explain-candidates]")
    assert "context window 8000 too small" in candidates  # the fallback was dropped, and why
    assert _no_reload(page)

    page.fill("#id_explain-prompt", "hello")
    page.click("#explain-form button[type=submit]")
    page.wait_for_selector("[data-testid=explain-rule]:has-text('No rule matched')")
    order = page.locator("[data-testid=explain-order] li").all_inner_texts()
    assert order[0].startswith("short")

    page.fill("#id_explain-model", "no-such-model")
    page.click("#explain-form button[type=submit]")
    assert "does not exist" in page.wait_for_selector("p.error[data-field=model]").inner_text()
    assert _no_reload(page)


def test_viewer_sees_the_lists_but_cannot_change_them(users, live_server, page,
                                                      fake_llm) -> None:  # fmt: skip
    deployment = _deployment(users.acme, "seen", fake_llm)
    routing_rule_create(context=CTX, tenant=users.acme, fields={
        "name": "always-seen", "condition": True, "action": {"models": ["seen"]}})  # fmt: skip
    login(page, live_server, "bob")  # a viewer in acme
    base = f"{live_server.url}/console/t/acme"
    page.goto(f"{base}/models/")
    tabs = page.inner_text("nav.tabs")
    assert "Models" in tabs
    assert "Routing" in tabs
    assert page.locator(f"[data-testid=model-{deployment.pk}]").count() == 1
    assert page.locator("#model-form").count() == 0
    assert page.locator("[data-testid=toggle]").count() == 0
    page.goto(f"{base}/routing/")
    assert "always-seen" in page.inner_text("[data-testid=rules]")
    assert page.locator("#rule-form").count() == 0
    response = _post_as_page_user(page, f"{base}/models/", {"name": "sneaky"})
    assert response.status == 403
    assert "may not change deployments" in response.text()
    response = _post_as_page_user(page, f"{base}/routing/", {"name": "sneaky"})
    assert response.status == 403
    response = _post_as_page_user(page, f"{base}/models/{deployment.pk}/enabled/",
                                  {"enabled": "false"})  # fmt: skip
    assert response.status == 403
    assert page.goto(f"{base}/models/{deployment.pk}/").status == 403
    deployment.refresh_from_db()
    assert deployment.enabled
    assert not ModelDeployment.objects.filter(name="sneaky").exists()
    assert not RoutingRule.objects.filter(name="sneaky").exists()


def test_another_tenant_sees_nothing(users, live_server, page, fake_llm) -> None:
    deployment = _deployment(users.acme, "acme-only", fake_llm)
    login(page, live_server, "charlie")  # owner of globex, nothing in acme
    for path in ("models/", "routing/", f"models/{deployment.pk}/"):
        assert page.goto(f"{live_server.url}/console/t/acme/{path}").status == 404
    response = _post_as_page_user(page, f"{live_server.url}/console/t/acme/models/",
                                  {"name": "x"})  # fmt: skip
    assert response.status == 404
    # Through their own tenant, acme's deployment is not there either.
    assert page.goto(f"{live_server.url}/console/t/globex/models/{deployment.pk}/").status == 404
    response = _post_as_page_user(
        page, f"{live_server.url}/console/t/globex/models/{deployment.pk}/enabled/",
        {"enabled": "false"},
    )  # fmt: skip
    assert response.status == 404
    page.goto(f"{live_server.url}/console/t/globex/models/")
    assert "acme-only" not in page.inner_text("main")
    deployment.refresh_from_db()
    assert deployment.enabled
