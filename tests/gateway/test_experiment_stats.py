"""Experiment assignment and statistics: reference values from tables, edge cases, simulations.

Pure functions, no database. Reference quantiles are the usual table values (more digits than
printed tables, from the closed forms for df = 1 and 2 and standard references otherwise).
"""

import itertools
import math
import random
import statistics
from collections import Counter

import pytest

from gateway.experiments.assignment import VariantWeight, assign_variant
from gateway.experiments.stats import (
    COST_MEAN,
    ERROR_RATE,
    LATENCY_MEAN,
    SCORE_MEAN,
    Interval,
    VariantSummary,
    compare,
    compare_metric,
    mean_interval,
    normal_cdf,
    normal_ppf,
    promotion_winner,
    regularized_incomplete_beta,
    summary_from_aggregates,
    t_cdf,
    t_ppf,
    two_proportion_test,
    welch_t_test,
    wilson_interval,
)

USERS = [f"user-{i}" for i in range(10_000)]


def split(*weights: int) -> list[VariantWeight]:
    return [VariantWeight(key=f"v{i}", weight=w) for i, w in enumerate(weights)]


def summary(
    key: str,
    *,
    requests: int = 1000,
    errors: int = 0,
    latency: tuple[float, float] = (1.0, 0.04),
    cost: tuple[float, float] = (0.01, 1e-6),
    scores: tuple[int, float, float] = (0, 0.0, 0.0),
) -> VariantSummary:
    return VariantSummary(
        key=key,
        requests=requests,
        errors=errors,
        latency_mean=latency[0],
        latency_var=latency[1],
        cost_mean=cost[0],
        cost_var=cost[1],
        score_count=scores[0],
        score_mean=scores[1],
        score_var=scores[2],
    )


def simulated(key: str, rng: random.Random, requests: int, error_rate: float) -> VariantSummary:
    """Aggregate a simulated stream of requests exactly as the database aggregates would."""
    errors = latency_sum = latency_sumsq = 0.0
    for _ in range(requests):
        errors += rng.random() < error_rate
        latency = rng.gauss(0.8, 0.2)
        latency_sum += latency
        latency_sumsq += latency * latency
    return summary_from_aggregates(
        key, requests, int(errors), latency_sum, latency_sumsq, 0.0, 0.0, 0, 0.0, 0.0
    )


# --- assignment ---------------------------------------------------------------------------


def test_assignment_is_deterministic_and_pinned() -> None:
    variants = split(50, 50)
    first = [assign_variant(7, variants, user, request_id="r") for user in USERS[:200]]
    again = [assign_variant(7, variants, user, request_id="other") for user in USERS[:200]]
    assert first == again
    # Pinned values: a change of hash, key format or bucket mapping would silently move every
    # user of every running experiment, so it must show up here.
    thirds = [VariantWeight(key, 1) for key in "abc"]
    pinned = [assign_variant(1, thirds, user, request_id="r") for user in USERS[:12]]
    assert pinned == ["c", "c", "a", "b", "a", "b", "a", "a", "c", "a", "c", "b"]
    assert assign_variant("exp-1", thirds, None, request_id="req-123") == "a"


def test_int_and_str_experiment_ids_hash_alike() -> None:
    variants = split(30, 70)
    assert [assign_variant(42, variants, u, request_id="r") for u in USERS[:500]] == [
        assign_variant("42", variants, u, request_id="r") for u in USERS[:500]
    ]


def test_without_user_the_request_id_decides() -> None:
    variants = split(50, 50)
    for user in (None, ""):
        picks = {assign_variant(3, variants, user, request_id=f"req-{i}") for i in range(200)}
        assert picks == {"v0", "v1"}
        assert assign_variant(3, variants, user, request_id="req-1") == assign_variant(
            3, variants, user, request_id="req-1"
        )


def test_zero_weight_variants_are_never_chosen() -> None:
    variants = [
        VariantWeight("off-a", 0),
        VariantWeight("on", 5),
        VariantWeight("off-b", 0),
        VariantWeight("also-on", 5),
        VariantWeight("off-c", 0),
    ]
    picks = Counter(assign_variant(9, variants, user, request_id="r") for user in USERS)
    assert set(picks) == {"on", "also-on"}


