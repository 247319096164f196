"""Reads of A/B experiments: per-variant results with intervals, tests and a verdict."""

import math
from typing import Any

from analytics.selectors import experiment_variant_aggregates
from gateway.experiments.stats import (
    METRICS,
    VariantSummary,
    compare,
    mean_interval,
    promotion_winner,
    summary_from_aggregates,
    wilson_interval,
)
from gateway.models import Experiment, ExperimentStatus


def _finite(value: float) -> float | None:
    """JSON has no infinity: an interval bound we know nothing about is null."""
    return value if math.isfinite(value) else None


def _interval(low: float, high: float) -> list[float | None]:
    return [_finite(low), _finite(high)]


def _variant_row(
    summary: VariantSummary, raw: dict[str, Any], model: str, weight: int, confidence: float
) -> dict[str, Any]:
    n = summary.requests
    errors = wilson_interval(summary.errors, n, confidence)
    latency = mean_interval(summary.latency_mean, summary.latency_var, n, confidence)
    cost = mean_interval(summary.cost_mean, summary.cost_var, n, confidence)
    score = mean_interval(summary.score_mean, summary.score_var, summary.score_count, confidence)
    return {
        "key": summary.key,
        "model": model,
        "weight": weight,
        "requests": n,
        "errors": summary.errors,
        "error_rate": summary.errors / n if n else None,
        "error_rate_ci": _interval(errors.low, errors.high),
        "latency_ms": {
            "mean": summary.latency_mean if n else None,
            "ci": _interval(latency.low, latency.high),
            "p50": float(raw.get("latency_p50") or 0) if n else None,
            "p95": float(raw.get("latency_p95") or 0) if n else None,
        },
        "cost_usd": {
            "mean": summary.cost_mean if n else None,
            "ci": _interval(cost.low, cost.high),
        },
        "score": {
            "count": summary.score_count,
            "mean": summary.score_mean if summary.score_count else None,
            "ci": _interval(score.low, score.high),
        },
    }


def experiment_results(experiment: Experiment) -> dict[str, Any]:
    """What the experiment has measured so far, per variant and between variants.

    Each variant after the first (the control) is compared with the control on error rate
    (two-proportion z-test), mean latency and mean cost (Welch's t-test) and, with at least
    two scores on each side, mean feedback score. `winner` is the variant that significantly
    beats every other on the primary metric once each has `min_samples`; the verdict is
    "significant" when there is one, otherwise "not_yet".
    """
    confidence = experiment.confidence_level
    alpha = 1 - confidence
    variants = list(experiment.variants.all())
    raw = experiment_variant_aggregates(experiment.pk)
    summaries = []
    rows = []
    for variant in variants:
        data = raw.get(variant.key, {})
        summary = summary_from_aggregates(
            variant.key,
            int(data.get("requests", 0)),
            int(data.get("errors", 0)),
            float(data.get("latency_sum", 0)),
            float(data.get("latency_sumsq", 0)),
            float(data.get("cost_sum", 0)),
            float(data.get("cost_sumsq", 0)),
            int(data.get("score_count", 0)),
            float(data.get("score_sum", 0)),
            float(data.get("score_sumsq", 0)),
        )
        summaries.append(summary)
        rows.append(_variant_row(summary, data, variant.model, variant.weight, confidence))
    comparisons = []
    if summaries:
        control = summaries[0]
        for other in summaries[1:]:
            for comparison in compare(other, control, alpha=alpha):
                comparisons.append({
                    "metric": comparison.metric,
                    "variant": comparison.a,
                    "control": comparison.b,
                    "difference": _finite(comparison.difference),
                    "p_value": comparison.p_value,
                    "significant": comparison.significant,
                    "better": comparison.better,
                })  # fmt: skip
    assert experiment.primary_metric in METRICS
    winner = promotion_winner(summaries, primary_metric=experiment.primary_metric,
                              min_samples=experiment.min_samples, alpha=alpha)  # fmt: skip
    return {
        "experiment": experiment.pk,
        "name": experiment.name,
        "status": experiment.status,
        "primary_metric": experiment.primary_metric,
        "confidence_level": confidence,
        "min_samples": experiment.min_samples,
        "variants": rows,
        "comparisons": comparisons,
        "winner": winner,
        "verdict": "significant" if winner else "not_yet",
        "promoted": experiment.winner if experiment.status == ExperimentStatus.COMPLETED else None,
    }
