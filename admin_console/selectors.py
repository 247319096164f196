"""Reads the console pages need, built on the apps' selectors (no business logic here)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Q

from analytics.selectors import usage_summary
from budgets.models import Budget
from budgets.selectors import budget_status
from gateway.models import ModelDeployment
from tenants.models import Tenant


def _hour_ceiling(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def dashboard(tenant: Tenant, now: datetime | None = None) -> dict[str, Any]:
    """Today's and this month's numbers, top lists, daily spend, budgets, open breakers."""
    now = now or datetime.now(UTC)
    zone = ZoneInfo(tenant.time_zone)
    local = now.astimezone(zone)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    end = _hour_ceiling(now)

    def total(start: datetime) -> dict[str, Any]:
        _, rows = usage_summary(tenant=tenant, start=start, end=end, filters={}, group_by=[])
        row = rows[0]
        requests = row["requests"]
        row["error_rate"] = row["errors"] / requests if requests else 0.0
        row["cost"] = Decimal(row["cost_usd"])
        return row

    def top(dimension: str) -> list[dict[str, Any]]:
        _, rows = usage_summary(
            tenant=tenant, start=month_start, end=end, filters={}, group_by=[dimension]
        )
        rows.sort(key=lambda r: Decimal(r["cost_usd"]), reverse=True)
        return rows[:5]

    _, days = usage_summary(tenant=tenant, start=month_start, end=end, filters={}, group_by=["day"])
    peak = max((Decimal(d["cost_usd"]) for d in days), default=Decimal(0))
    spend_by_day = [
        {
            "day": d["day"][:10],
            "cost": Decimal(d["cost_usd"]),
            "height": int(Decimal(d["cost_usd"]) / peak * 100) if peak else 0,
        }
        for d in days
    ]
    budgets = [
        budget_status(b, now=now)
        for b in Budget.objects.filter(tenant=tenant, enabled=True).select_related("tenant")[:50]
    ]
    budgets.sort(key=lambda s: s["percent"], reverse=True)
    return {
        "today": total(day_start),
        "month": total(month_start),
        "top_models": top("model"),
        "top_keys": top("api_key"),
        "top_task_types": top("task_type"),
        "spend_by_day": spend_by_day,
        "budgets": budgets[:10],
        "open_breakers": open_breakers(tenant),
    }


def open_breakers(tenant: Tenant) -> list[dict[str, Any]]:
    from gateway.runtime.executor import breaker

    deployments = list(
        ModelDeployment.objects.filter(
            Q(tenant=tenant) | Q(tenant__isnull=True), enabled=True
        ).only("id", "name")[:500]
    )
    try:
        states = breaker.states_sync([d.pk for d in deployments])
    except Exception:  # Redis down: the dashboard still renders
        return []
    return [
        {"id": d.pk, "name": d.name, "state": str(states.get(d.pk, "closed"))}
        for d in deployments
        if str(states.get(d.pk, "closed")) != "closed"
    ]