def test_single_positive_variant_takes_everything() -> None:
    variants = split(0, 3, 0)
    assert {assign_variant(1, variants, u, request_id="r") for u in USERS[:1000]} == {"v1"}


@pytest.mark.parametrize("weights", [(50, 50), (90, 10), (20, 30, 50), (1, 1, 1, 1)])
def test_shares_follow_weights_within_two_points(weights: tuple[int, ...]) -> None:
    variants = split(*weights)
    counts = Counter(assign_variant(11, variants, user, request_id="r") for user in USERS)
    total = sum(weights)
    for variant in variants:
        share = counts[variant.key] / len(USERS)
        assert share == pytest.approx(variant.weight / total, abs=0.02), variant.key


def test_experiments_assign_independently() -> None:
    variants = split(50, 50)
    a = [assign_variant(1, variants, user, request_id="r") for user in USERS]
    b = [assign_variant(2, variants, user, request_id="r") for user in USERS]
    agreement = sum(x == y for x, y in zip(a, b, strict=True)) / len(USERS)
    assert agreement == pytest.approx(0.5, abs=0.02)
    # And conditional on experiment 1's arm, experiment 2 still splits evenly.
    in_v0 = [y for x, y in zip(a, b, strict=True) if x == "v0"]
    assert in_v0.count("v0") / len(in_v0) == pytest.approx(0.5, abs=0.03)


def test_invalid_weights_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        VariantWeight("v", -1)
    with pytest.raises(ValueError, match="positive weight"):
        assign_variant(1, split(0, 0), "u", request_id="r")
    with pytest.raises(ValueError, match="positive weight"):
        assign_variant(1, [], "u", request_id="r")


# --- distributions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "expected"),
    [
        (1, 12.706205),
        (2, 4.302653),
        (5, 2.570582),
        (10, 2.228139),
        (20, 2.085963),
        (30, 2.042272),
        (100, 1.983972),
    ],
)
def test_t_975_quantile_matches_tables(df: int, expected: float) -> None:
    assert t_ppf(0.975, df) == pytest.approx(expected, abs=1e-5)


def test_other_quantiles_match_tables() -> None:
    assert normal_ppf(0.975) == pytest.approx(1.959964, abs=1e-6)
    assert normal_ppf(0.995) == pytest.approx(2.575829, abs=1e-6)
    assert normal_ppf(0.5) == 0.0
    assert t_ppf(0.995, 10) == pytest.approx(3.169273, abs=1e-5)
    assert t_ppf(0.95, 20) == pytest.approx(1.724718, abs=1e-5)
    assert t_ppf(0.025, 10) == pytest.approx(-2.228139, abs=1e-5)
    # Huge df approaches the normal quantile.
    assert t_ppf(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)


@pytest.mark.parametrize("t", [-30.0, -2.5, -0.4, 0.0, 0.3, 1.5, 4.0, 25.0])
def test_t_cdf_matches_closed_forms(t: float) -> None:
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_quantiles_invert_cdfs_and_are_monotone() -> None:
    for df in (1, 2.5, 7, 48.3, 1000):
        previous = -math.inf
        for p in (0.001, 0.05, 0.3, 0.5, 0.7, 0.95, 0.999):
            q = t_ppf(p, df)
            assert t_cdf(q, df) == pytest.approx(p, abs=1e-9)
            assert q > previous
            previous = q
            assert t_ppf(1 - p, df) == pytest.approx(-q, abs=1e-8)
    assert normal_cdf(normal_ppf(0.01)) == pytest.approx(0.01, abs=1e-12)


def test_incomplete_beta_known_values() -> None:
    assert regularized_incomplete_beta(1, 1, 0.3) == pytest.approx(0.3)  # uniform
    assert regularized_incomplete_beta(2, 3, 0.4) == pytest.approx(0.5248)  # 1 - Bin(1;4,.4)
    assert regularized_incomplete_beta(2, 5, 0.0) == 0.0
    assert regularized_incomplete_beta(2, 5, 1.0) == 1.0


