"""Insights for finance: spend forecast and cost-optimisation hints (reads only)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Max, Sum

from analytics.models import UsageRecord, UsageRollup
from budgets.periods import period_bounds
from budgets.selectors import budget_status, forecast_spend

MIN_REQUESTS_FOR_HINT = 50
ERROR_RATE_HINT = 0.05
FALLBACK_RATE_HINT = 0.10


def tenant_insights(tenant: Any, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    start, end = period_bounds("monthly", now, tenant.time_zone)
    records = UsageRecord.objects.filter(tenant=tenant, created_at__gte=start, created_at__lt=end)
    spent = records.aggregate(total=Sum("cost_usd"))["total"]  # fmt: skip
    spent = spent or Decimal(0)
    forecast = forecast_spend(spent, start, end, now)
    return {
        "month": {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "spent_usd": f"{spent:.6f}",
            "forecast_usd": f"{forecast:.6f}" if forecast is not None else None,
        },
        "budgets": [budget_status(b, now=now) for b in tenant.budgets.filter(enabled=True)[:100]],
        "hints": [
            *_deployment_hints(tenant, now),
            *_fallback_hints(tenant, now),
            *_experiment_hints(tenant),
        ],
    }


def _deployment_hints(tenant: Any, now: datetime) -> list[dict[str, Any]]:
    rows = (
        UsageRollup.objects.filter(
            tenant=tenant, granularity="hour", bucket_start__gte=now - timedelta(days=7)
        )
        .exclude(deployment_id=0)
        .values("deployment_id")
        .annotate(requests=Sum("requests"), errors=Sum("errors"), model=Max("model"))
    )
    hints = []
    for row in rows:
        if (
            row["requests"] >= MIN_REQUESTS_FOR_HINT
            and row["errors"] / row["requests"] >= ERROR_RATE_HINT
        ):
            hints.append({
                "kind": "high_error_rate",
                "deployment": row["deployment_id"], "model": row["model"],
                "message": (f"Deployment {row['deployment_id']} ({row['model']}) failed "
                            f"{row['errors'] / row['requests']:.0%} of {row['requests']} calls in "
                            "the last 7 days: check its provider or move traffic away."),
            })  # fmt: skip
    return hints


def _fallback_hints(tenant: Any, now: datetime) -> list[dict[str, Any]]:
    from django.db.models import Count, Q

    rows = (
        UsageRecord.objects.filter(tenant=tenant, created_at__gte=now - timedelta(days=7))
        .values("model")
        .annotate(requests=Count("id"), fallbacks=Count("id", filter=Q(fallback_count__gt=0)))
    )
    return [
        {"kind": "high_fallback_rate", "model": row["model"],
         "message": (f"{row['fallbacks'] / row['requests']:.0%} of calls to {row['model']} "
                     "needed a fallback in the last 7 days: its first choice is unreliable.")}
        for row in rows
        if row["requests"] >= MIN_REQUESTS_FOR_HINT
        and row["fallbacks"] / row["requests"] >= FALLBACK_RATE_HINT
    ]  # fmt: skip


def _experiment_hints(tenant: Any) -> list[dict[str, Any]]:
    """A cheaper variant whose quality score is not significantly worse: a saving."""
    from gateway.experiments.selectors import experiment_results
    from gateway.models import Experiment

    hints = []
    for experiment in Experiment.objects.filter(tenant=tenant).exclude(status="draft")[:20]:
        results = experiment_results(experiment)
        for comparison in results["comparisons"]:
            if comparison["metric"] != "cost_mean" or not comparison["significant"]:
                continue
            cheaper = comparison["better"]
            score = next((c for c in results["comparisons"] if c["metric"] == "score_mean"
                          and c["variant"] == comparison["variant"]), None)  # fmt: skip
            if score is not None and score["significant"] and score["better"] != cheaper:
                continue  # the cheaper one is measurably worse
            if score is None:
                continue  # no quality data: no claim
            hints.append({
                "kind": "cheaper_variant_matches_quality",
                "experiment": experiment.name, "variant": cheaper,
                "message": (f"In experiment '{experiment.name}', variant '{cheaper}' costs "
                            "significantly less and its feedback score is not significantly "
                            "worse: consider promoting it."),
            })  # fmt: skip
    return hints
