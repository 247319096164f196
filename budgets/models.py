"""Budgets (spend limits per tenant, team, key, end user or deployment) and their alerts."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from tenants.models import ApiKey, Team, Tenant


class BudgetScope(models.TextChoices):
    TENANT = "tenant", "Whole tenant"
    TEAM = "team", "Team"
    API_KEY = "api_key", "API key"
    END_USER = "end_user", "End user"
    DEPLOYMENT = "deployment", "Model deployment"


class BudgetPeriod(models.TextChoices):
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly (from Monday)"
    MONTHLY = "monthly", "Monthly"
    QUARTERLY = "quarterly", "Quarterly"
    NONE = "none", "No reset (since the budget was created)"


DEFAULT_THRESHOLDS = [50, 80, 95, 100]


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


def validate_thresholds(value: object) -> None:
    if not isinstance(value, list) or not 1 <= len(value) <= 10:
        raise ValidationError("Give 1 to 10 thresholds in percent, e.g. [50, 80, 95, 100].")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= 1000:
            raise ValidationError("Each threshold is a whole percent from 1 to 1000.")
    if len(set(value)) != len(value):
        raise ValidationError("Thresholds must be distinct.")


def validate_emails(value: object) -> None:
    from django.core.validators import validate_email

    if not isinstance(value, list) or len(value) > 20:
        raise ValidationError("Give at most 20 email addresses.")
    for item in value:
        if not isinstance(item, str):
            raise ValidationError("Each recipient is an email address.")
        validate_email(item)


class Budget(models.Model):
    """A spend limit in USD over a calendar period in the tenant's time zone."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="budgets")
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=20, choices=BudgetScope.choices)
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    end_user = models.CharField(max_length=256, blank=True)
    deployment = models.ForeignKey(
        "gateway.ModelDeployment", null=True, blank=True, on_delete=models.CASCADE,
        related_name="budgets",
    )  # fmt: skip
    amount_usd = models.DecimalField(
        max_digits=20, decimal_places=10, validators=[MinValueValidator(Decimal(0))]
    )
    period = models.CharField(
        max_length=10, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTHLY
    )
    thresholds = models.JSONField(default=default_thresholds, validators=[validate_thresholds])
    hard = models.BooleanField(default=True, help_text="Block calls at 100 % (else alert only).")
    notify_emails = models.JSONField(default=list, blank=True, validators=[validate_emails])
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="budget_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope}, {self.period})"

    def clean(self) -> None:
        targets = {
            BudgetScope.TEAM: "team",
            BudgetScope.API_KEY: "api_key",
            BudgetScope.END_USER: "end_user",
            BudgetScope.DEPLOYMENT: "deployment",
        }
        wanted = targets.get(BudgetScope(self.scope)) if self.scope in BudgetScope.values else None
        for scope, name in targets.items():
            value = getattr(self, f"{name}_id" if name != "end_user" else name)
            if scope == self.scope and not value:
                raise ValidationError({name: f"A {self.scope} budget names its {name}."})
            if name != wanted and value:
                raise ValidationError({name: f"A {self.scope} budget has no {name}."})
        for name in ("team", "api_key"):
            owner = getattr(self, name).tenant_id if getattr(self, f"{name}_id") else None
            if owner is not None and owner != self.tenant_id:
                raise ValidationError({name: f"No such {name.replace('_', ' ')}."})
        deployment = self.deployment if self.deployment_id else None
        if deployment is not None and deployment.tenant_id not in (None, self.tenant_id):
            raise ValidationError({"deployment": "No such deployment."})


class AlertKind(models.TextChoices):
    THRESHOLD = "threshold", "Threshold crossed"
    FORECAST = "forecast", "Forecast exceeds the budget"


class BudgetAlert(models.Model):
    """One alert per (budget, period, kind, threshold): the row is the idempotency key."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period_start = models.DateTimeField()
    kind = models.CharField(max_length=10, choices=AlertKind.choices)
    threshold = models.PositiveIntegerField(default=0)  # percent; 0 for forecast alerts
    spent_usd = models.DecimalField(max_digits=20, decimal_places=10)
    limit_usd = models.DecimalField(max_digits=20, decimal_places=10)
    forecast_usd = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    recipients = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period_start", "kind", "threshold"], name="budget_alert_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.budget_id} {self.kind} {self.threshold}% @ {self.period_start:%Y-%m-%d}"
