"""Budget alerts: threshold and forecast emails, each sent once per budget, period and level.

Evaluation finds every threshold the current spend has crossed and inserts one `BudgetAlert`
row for it; the unique constraint (budget, period start, kind, threshold) makes that
idempotent however many workers race or a task is redelivered. Sending takes one unsent row
at a time under `SELECT … FOR UPDATE SKIP LOCKED`, sends, stamps `sent_at` and commits: two
senders never take the same row, and a sender killed before its commit leaves the row unsent
for the next run. The one window left — killed after the SMTP server accepted the message and
before the commit — can repeat an email; the deterministic Message-ID lets mail systems drop
the duplicate.
"""

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from analytics.models import UsageRecord
from budgets.models import AlertKind, Budget, BudgetAlert
from budgets.selectors import budget_status, budget_target, scope_filter
from tenants.models import Membership
from tenants.roles import Role

logger = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 10


def _recipients(budget: Budget) -> list[str]:
    finance = Membership.objects.filter(tenant_id=budget.tenant_id, role=Role.FINANCE).exclude(
        user__email=""
    )
    emails = [*budget.notify_emails, *finance.values_list("user__email", flat=True)]
    return sorted({email.strip().lower() for email in emails if email})


def alerts_evaluate(now: datetime | None = None) -> int:
    """Create the alert rows that the current spend calls for; returns how many are new."""
    now = now or datetime.now(UTC)
    created = 0
    for budget in Budget.objects.filter(enabled=True).select_related("tenant"):
        status = budget_status(budget, now=now)
        if budget.amount_usd <= 0:
            continue
        spent = Decimal(status["spent_usd"])
        percent = spent / budget.amount_usd * 100
        start = datetime.fromisoformat(status["period_start"])
        levels = [(AlertKind.THRESHOLD, t) for t in sorted(budget.thresholds) if percent >= t]
        forecast = Decimal(status["forecast_usd"]) if status["forecast_usd"] else None
        if forecast is not None and forecast > budget.amount_usd and percent < 100:
            levels.append((AlertKind.FORECAST, 0))
        for kind, threshold in levels:
            created += _alert_create(budget, start, kind, threshold, spent, forecast)
    return created


def _alert_create(
    budget: Budget, start: datetime, kind: str, threshold: int, spent: Decimal,
    forecast: Decimal | None,
) -> int:  # fmt: skip
    if BudgetAlert.objects.filter(budget=budget, period_start=start, kind=kind,
                                  threshold=threshold).exists():  # fmt: skip
        return 0
    try:
        with transaction.atomic():
            BudgetAlert.objects.create(
                budget=budget, period_start=start, kind=kind, threshold=threshold,
                spent_usd=spent, limit_usd=budget.amount_usd, forecast_usd=forecast,
                recipients=_recipients(budget),
            )  # fmt: skip
    except IntegrityError:  # another worker created it first
        return 0
    return 1


def _top(budget: Budget, start: datetime, field: str) -> list[tuple[str, Decimal]]:
    rows = (
        UsageRecord.objects.filter(tenant_id=budget.tenant_id, created_at__gte=start)
        .filter(scope_filter(budget.scope, budget_target(budget)))
        .values(field)
        .annotate(cost=Sum("cost_usd"))
        .order_by("-cost")[:5]
    )
    return [(str(row[field] or "—"), row["cost"] or Decimal(0)) for row in rows]


def _message(alert: BudgetAlert) -> EmailMessage:
    budget = alert.budget
    tenant = budget.tenant
    if alert.kind == AlertKind.FORECAST:
        headline = (f"is forecast to reach ${alert.forecast_usd:.2f} this period, over its "
                    f"${alert.limit_usd:.2f} limit")  # fmt: skip
        subject = f"[Switchboard] {tenant.name}: budget '{budget.name}' forecast over limit"
    else:
        headline = f"has reached {alert.threshold}% of its ${alert.limit_usd:.2f} limit"
        subject = f"[Switchboard] {tenant.name}: budget '{budget.name}' at {alert.threshold}%"
    models = _top(budget, alert.period_start, "model")
    keys = _top(budget, alert.period_start, "api_key__name")
    lines = [
        f"Budget '{budget.name}' ({budget.get_scope_display()}, {budget.get_period_display()}) "
        f"of tenant {tenant.name} {headline}.",
        "",
        f"Spent: ${alert.spent_usd:.2f} of ${alert.limit_usd:.2f}",
        f"Period start: {alert.period_start:%Y-%m-%d %H:%M} UTC (tenant time zone "
        f"{tenant.time_zone})",
        f"Mode: {'hard — calls are blocked at 100%' if budget.hard else 'soft — alerts only'}",
        "",
        "Top models this period:",
        *(f"  {name}: ${cost:.2f}" for name, cost in models),
        "Top API keys this period:",
        *(f"  {name}: ${cost:.2f}" for name, cost in keys),
        "",
        f"Console: {settings.PUBLIC_BASE_URL}/console/budgets/{budget.pk}/",
    ]
    message = EmailMessage(subject=subject, body="\n".join(lines), to=alert.recipients)
    domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1] or "switchboard"
    message.extra_headers["Message-ID"] = (
        f"<budget-{budget.pk}-{alert.period_start:%Y%m%d%H%M}-{alert.kind}-{alert.threshold}"
        f"@{domain}>"
    )
    return message


def alerts_send(limit: int = 100) -> int:
    """Send unsent alerts, one row lock at a time; returns how many were sent."""
    sent = 0
    for _ in range(limit):
        with transaction.atomic():
            alert: Any = (
                BudgetAlert.objects.select_for_update(skip_locked=True)
                .select_related("budget__tenant")
                .filter(sent_at__isnull=True, attempts__lt=MAX_SEND_ATTEMPTS)
                .order_by("created_at", "id")
                .first()
            )
            if alert is None:
                return sent
            if not alert.recipients:
                alert.sent_at = timezone.now()  # nobody to tell: recorded, nothing to send
                alert.save(update_fields=["sent_at"])
                continue
            try:
                _message(alert).send(fail_silently=False)
            except Exception as exc:
                logger.warning("budget alert %s not sent: %s", alert.pk, type(exc).__name__)
                BudgetAlert.objects.filter(pk=alert.pk).update(attempts=alert.attempts + 1)
                return sent
            alert.sent_at = timezone.now()
            alert.attempts += 1
            alert.save(update_fields=["sent_at", "attempts"])
            sent += 1
    return sent
