"""Confidence intervals and significance tests for comparing experiment variants.

Standard library only: the normal CDF comes from ``math.erfc`` and Student's t CDF from the
regularized incomplete beta function (Lentz's continued fraction, as in Numerical Recipes
§6.4, with ``math.lgamma``). Quantiles are found by bisection on those CDFs, so they are
accurate to ~1e-9, far better than the 1e-4 intervals need.

Degenerate inputs never raise and never divide by zero; they produce "no information" results:

* a proportion with zero trials has the interval ``[0, 1]``;
* a mean from fewer than two observations has the interval ``(-inf, inf)``;
* a test with an empty arm (or fewer than two observations for a t-test) returns
  ``statistic=0, p_value=1`` so nothing is ever declared significant on no data;
* zero variance on both arms with equal means is ``statistic=0, p_value=1``; with different
  means it is ``statistic=±inf, p_value=0`` (every observation separates the arms).

Only genuinely invalid arguments (negative counts, successes above trials, a confidence
outside (0, 1), an unknown metric) raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

ERROR_RATE = "error_rate"
LATENCY_MEAN = "latency_mean"
COST_MEAN = "cost_mean"
SCORE_MEAN = "score_mean"
METRICS = (ERROR_RATE, LATENCY_MEAN, COST_MEAN, SCORE_MEAN)
_LOWER_IS_BETTER = {ERROR_RATE: True, LATENCY_MEAN: True, COST_MEAN: True, SCORE_MEAN: False}

_CF_EPS = 1e-15
_CF_TINY = 1e-300
_CF_MAX_ITER = 20_000
# Beyond this many degrees of freedom t and normal quantiles differ by < 1e-6, while lgamma of
# such large arguments starts to lose digits in the beta function.
_T_AS_NORMAL_DF = 1e7


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval."""

    low: float
    high: float


@dataclass(frozen=True)
class TestResult:
    """A test statistic with its two-sided p-value (``df`` only for t-tests)."""

    __test__ = False  # not a pytest test class, despite the name

    statistic: float
    p_value: float
    df: float | None


@dataclass(frozen=True)
class VariantSummary:
    """Per-variant aggregates, as plain numbers, that the comparisons work from."""

    key: str
    requests: int
    errors: int
    latency_mean: float
    latency_var: float
    cost_mean: float
    cost_var: float
    score_count: int
    score_mean: float
    score_var: float


@dataclass(frozen=True)
class Comparison:
    """One metric compared between variants ``a`` and ``b`` (``difference`` is a - b)."""

    metric: str
    a: str
    b: str
    difference: float
    p_value: float
    significant: bool
    better: str | None


# --- distributions ------------------------------------------------------------------------


