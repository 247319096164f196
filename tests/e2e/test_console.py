"""The admin console in a real browser: dashboard numbers, budgets with inline validation,
experiment promotion with a confirmation, the usage explorer updating in place (htmx), the
audit log's diffs, and role-aware navigation."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from analytics.models import UsageRecord
from analytics.rollups import records_store_with_rollups
from budgets.models import Budget
from gateway.experiments.services import experiment_create, experiment_start
from gateway.services import deployment_create
from tenants.audit import AuditContext
from tests.e2e.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)
CTX = AuditContext.system("test")


def _usage(tenant: Any, n: int) -> Decimal:
    now = datetime.now(UTC)
    records = [
        UsageRecord(request_id=f"e2e-{tenant.pk}-{i}", created_at=now, tenant=tenant,
                    model=["alpha", "beta"][i % 2], provider="openai",
                    cost_usd=Decimal("0.0125") * (i % 3 + 1), latency_ms=120, status="success",
                    http_status=200, prompt_tokens=10, completion_tokens=5)
        for i in range(n)
    ]  # fmt: skip
    records_store_with_rollups(records)
    return sum((r.cost_usd for r in records), Decimal(0))


def _marker(page: Any) -> None:
    page.evaluate("window.__noReload = 42")


def _no_reload(page: Any) -> bool:
    return page.evaluate("window.__noReload") == 42


def test_dashboard_shows_this_months_numbers(users, live_server, page) -> None:
    total = _usage(users.acme, 12)
    login(page, live_server, "alice")
    page.click("text=acme")
    page.wait_for_selector("[data-testid=spend-month]")
    assert page.inner_text("[data-testid=spend-month]") == f"${total:.2f}"
    assert page.inner_text("[data-testid=requests-month]") == "12 requests"
    assert page.locator(".chart .bar").count() >= 1
    assert "alpha" in page.inner_text("main")


def test_budget_form_validates_inline_then_creates(users, live_server, page) -> None:
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/console/t/acme/budgets/")
    _marker(page)
    page.fill("#id_name", "Team cap")
    page.select_option("#id_scope", "team")  # a team budget without a team
    page.fill("#id_amount_usd", "25")
    page.click("#budget-form button[type=submit]")
    error = page.wait_for_selector("p.error[data-field=team]")
    assert "names its team" in error.inner_text()
    assert _no_reload(page)  # htmx swapped the form in place
    page.select_option("#id_scope", "tenant")
    page.fill("#id_amount_usd", "-3")
    page.click("#budget-form button[type=submit]")
    assert "greater than or equal to 0" in page.wait_for_selector(
        "p.error[data-field=amount_usd]").inner_text()  # fmt: skip
    page.fill("#id_amount_usd", "25")
    page.click("#budget-form button[type=submit]")
    page.wait_for_selector("text=Team cap")
    budget = Budget.objects.get(tenant=users.acme, name="Team cap")
    assert page.locator(f"[data-testid=budget-{budget.pk}] .progress").count() == 1


def test_experiment_results_and_promotion_with_confirmation(users, live_server, page,
                                                            fake_llm) -> None:  # fmt: skip
    for name in ("m-a", "m-b"):
        deployment_create(context=CTX, tenant=users.acme, fields={
            "name": name, "provider": "openai", "litellm_model": f"openai/{name}",
            "api_base": f"{fake_llm.url}/v1", "input_price_per_mtok": Decimal(1),
            "output_price_per_mtok": Decimal(1)})  # fmt: skip
    experiment = experiment_create(context=CTX, tenant=users.acme, fields={
        "name": "speed", "task_type": "chat"}, variants=[
        {"key": "a", "model": "m-a"}, {"key": "b", "model": "m-b"}])  # fmt: skip
    experiment_start(context=CTX, experiment=experiment)
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/console/t/acme/experiments/")
    page.click("text=speed")
    assert "Not yet significant" in page.inner_text("[data-testid=verdict]")
    assert page.locator("[data-testid=variant-a]").count() == 1
    page.once("dialog", lambda dialog: dialog.dismiss())  # first: cancel
    page.click("[data-testid=promote-b]")
    page.wait_for_timeout(300)
    experiment.refresh_from_db()
    assert experiment.status == "running"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("[data-testid=promote-b]")
    page.wait_for_selector("text=Promoted:")
    experiment.refresh_from_db()
    assert experiment.status == "completed"
    assert experiment.winner == "b"


def test_usage_explorer_updates_in_place_and_downloads(users, live_server, page) -> None:
    total = _usage(users.acme, 10)
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/console/t/acme/usage/")
    _marker(page)
    rows = page.locator("[data-testid=usage-rows] tbody tr")
    assert rows.count() == 2  # grouped by model: alpha, beta
    page.select_option("select[name=group_by]", "provider")
    page.wait_for_function("document.querySelectorAll('[data-testid=usage-rows] tbody tr')"
                           ".length === 1")  # fmt: skip
    assert _no_reload(page)
    assert "group_by=provider" in page.url  # the filter is in the address (shareable)
    href = page.get_attribute("[data-testid=download-csv]", "href")
    response = page.request.get(f"{live_server.url}{href}")
    assert response.status == 200
    last = response.text().strip().splitlines()[-1].split(",")
    assert last[0] == "total"
    assert Decimal(last[-1]) == total


def test_audit_log_shows_diffs_and_filters(users, live_server, page) -> None:
    from budgets.services import budget_create

    budget_create(context=CTX, tenant=users.acme, fields={
        "name": "audited", "scope": "tenant", "amount_usd": Decimal(7)})  # fmt: skip
    login(page, live_server, "alice")
    page.goto(f"{live_server.url}/console/t/acme/audit/")
    assert "budget.create" in page.inner_text("#audit-rows")
    assert "audited" in page.inner_text("#audit-rows .after")
    _marker(page)
    page.fill("input[name=action]", "nothing.like.this")
    page.wait_for_selector("text=Nothing recorded.")
    assert _no_reload(page)


def test_navigation_follows_the_role(users, live_server, page) -> None:
    login(page, live_server, "bob")  # a viewer in acme
    page.goto(f"{live_server.url}/console/t/acme/")
    tabs = page.inner_text("nav.tabs")
    assert "Budgets" in tabs
    assert "Usage" not in tabs
    assert "Audit log" not in tabs
    response = page.goto(f"{live_server.url}/console/t/acme/usage/")
    assert response.status == 403
    assert page.goto(f"{live_server.url}/console/t/globex/").status == 404
