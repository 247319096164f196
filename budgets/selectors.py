"""Reads of budgets: spend from PostgreSQL (the authority) for a budget's period."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, Sum

from analytics.models import UsageRecord


def scope_filter(scope: str, target: str) -> Q:
    """The usage rows a budget of this scope covers, within its tenant."""
    if scope == "team":
        return Q(team_id=int(target))
    if scope == "api_key":
        return Q(api_key_id=int(target))
    if scope == "end_user":
        return Q(end_user=target)
    if scope == "deployment":
        return Q(deployment_id=int(target))
    return Q()


def spent_in_period(
    *, tenant_id: int, scope: str, target: str, start: datetime, end: datetime
) -> Decimal:
    total = (
        UsageRecord.objects.filter(tenant_id=tenant_id, created_at__gte=start, created_at__lt=end)
        .filter(scope_filter(scope, target))
        .aggregate(total=Sum("cost_usd"))["total"]
    )
    return total or Decimal(0)


def budget_status(budget: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """Spent (settled), reserved (calls in flight), remaining, percent and a linear forecast
    for the budget's current period. Redis has the live numbers; PostgreSQL answers when
    Redis has no counter (or is down)."""
    from budgets import ledger
    from budgets.periods import period_bounds
    from switchboard.redis_client import redis_sync

    now = now or datetime.now(UTC)
    start, end = period_bounds(budget.period, now, budget.tenant.time_zone,
                               created_at=budget.created_at)  # fmt: skip
    target = budget_target(budget)
    key = ledger.budget_key(budget.tenant_id, budget.pk, int(start.timestamp()))
    source = "redis"
    spent = reserved = None
    try:
        raw = redis_sync().hmget(key, ["spent", "reserved", "seeded"])
        if raw[2] is not None:
            spent = ledger.from_nanos(int(raw[0] or 0))
            reserved = ledger.from_nanos(max(int(raw[1] or 0), 0))
    except Exception:  # Redis down: PostgreSQL answers
        source = "postgresql"
    if spent is None:
        source = "postgresql"
        spent = spent_in_period(tenant_id=budget.tenant_id, scope=budget.scope, target=target,
                                start=start, end=end)  # fmt: skip
        reserved = Decimal(0)
    assert reserved is not None
    limit = budget.amount_usd
    forecast = forecast_spend(spent, start, end, now)
    return {
        "budget": budget.pk,
        "name": budget.name,
        "period": budget.period,
        "period_start": start.isoformat(),
        "period_end": None if budget.period == "none" else end.isoformat(),
        "limit_usd": f"{limit:.6f}",
        "spent_usd": f"{spent:.6f}",
        "reserved_usd": f"{reserved:.6f}",
        "remaining_usd": f"{max(limit - spent - reserved, Decimal(0)):.6f}",
        "percent": float(spent / limit * 100) if limit else (100.0 if spent else 0.0),
        "forecast_usd": f"{forecast:.6f}" if forecast is not None else None,
        "hard": budget.hard,
        "source": source,
    }


def budget_target(budget: Any) -> str:
    return {
        "team": str(budget.team_id or ""),
        "api_key": str(budget.api_key_id or ""),
        "end_user": budget.end_user,
        "deployment": str(budget.deployment_id or ""),
    }.get(budget.scope, "")


def forecast_spend(spent: Decimal, start: datetime, end: datetime, now: datetime) -> Decimal | None:
    """Linear projection of this period's spend to its end (None for open-ended budgets or
    the first hour, when a projection says nothing)."""
    if end.year >= 9999:
        return None
    elapsed = (now - start).total_seconds()
    total = (end - start).total_seconds()
    if elapsed < 3600 or total <= 0:
        return None
    return spent * Decimal(total) / Decimal(elapsed)