def test_invalid_probabilities_are_rejected() -> None:
    for p in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="probability"):
            normal_ppf(p)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_ppf(0.9, 0)


# --- intervals ----------------------------------------------------------------------------


def test_wilson_reference_values() -> None:
    interval = wilson_interval(10, 100)
    assert interval.low == pytest.approx(0.0552, abs=1e-4)
    assert interval.high == pytest.approx(0.1744, abs=1e-4)
    assert wilson_interval(0, 10) == Interval(0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(10, 10) == Interval(pytest.approx(0.7225, abs=1e-4), 1.0)


def test_wilson_symmetry_and_width() -> None:
    for s, n in ((3, 40), (17, 50), (0, 5)):
        interval, mirror = wilson_interval(s, n), wilson_interval(n - s, n)
        assert (mirror.low, mirror.high) == pytest.approx((1 - interval.high, 1 - interval.low))
    # More data, narrower interval; more confidence, wider interval.
    widths = [wilson_interval(n // 10, n) for n in (10, 100, 1000, 10_000)]
    assert all(a.high - a.low > b.high - b.low for a, b in itertools.pairwise(widths))
    i90, i99 = wilson_interval(10, 100, 0.90), wilson_interval(10, 100, 0.99)
    assert i99.low < i90.low < i90.high < i99.high


def test_wilson_edge_cases() -> None:
    assert wilson_interval(0, 0) == Interval(0.0, 1.0)
    for n in range(1, 60):  # exactly 0 and 1 at the edges, never 1e-17 off by rounding
        assert wilson_interval(0, n).low == 0.0
        assert wilson_interval(n, n).high == 1.0
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 3)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(-1, 3)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 3, confidence=1.0)


def test_mean_interval_uses_t_quantile() -> None:
    interval = mean_interval(10.0, 4.0, 11)  # se = sqrt(4/11), df = 10
    half = 2.228139 * math.sqrt(4 / 11)
    assert interval.low == pytest.approx(10.0 - half, abs=1e-5)
    assert interval.high == pytest.approx(10.0 + half, abs=1e-5)
    wide = mean_interval(10.0, 4.0, 11, confidence=0.99)
    assert wide.low < interval.low
    assert wide.high > interval.high


def test_mean_interval_edge_cases() -> None:
    assert mean_interval(3.0, 1.0, 0) == Interval(-math.inf, math.inf)
    assert mean_interval(3.0, 0.0, 1) == Interval(-math.inf, math.inf)
    assert mean_interval(3.0, 0.0, 50) == Interval(3.0, 3.0)
    assert mean_interval(3.0, -1e-18, 50) == Interval(3.0, 3.0)


# --- tests of significance ----------------------------------------------------------------


def test_two_proportion_reference() -> None:
    result = two_proportion_test(45, 100, 30, 100)
    assert result.statistic == pytest.approx(2.19, abs=0.005)
    assert result.p_value == pytest.approx(0.0285, abs=5e-4)
    assert result.df is None
    swapped = two_proportion_test(30, 100, 45, 100)
    assert swapped.statistic == pytest.approx(-result.statistic)
    assert swapped.p_value == pytest.approx(result.p_value)


def test_two_proportion_edge_cases() -> None:
    for args in ((0, 0, 5, 10), (5, 10, 0, 0), (0, 50, 0, 60), (50, 50, 60, 60)):
        result = two_proportion_test(*args)
        assert (result.statistic, result.p_value) == (0.0, 1.0)
    assert two_proportion_test(0, 500, 500, 500).p_value < 1e-100
    with pytest.raises(ValueError, match="successes"):
        two_proportion_test(11, 10, 1, 10)


def test_welch_textbook_example() -> None:
    # Wikipedia, "Welch's t-test", example 1: t = -2.46, df = 24.99, p = 0.021.
    a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    result = welch_t_test(
        statistics.mean(a1), statistics.variance(a1), len(a1),
        statistics.mean(a2), statistics.variance(a2), len(a2),
    )  # fmt: skip
    assert result.statistic == pytest.approx(-2.46, abs=0.005)
    assert result.df == pytest.approx(24.99, abs=0.01)
    assert result.p_value == pytest.approx(0.021, abs=5e-4)


def test_welch_equal_variance_equal_n_matches_student() -> None:
    # Equal n and variances: df = 2n - 2, t = diff / sqrt(2 var / n).
    result = welch_t_test(1.0, 4.0, 11, 0.0, 4.0, 11)
    assert result.df == pytest.approx(20)
    assert result.statistic == pytest.approx(1 / math.sqrt(8 / 11))
    assert result.p_value == pytest.approx(2 * (1 - t_cdf(result.statistic, 20)))


def test_welch_edge_cases() -> None:
    assert welch_t_test(1.0, 1.0, 1, 5.0, 1.0, 100).p_value == 1.0
    assert welch_t_test(1.0, 0.0, 10, 1.0, 0.0, 10).p_value == 1.0
    separated = welch_t_test(1.0, 0.0, 10, 2.0, 0.0, 10)
    assert separated.p_value == 0.0
    assert separated.statistic == -math.inf
    one_constant = welch_t_test(1.0, 0.0, 10, 2.0, 1.0, 10)
    assert one_constant.df == pytest.approx(9)
    assert 0.0 < one_constant.p_value < 0.05


def test_p_value_shrinks_as_gap_grows() -> None:
    p_values = [two_proportion_test(100 + gap, 1000, 100, 1000).p_value for gap in (0, 10, 30, 60)]
    assert p_values == sorted(p_values, reverse=True)
    assert p_values[0] == pytest.approx(1.0)


# --- summaries and comparisons ------------------------------------------------------------


def test_summary_from_aggregates() -> None:
    values = [0.5, 0.7, 1.3, 2.0]
    s = summary_from_aggregates(
        "a", 4, 1,
        sum(values), sum(v * v for v in values),
        0.04, 0.0004,
        3, 12.0, 50.0,
    )  # fmt: skip
    assert s.latency_mean == pytest.approx(statistics.mean(values))
    assert s.latency_var == pytest.approx(statistics.variance(values))
    assert s.cost_mean == pytest.approx(0.01)
    assert s.cost_var == 0.0  # 4 identical costs: rounding must not go negative
    assert (s.score_mean, s.score_var) == (pytest.approx(4.0), pytest.approx(1.0))


def test_summary_from_aggregates_guards_small_n() -> None:
    empty = summary_from_aggregates("e", 0, 0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0)
    assert (empty.latency_mean, empty.latency_var, empty.score_mean) == (0.0, 0.0, 0.0)
    single = summary_from_aggregates("s", 1, 0, 2.5, 6.25, 0.1, 0.01, 1, 4.0, 16.0)
    assert (single.latency_mean, single.latency_var, single.score_var) == (2.5, 0.0, 0.0)
    # Many identical values: sum of squares minus square of sum cancels to about -1e-13.
    n, v = 100_000, 0.1
    same = summary_from_aggregates("c", n, 0, v * n, v * v * n, 0, 0, 0, 0, 0)
    assert same.latency_var == pytest.approx(0.0, abs=1e-12)
    assert same.latency_var >= 0.0


def test_compare_directions_and_metrics() -> None:
    a = summary("a", errors=50, latency=(0.9, 0.04), cost=(0.010, 1e-6), scores=(200, 4.2, 1.0))
    b = summary("b", errors=100, latency=(1.0, 0.04), cost=(0.012, 1e-6), scores=(200, 3.9, 1.0))
    results = {c.metric: c for c in compare(a, b)}
    assert list(results) == [ERROR_RATE, LATENCY_MEAN, COST_MEAN, SCORE_MEAN]
    for comparison in results.values():
        assert comparison.significant
        assert comparison.better == "a"
        assert (comparison.a, comparison.b) == ("a", "b")
    assert results[ERROR_RATE].difference == pytest.approx(-0.05)
    assert results[SCORE_MEAN].difference == pytest.approx(0.3)
    reverse = {c.metric: c for c in compare(b, a)}
    assert all(c.better == "a" for c in reverse.values())
    assert reverse[ERROR_RATE].p_value == pytest.approx(results[ERROR_RATE].p_value)


def test_compare_skips_scores_without_two_each_and_is_quiet_on_ties() -> None:
    a = summary("a", errors=10, scores=(1, 5.0, 0.0))
    b = summary("b", errors=10, scores=(500, 3.0, 1.0))
    results = compare(a, b)
    assert [c.metric for c in results] == [ERROR_RATE, LATENCY_MEAN, COST_MEAN]
    assert not any(c.significant for c in results)
    assert all(c.better is None for c in results)


def test_compare_on_empty_variants_never_raises() -> None:
    empty = summary_from_aggregates("e", 0, 0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0)
    results = compare(empty, summary("b", errors=500))
    assert all(not c.significant and c.p_value == 1.0 for c in results)
    with pytest.raises(ValueError, match="unknown metric"):
        compare_metric("vibes", empty, empty)


def test_simulated_error_rates_are_told_apart() -> None:
    rng = random.Random(20240611)
    good = simulated("good", rng, 2000, 0.10)
    bad = simulated("bad", rng, 2000, 0.20)
    error_rate = next(c for c in compare(good, bad) if c.metric == ERROR_RATE)
    assert error_rate.significant
    assert error_rate.better == "good"
    assert error_rate.p_value < 1e-6
    assert (
        promotion_winner([bad, good], primary_metric=ERROR_RATE, min_samples=1000, alpha=0.05)
        == "good"
    )


def test_identical_variants_rarely_look_significant() -> None:
    rng = random.Random(7)
    runs, false_alarms, latency_false_alarms = 200, 0, 0
    for _ in range(runs):
        a = simulated("a", rng, 2000, 0.10)
        b = simulated("b", rng, 2000, 0.10)
        results = {c.metric: c for c in compare(a, b)}
        false_alarms += results[ERROR_RATE].significant
        latency_false_alarms += results[LATENCY_MEAN].significant
    assert false_alarms <= 0.10 * runs
    assert latency_false_alarms <= 0.10 * runs


# --- promotion ----------------------------------------------------------------------------


def test_promotion_honours_min_samples() -> None:
    good = summary("good", requests=400, errors=20)
    bad = summary("bad", requests=400, errors=80)
    kwargs = {"primary_metric": ERROR_RATE, "alpha": 0.05}
    assert promotion_winner([good, bad], min_samples=400, **kwargs) == "good"
    assert promotion_winner([good, bad], min_samples=401, **kwargs) is None


def test_promotion_needs_to_beat_every_other_variant() -> None:
    best = summary("best", latency=(0.5, 0.04))
    close = summary("close", latency=(0.501, 0.04))
    slow = summary("slow", latency=(2.0, 0.04))
    kwargs = {"primary_metric": LATENCY_MEAN, "min_samples": 100, "alpha": 0.05}
    assert promotion_winner([slow, best], **kwargs) == "best"
    assert promotion_winner([slow, best, close], **kwargs) is None


def test_promotion_on_score_counts_scores_not_requests() -> None:
    high = summary("high", scores=(30, 4.5, 0.25))
    low = summary("low", scores=(30, 3.0, 0.25))
    kwargs = {"primary_metric": SCORE_MEAN, "alpha": 0.05}
    assert promotion_winner([low, high], min_samples=30, **kwargs) == "high"
    assert promotion_winner([low, high], min_samples=31, **kwargs) is None


def test_promotion_edge_cases() -> None:
    only = summary("only", errors=0)
    assert promotion_winner([only], primary_metric=COST_MEAN, min_samples=1, alpha=0.05) is None
    assert promotion_winner([], primary_metric=COST_MEAN, min_samples=1, alpha=0.05) is None
    tie = [summary("a"), summary("b")]
    assert promotion_winner(tie, primary_metric=COST_MEAN, min_samples=1, alpha=0.05) is None
    with pytest.raises(ValueError, match="unknown metric"):
        promotion_winner(tie, primary_metric="latency", min_samples=1, alpha=0.05)
