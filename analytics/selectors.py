"""Reads of usage records."""

from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Cast

from analytics.models import Feedback, UsageRecord


def usage_records_for_request(
    request_id: str, *, tenant_id: int | None = None
) -> UsageRecord | None:
    """The record of one gateway call, or None while it is still in the stream (or unknown).

    Pass `tenant_id` whenever the caller acts for a tenant, so another tenant's call is unseen.
    """
    records = UsageRecord.objects.filter(request_id=request_id)
    if tenant_id is not None:
        records = records.filter(tenant_id=tenant_id)
    return records.first()


# Statuses that say nothing about a variant: refused before routing, or the caller left.
_NOT_COUNTED = ("blocked", "cancelled")
_FAILED = ("provider_error", "error")


class _PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate `percentile_cont(f) WITHIN GROUP (ORDER BY x)`."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, fraction: float) -> None:
        super().__init__(expression, fraction=float(fraction))


def _percentile(values: list[int], fraction: float) -> float:
    """Linear interpolation between closest ranks: percentile_cont's definition."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def experiment_variant_aggregates(experiment_id: int) -> dict[str, dict[str, Any]]:
    """Per variant of an experiment: counts, sums and sums of squares of latency, cost and
    feedback score, and latency p50 / p95 — what the statistics need, in one query.

    An error is a call on which the variant's upstream failed at least once: a failed call,
    one that needed a retry, or one that fell back to another model (retries and fallbacks
    hide failures from the caller, not from the experiment). Feedback counts only when it
    belongs to the call's own tenant.
    """
    records = UsageRecord.objects.filter(experiment_id=experiment_id).exclude(
        status__in=_NOT_COUNTED
    )
    score = Subquery(
        Feedback.objects.filter(
            tenant_id=OuterRef("tenant_id"), request_id=OuterRef("request_id")
        ).values("score")[:1],
        output_field=FloatField(),
    )
    failed = Q(status__in=_FAILED) | Q(fallback_count__gt=0) | Q(attempts__gt=1)
    latency = Cast("latency_ms", FloatField())
    cost = Cast("cost_usd", FloatField())
    aggregates: dict[str, Any] = {
        "requests": Count("id"),
        "errors": Count("id", filter=failed),
        "latency_sum": Sum(latency),
        "latency_sumsq": Sum(latency * latency),
        "cost_sum": Sum(cost),
        "cost_sumsq": Sum(cost * cost),
        "score_count": Count("score"),
        "score_sum": Sum("score"),
        "score_sumsq": Sum(F("score") * F("score")),
    }
    postgres = connection.vendor == "postgresql"
    if postgres:
        aggregates["latency_p50"] = _PercentileCont("latency_ms", 0.5)
        aggregates["latency_p95"] = _PercentileCont("latency_ms", 0.95)
    rows = records.annotate(score=score).values("variant").annotate(**aggregates)
    result: dict[str, dict[str, Any]] = {}
    for row in rows:
        variant = str(row["variant"])
        result[variant] = {name: (value or 0) for name, value in row.items() if name != "variant"}
        if not postgres:  # development database: percentiles in Python
            latencies = list(records.filter(variant=variant).values_list("latency_ms", flat=True))
            result[variant]["latency_p50"] = _percentile(latencies, 0.5)
            result[variant]["latency_p95"] = _percentile(latencies, 0.95)
    return result