def normal_cdf(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def normal_two_sided_p(z: float) -> float:
    """P(|Z| ≥ |z|), computed with ``erfc`` so small tails keep their precision."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction for I_x(a, b), modified Lentz's method (Numerical Recipes ``betacf``)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < _CF_TINY:
        d = _CF_TINY
    d = 1.0 / d
    h = d
    for m in range(1, _CF_MAX_ITER + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = _CF_TINY if abs(d) < _CF_TINY else d
        c = 1.0 + aa / c
        c = _CF_TINY if abs(c) < _CF_TINY else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = _CF_TINY if abs(d) < _CF_TINY else d
        c = 1.0 + aa / c
        c = _CF_TINY if abs(c) < _CF_TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _CF_EPS:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The fraction converges fast only on this side of the mean; use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with ``df`` (possibly fractional) degrees of freedom."""
    if math.isinf(t):
        return 0.0
    if df >= _T_AS_NORMAL_DF:
        return normal_two_sided_p(t)
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(t: float, df: float) -> float:
    """Student's t CDF."""
    tail = 0.5 * t_two_sided_p(t, df)
    return 1.0 - tail if t > 0 else tail


def _upper_quantile(upper_tail: float, two_sided_p: Callable[[float], float]) -> float:
    """The x ≥ 0 with two_sided_p(x) == 2 * upper_tail: bracket by doubling, then bisect."""
    target = 2.0 * upper_tail
    low, high = 0.0, 1.0
    while two_sided_p(high) > target:
        low, high = high, high * 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if two_sided_p(mid) > target:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * high:
            break
    return 0.5 * (low + high)


def _quantile(p: float, two_sided_p: Callable[[float], float]) -> float:
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile probability must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    x = _upper_quantile(min(p, 1.0 - p), two_sided_p)
    return x if p > 0.5 else -x


def normal_ppf(p: float) -> float:
    """Standard normal quantile."""
    return _quantile(p, normal_two_sided_p)


def t_ppf(p: float, df: float) -> float:
    """Student's t quantile with ``df`` > 0 (possibly fractional) degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    return _quantile(p, lambda x: t_two_sided_p(x, df))


def _two_sided_z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return normal_ppf(0.5 + confidence / 2.0)


# --- intervals ----------------------------------------------------------------------------


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a proportion; stays inside [0, 1] and behaves at 0 and n.

    Zero trials carry no information: the interval is the whole of ``[0, 1]``.
    """
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    z = _two_sided_z(confidence)
    if trials == 0:
        return Interval(0.0, 1.0)
    p = successes / trials
    z2_n = z * z / trials
    centre = (p + z2_n / 2.0) / (1.0 + z2_n)
    half = z / (1.0 + z2_n) * math.sqrt(p * (1.0 - p) / trials + z2_n / (4.0 * trials))
    # At 0 and n the exact bound is 0 (or 1); float rounding would leave a 1e-17 there.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(low, high)


def mean_interval(mean: float, variance: float, n: int, confidence: float = 0.95) -> Interval:
    """t-based interval for a mean from its sample variance (n - 1 denominator).

    Fewer than two observations give ``(-inf, inf)``; zero variance gives ``[mean, mean]``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n < 2:
        return Interval(-math.inf, math.inf)
    half = t_ppf(0.5 + confidence / 2.0, n - 1) * math.sqrt(max(variance, 0.0) / n)
    return Interval(mean - half, mean + half)


# --- tests --------------------------------------------------------------------------------

_NO_EVIDENCE = TestResult(statistic=0.0, p_value=1.0, df=None)


def two_proportion_test(s1: int, n1: int, s2: int, n2: int) -> TestResult:
    """Pooled two-proportion z-test of p1 = p2; ``statistic`` is positive when p1 > p2."""
    for s, n in ((s1, n1), (s2, n2)):
        if n < 0 or not 0 <= s <= max(n, 0):
            raise ValueError(f"need 0 <= successes <= trials, got {s}/{n}")
    if n1 == 0 or n2 == 0:
        return _NO_EVIDENCE
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:  # all successes or all failures on both arms: identical proportions
        return _NO_EVIDENCE
    z = (s1 / n1 - s2 / n2) / se
    return TestResult(statistic=z, p_value=normal_two_sided_p(z), df=None)


def welch_t_test(
    mean1: float, var1: float, n1: int, mean2: float, var2: float, n2: int
) -> TestResult:
    """Welch's unequal-variance t-test of mean1 = mean2 (Welch-Satterthwaite df)."""
    if n1 < 2 or n2 < 2:
        return _NO_EVIDENCE
    se1, se2 = max(var1, 0.0) / n1, max(var2, 0.0) / n2
    se2_total = se1 + se2
    diff = mean1 - mean2
    if se2_total == 0.0:
        if diff == 0.0:
            return _NO_EVIDENCE
        return TestResult(statistic=math.copysign(math.inf, diff), p_value=0.0, df=None)
    df = se2_total**2 / (se1**2 / (n1 - 1) + se2**2 / (n2 - 1))
    t = diff / math.sqrt(se2_total)
    return TestResult(statistic=t, p_value=t_two_sided_p(t, df), df=df)


# --- variant comparison -------------------------------------------------------------------


def _sample_variance(n: int, total: float, total_sq: float) -> float:
    """Sample variance from a sum and a sum of squares; 0 for n < 2.

    Cancellation can leave a tiny negative number when every value is (nearly) equal; clamp it.
    """
    if n < 2:
        return 0.0
    return max(0.0, (total_sq - total * total / n) / (n - 1))


def summary_from_aggregates(
    key: str,
    requests: int,
    errors: int,
    latency_sum: float,
    latency_sumsq: float,
    cost_sum: float,
    cost_sumsq: float,
    score_count: int,
    score_sum: float,
    score_sumsq: float,
) -> VariantSummary:
    """Build a summary from database aggregates (counts, sums and sums of squares).

    Latency and cost are averaged over ``requests``; with no requests (or no scores) the means
    are 0.0, and with fewer than two the variances are 0.0 — the tests ignore such arms anyway.
    """
    return VariantSummary(
        key=key,
        requests=requests,
        errors=errors,
        latency_mean=latency_sum / requests if requests > 0 else 0.0,
        latency_var=_sample_variance(requests, latency_sum, latency_sumsq),
        cost_mean=cost_sum / requests if requests > 0 else 0.0,
        cost_var=_sample_variance(requests, cost_sum, cost_sumsq),
        score_count=score_count,
        score_mean=score_sum / score_count if score_count > 0 else 0.0,
        score_var=_sample_variance(score_count, score_sum, score_sumsq),
    )


def _samples(summary: VariantSummary, metric: str) -> int:
    return summary.score_count if metric == SCORE_MEAN else summary.requests


def compare_metric(
    metric: str, a: VariantSummary, b: VariantSummary, *, alpha: float = 0.05
) -> Comparison:
    """Compare ``a`` with ``b`` on one metric; ``better`` is set only when significant."""
    if metric == ERROR_RATE:
        rate_a = a.errors / a.requests if a.requests else 0.0
        rate_b = b.errors / b.requests if b.requests else 0.0
        difference = rate_a - rate_b
        result = two_proportion_test(a.errors, a.requests, b.errors, b.requests)
    elif metric in (LATENCY_MEAN, COST_MEAN, SCORE_MEAN):
        field = metric.removesuffix("_mean")
        mean_a, mean_b = getattr(a, f"{field}_mean"), getattr(b, f"{field}_mean")
        difference = mean_a - mean_b
        result = welch_t_test(
            mean_a,
            getattr(a, f"{field}_var"),
            _samples(a, metric),
            mean_b,
            getattr(b, f"{field}_var"),
            _samples(b, metric),
        )
    else:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    significant = result.p_value < alpha and difference != 0.0
    better: str | None = None
    if significant:
        a_lower = difference < 0.0
        better = a.key if a_lower == _LOWER_IS_BETTER[metric] else b.key
    return Comparison(
        metric=metric,
        a=a.key,
        b=b.key,
        difference=difference,
        p_value=result.p_value,
        significant=significant,
        better=better,
    )


def compare(a: VariantSummary, b: VariantSummary, *, alpha: float = 0.05) -> list[Comparison]:
    """Compare two variants on error rate, latency, cost and (with ≥ 2 scores each) score.

    Lower is better for error rate, latency and cost; higher is better for score.
    """
    metrics = [ERROR_RATE, LATENCY_MEAN, COST_MEAN]
    if a.score_count >= 2 and b.score_count >= 2:
        metrics.append(SCORE_MEAN)
    return [compare_metric(metric, a, b, alpha=alpha) for metric in metrics]


def promotion_winner(
    summaries: Sequence[VariantSummary], *, primary_metric: str, min_samples: int, alpha: float
) -> str | None:
    """The variant that significantly beats every other on ``primary_metric``, else None.

    Every variant needs at least ``min_samples`` samples (requests; scores for ``score_mean``).
    Requiring each pairwise test to pass at ``alpha`` is an intersection-union test, so the
    overall false-promotion rate stays at most ``alpha`` without a multiple-comparison correction.
    """
    if primary_metric not in METRICS:
        raise ValueError(f"unknown metric {primary_metric!r}; expected one of {', '.join(METRICS)}")
    if len(summaries) < 2:
        return None
    if any(_samples(s, primary_metric) < max(min_samples, 2) for s in summaries):
        return None
    for candidate in summaries:
        if all(
            compare_metric(primary_metric, candidate, other, alpha=alpha).better == candidate.key
            for other in summaries
            if other is not candidate
        ):
            return candidate.key
    return None
