"""Routing strategies: the order each one gives, its tie-breaks, unknown stats and edge cases."""

import random
from collections import Counter

import pytest

from gateway.routing.strategies import EMPTY_STATS, Candidate, LiveStats, Strategy, order


def cand(id: int, priority: int = 0, weight: int = 1, est_cost: float = 0.0) -> Candidate:
    return Candidate(id=id, priority=priority, weight=weight, est_cost=est_cost)


def stats(
    latency: dict[int, float] | None = None,
    inflight: dict[int, int] | None = None,
    rr: int = 0,
) -> LiveStats:
    return LiveStats(latency_ms=latency or {}, inflight=inflight or {}, rr_counter=rr)


def rank(
    strategy: Strategy, candidates: list[Candidate], live: LiveStats, seed: int = 0
) -> list[int]:
    return order(strategy, candidates, live, rng=random.Random(seed))


# --- every strategy --------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", list(Strategy))
def test_no_candidates_gives_an_empty_order(strategy: Strategy) -> None:
    assert rank(strategy, [], stats(rr=7)) == []


@pytest.mark.parametrize("strategy", list(Strategy))
def test_a_single_candidate_is_always_first(strategy: Strategy) -> None:
    live = stats(latency={5: 100.0}, inflight={5: 3}, rr=11)
    assert rank(strategy, [cand(5, weight=0, est_cost=9.0)], live) == [5]


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_candidate_is_returned_once(strategy: Strategy) -> None:
    candidates = [cand(i, priority=i % 3, weight=i % 4, est_cost=i / 7) for i in range(1, 12)]
    live = stats(latency={1: 50.0, 4: 10.0}, inflight={2: 4, 9: 1}, rr=5)
    assert sorted(rank(strategy, candidates, live)) == list(range(1, 12))


@pytest.mark.parametrize("strategy", [s for s in Strategy if s is not Strategy.WEIGHTED])
def test_without_live_stats_every_strategy_but_weighted_is_the_priority_order(
    strategy: Strategy,
) -> None:
    # What a Redis outage looks like: empty stats. Equal weights and costs, so only the
    # priority tie-break speaks.
    candidates = [cand(3, priority=2), cand(1, priority=1), cand(2, priority=1)]
    assert rank(strategy, candidates, EMPTY_STATS) == [1, 2, 3]


@pytest.mark.parametrize("strategy", list(Strategy))
def test_same_seed_same_order(strategy: Strategy) -> None:
    candidates = [cand(i, priority=i % 2, weight=i, est_cost=1.0) for i in range(1, 9)]
    live = stats(latency={1: 20.0}, inflight={3: 2}, rr=3)
    assert rank(strategy, candidates, live, seed=42) == rank(strategy, candidates, live, seed=42)


def test_a_plain_string_names_the_strategy() -> None:
    assert order("priority", [cand(2), cand(1)], EMPTY_STATS, rng=random.Random(0)) == [1, 2]  # type: ignore[arg-type]


# --- priority, round robin -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([cand(1, priority=1), cand(2, priority=0)], [2, 1]),
        ([cand(9, priority=0), cand(3, priority=0), cand(5, priority=0)], [3, 5, 9]),  # ties: id
        ([cand(4, priority=-1), cand(2, priority=5), cand(3, priority=5)], [4, 2, 3]),
    ],
)
def test_priority(candidates: list[Candidate], expected: list[int]) -> None:
    assert rank(Strategy.PRIORITY, candidates, stats(latency={2: 1.0}, rr=1)) == expected


@pytest.mark.parametrize(
    ("rr", "expected"),
    [(0, [1, 2, 3]), (1, [2, 3, 1]), (2, [3, 1, 2]), (3, [1, 2, 3]), (3 * 10**12 + 1, [2, 3, 1])],
)
def test_round_robin_rotates_the_priority_order(rr: int, expected: list[int]) -> None:
    candidates = [cand(3, priority=1), cand(2, priority=0), cand(1, priority=0)]
    assert rank(Strategy.ROUND_ROBIN, candidates, stats(rr=rr)) == expected


def test_round_robin_spreads_first_choices_evenly() -> None:
    candidates = [cand(i) for i in range(1, 5)]
    firsts = Counter(rank(Strategy.ROUND_ROBIN, candidates, stats(rr=n))[0] for n in range(400))
    assert firsts == {1: 100, 2: 100, 3: 100, 4: 100}


# --- latency, cost, busy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("latency", "expected"),
    [
        # 4 is unknown: it ranks just ahead of the median (200), so it gets measured.
        ({1: 300.0, 2: 100.0, 3: 200.0}, [2, 4, 3, 1]),
        # Ties on latency go by priority (1 and 2 have priority 0, 3 and 4 have 1), then id.
        ({1: 100.0, 2: 100.0, 3: 100.0, 4: 100.0}, [1, 2, 3, 4]),
        ({4: 50.0, 3: 50.0, 2: 50.0, 1: 80.0}, [2, 3, 4, 1]),
        # Unknown latency ranks just ahead of the median of the known ones (200).
        ({1: 300.0, 3: 200.0, 4: 100.0}, [4, 2, 3, 1]),
        # No latency known: priority order.
        ({}, [1, 2, 3, 4]),
        # Unusable values are unknown: NaN and negative -> median of {10, 30} = 20.
        ({1: float("nan"), 2: -5.0, 3: 30.0, 4: 10.0}, [4, 1, 2, 3]),
    ],
)
def test_least_latency(latency: dict[int, float], expected: list[int]) -> None:
    candidates = [cand(1), cand(2), cand(3, priority=1), cand(4, priority=1)]
    assert rank(Strategy.LEAST_LATENCY, candidates, stats(latency=latency)) == expected


