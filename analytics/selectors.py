"""Reads of usage records."""

from datetime import datetime
from decimal import Decimal
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


# --- usage queries (the usage API) --------------------------------------------------------

USAGE_DIMENSIONS = {  # API name -> (record field, rollup field)
    "team": ("team_id", "team_id"),
    "api_key": ("api_key_id", "api_key_id"),
    "end_user": ("end_user", "end_user"),
    "model": ("model", "model"),
    "deployment": ("deployment_id", "deployment_id"),
    "provider": ("provider", "provider"),
    "task_type": ("task_type", "task_type"),
    "status": ("status", None),
}
TIME_GROUPS = ("hour", "day", "month")
_ERROR_STATUSES = ["provider_error", "error", "blocked"]


def usage_summary(
    *, tenant: Any, start: datetime, end: datetime, filters: dict[str, str],
    group_by: list[str],
) -> tuple[str, list[dict[str, Any]]]:  # fmt: skip
    """Usage totals of a tenant in [start, end), filtered and grouped; also says the source.

    Served from the hourly rollups when they can answer exactly (hour-aligned range, no
    status filter or grouping, no calendar grouping — calendar days are the tenant's, rollups
    are UTC), from the records otherwise. Both give the same numbers.
    """
    from zoneinfo import ZoneInfo

    from django.db.models.functions import TruncDay, TruncHour, TruncMonth

    from analytics.models import LATENCY_BUCKET_FIELDS, UsageRollup

    time_group = next((g for g in group_by if g in TIME_GROUPS), None)
    dims = [g for g in group_by if g not in TIME_GROUPS]
    aligned = all(t.minute == 0 and t.second == 0 and t.microsecond == 0 for t in (start, end))
    use_rollups = (aligned and time_group is None and "status" not in filters
                   and "status" not in dims)  # fmt: skip
    if use_rollups:
        rows: Any = UsageRollup.objects.filter(
            tenant=tenant, granularity="hour", bucket_start__gte=start, bucket_start__lt=end
        )
        field_of = {name: str(fields[1]) for name, fields in USAGE_DIMENSIONS.items()}
        sums: dict[str, Any] = {
            "requests": Sum("requests"), "errors": Sum("errors"),
            "prompt_tokens": Sum("prompt_tokens"), "completion_tokens": Sum("completion_tokens"),
            "cached_tokens": Sum("cached_tokens"), "cost_usd": Sum("cost_usd"),
            "latency_ms_sum": Sum("latency_ms_sum"),
            **{name: Sum(name) for name in LATENCY_BUCKET_FIELDS},
        }  # fmt: skip
    else:
        rows = UsageRecord.objects.filter(tenant=tenant, created_at__gte=start, created_at__lt=end)
        field_of = {name: str(fields[0]) for name, fields in USAGE_DIMENSIONS.items()}
        sums = {
            "requests": Count("id"),
            "errors": Count("id", filter=Q(status__in=_ERROR_STATUSES)),
            "prompt_tokens": Sum("prompt_tokens"), "completion_tokens": Sum("completion_tokens"),
            "cached_tokens": Sum("cached_tokens"), "cost_usd": Sum("cost_usd"),
            "latency_ms_sum": Sum("latency_ms"),
        }  # fmt: skip
    for name, value in filters.items():
        field = field_of[name]
        if field.endswith("_id"):
            value = int(value)  # type: ignore[assignment]
        rows = rows.filter(**{field: value})
    values = [field_of[d] for d in dims]
    if time_group:
        trunc = {"hour": TruncHour, "day": TruncDay, "month": TruncMonth}[time_group]
        rows = rows.annotate(period=trunc("created_at", tzinfo=ZoneInfo(tenant.time_zone)))
        values.append("period")
    grouped = rows.values(*values).annotate(**sums).order_by(*values) if values else None
    results = list(grouped) if grouped is not None else [rows.aggregate(**sums)]
    return ("rollups" if use_rollups else "records"), [
        _usage_row(row, dims, field_of, time_group) for row in results
    ]


def _usage_row(
    row: dict[str, Any], dims: list[str], field_of: dict[str, str], time_group: str | None
) -> dict[str, Any]:
    from analytics.models import LATENCY_BUCKET_FIELDS
    from analytics.rollups import percentile_from_histogram

    requests = int(row.get("requests") or 0)
    out: dict[str, Any] = {name: row.get(field_of[name]) for name in dims}
    if time_group:
        out[time_group] = row["period"].isoformat() if row.get("period") else None
    out.update({
        "requests": requests,
        "errors": int(row.get("errors") or 0),
        "prompt_tokens": int(row.get("prompt_tokens") or 0),
        "completion_tokens": int(row.get("completion_tokens") or 0),
        "cached_tokens": int(row.get("cached_tokens") or 0),
        "cost_usd": f"{(row.get('cost_usd') or Decimal(0)):.10f}",
        "latency_ms_mean": (int(row.get("latency_ms_sum") or 0) / requests) if requests else None,
    })  # fmt: skip
    if LATENCY_BUCKET_FIELDS[0] in row:
        counts = [int(row[name] or 0) for name in LATENCY_BUCKET_FIELDS]
        out["latency_ms_p95"] = percentile_from_histogram(counts, 0.95)
    return out
