"""Reads of budgets: spend from PostgreSQL (the authority) for a budget's period."""

from datetime import datetime
from decimal import Decimal

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