def test_least_latency_gives_a_new_deployment_a_middle_rank() -> None:
    candidates = [cand(1), cand(2), cand(3), cand(99, priority=9)]
    live = stats(latency={1: 10.0, 2: 500.0, 3: 1000.0})
    # Just ahead of the median (500): measured soon, still behind the fastest.
    assert rank(Strategy.LEAST_LATENCY, candidates, live) == [1, 99, 2, 3]


@pytest.mark.parametrize(
    ("costs", "expected"),
    [
        ({1: 0.30, 2: 0.10, 3: 0.20}, [2, 3, 1]),
        ({1: 0.10, 2: 0.10, 3: 0.10}, [1, 2, 3]),  # ties by priority: 3 has priority 1
        ({1: 0.0, 2: 0.5, 3: 0.0}, [1, 3, 2]),
        ({1: float("nan"), 2: float("inf"), 3: 1.0}, [3, 1, 2]),  # unusable estimates last
    ],
)
def test_lowest_cost(costs: dict[int, float], expected: list[int]) -> None:
    candidates = [cand(1, est_cost=costs[1]), cand(2, est_cost=costs[2])]
    candidates.append(cand(3, priority=1, est_cost=costs[3]))
    assert rank(Strategy.LOWEST_COST, candidates, EMPTY_STATS) == expected


@pytest.mark.parametrize(
    ("inflight", "expected"),
    [
        ({1: 5, 2: 0, 3: 2}, [2, 3, 1]),
        ({1: 2, 2: 2, 3: 2}, [1, 2, 3]),  # ties by priority
        ({1: 3, 2: 1}, [3, 2, 1]),  # unknown (3) counts as 0 in flight
        ({1: -4, 2: 0, 3: 0}, [1, 2, 3]),  # a negative count is 0
    ],
)
def test_least_busy(inflight: dict[int, int], expected: list[int]) -> None:
    candidates = [cand(1), cand(2), cand(3, priority=1)]
    assert rank(Strategy.LEAST_BUSY, candidates, stats(inflight=inflight)) == expected


# --- weighted --------------------------------------------------------------------------------


def first_choice_shares(candidates: list[Candidate], draws: int = 20_000) -> dict[int, float]:
    rng = random.Random(20240601)
    firsts = Counter(
        order(Strategy.WEIGHTED, candidates, EMPTY_STATS, rng=rng)[0] for _ in range(draws)
    )
    return {id: 100 * n / draws for id, n in firsts.items()}


@pytest.mark.parametrize(
    "weights",
    [{1: 1, 2: 3}, {1: 1, 2: 1}, {1: 5, 2: 3, 3: 2}, {1: 70, 2: 20, 3: 9, 4: 1}],
)
def test_weighted_first_choices_follow_the_weights(weights: dict[int, int]) -> None:
    candidates = [cand(id, weight=w) for id, w in weights.items()]
    shares = first_choice_shares(candidates)
    total = sum(weights.values())
    for id, weight in weights.items():
        assert shares.get(id, 0.0) == pytest.approx(100 * weight / total, abs=1.5)


def test_weighted_second_choice_is_drawn_from_the_rest() -> None:
    # Without replacement: with weights 2:1:1, after 1 goes first, 2 and 3 split evenly.
    candidates = [cand(1, weight=2), cand(2, weight=1), cand(3, weight=1)]
    rng = random.Random(7)
    seconds = Counter(
        ranked[1]
        for ranked in (
            order(Strategy.WEIGHTED, candidates, EMPTY_STATS, rng=rng) for _ in range(20_000)
        )
        if ranked[0] == 1
    )
    assert seconds[2] / (seconds[2] + seconds[3]) == pytest.approx(0.5, abs=0.02)


def test_weighted_zero_weights_are_never_first_and_go_last_by_priority() -> None:
    candidates = [
        cand(1, priority=0, weight=0),
        cand(2, priority=5, weight=1),
        cand(3, priority=9, weight=4),
        cand(4, priority=1, weight=0),
        cand(5, priority=0, weight=-3),  # negative counts as zero
    ]
    rng = random.Random(3)
    for _ in range(2_000):
        ranked = order(Strategy.WEIGHTED, candidates, EMPTY_STATS, rng=rng)
        assert sorted(ranked[:2]) == [2, 3]
        assert ranked[2:] == [1, 5, 4]


def test_weighted_all_zero_is_the_priority_order() -> None:
    candidates = [cand(3, priority=1, weight=0), cand(2, weight=0), cand(1, weight=0)]
    for seed in range(20):
        assert rank(Strategy.WEIGHTED, candidates, EMPTY_STATS, seed=seed) == [1, 2, 3]


def test_weighted_ignores_live_stats() -> None:
    candidates = [cand(1, weight=1), cand(2, weight=3)]
    busy = stats(latency={2: 9999.0}, inflight={2: 100}, rr=5)
    assert rank(Strategy.WEIGHTED, candidates, busy, seed=9) == rank(
        Strategy.WEIGHTED, candidates, EMPTY_STATS, seed=9
    )
