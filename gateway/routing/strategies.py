"""Routing strategies: pure orderings of the candidate deployments of one request.

`order` returns every candidate id, best first; the ones after the first are the fallback
order. It does no I/O: the live numbers come in a `LiveStats` (read from Redis by
`gateway.routing.live_stats`), and randomness from the caller's `random.Random`, so a given
input and seed always give the same answer.

Every strategy breaks ties by (priority, id), lower first, so "priority" is also what each
one degrades to when its signal is missing (Redis down, new deployments):

* priority       -- by (priority, id).
* weighted       -- a weighted random order: weighted sampling without replacement among
                    the candidates with a positive weight, so the first choice is candidate
                    i with probability weight_i / sum(weights); zero-weight candidates
                    (negative weights count as zero) follow, by priority. When every weight
                    is zero the result is the priority order.
* round_robin    -- the priority order rotated left by `rr_counter` (modulo its length), so
                    successive requests start at successive candidates. Every candidate gets
                    an equal share of first choices, lower-priority ones included.
* least_latency  -- ascending EWMA latency. A deployment without one (new, or its average
                    expired) counts as the median of the known latencies, so it gets traffic
                    and a measurement instead of being starved or flooded; with no known
                    latency at all this is the priority order.
* lowest_cost    -- ascending estimated cost of this request (`Candidate.est_cost`); a
                    non-finite estimate sorts last.
* least_busy     -- ascending number of calls in flight; unknown counts as zero (the counter
                    key is absent exactly when nothing is in flight).
"""

import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Strategy(StrEnum):
    PRIORITY = "priority"
    WEIGHTED = "weighted"
    ROUND_ROBIN = "round_robin"
    LEAST_LATENCY = "least_latency"
    LOWEST_COST = "lowest_cost"
    LEAST_BUSY = "least_busy"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment that may serve the request, with what the strategies need of it."""

    id: int
    priority: int  # lower is preferred
    weight: int  # >= 0; relative share under the weighted strategy
    est_cost: float  # estimated USD cost of this request on this deployment


@dataclass(frozen=True, slots=True)
class LiveStats:
    """Shared live numbers of the deployments; an id missing from a mapping is unknown."""

    latency_ms: Mapping[int, float]
    inflight: Mapping[int, int]
    rr_counter: int


EMPTY_STATS = LiveStats(latency_ms={}, inflight={}, rr_counter=0)


def order(
    strategy: Strategy,
    candidates: Sequence[Candidate],
    stats: LiveStats,
    *,
    rng: random.Random,
) -> list[int]:
    """Every candidate id, best first, as the strategy ranks them."""
    if not candidates:
        return []
    return _ORDERINGS[Strategy(strategy)](candidates, stats, rng)


def _by_priority(candidates: Sequence[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (c.priority, c.id))


def _priority(candidates: Sequence[Candidate], stats: LiveStats, rng: random.Random) -> list[int]:
    return [c.id for c in _by_priority(candidates)]


def _weighted(candidates: Sequence[Candidate], stats: LiveStats, rng: random.Random) -> list[int]:
    ranked = _by_priority(candidates)
    pool = [c for c in ranked if c.weight > 0]
    rest = [c.id for c in ranked if c.weight <= 0]
    chosen: list[int] = []
    total = sum(c.weight for c in pool)
    while pool:
        # Draw one in proportion to its weight, remove it, repeat. Weights are integers, so
        # `total` stays exact; the pool is iterated in priority order so a seed is stable.
        point = rng.random() * total
        index = len(pool) - 1
        for i, candidate in enumerate(pool):
            point -= candidate.weight
            if point < 0:
                index = i
                break
        picked = pool.pop(index)
        total -= picked.weight
        chosen.append(picked.id)
    return chosen + rest


def _round_robin(
    candidates: Sequence[Candidate], stats: LiveStats, rng: random.Random
) -> list[int]:
    ids = [c.id for c in _by_priority(candidates)]
    shift = stats.rr_counter % len(ids)
    return ids[shift:] + ids[:shift]


def _least_latency(
    candidates: Sequence[Candidate], stats: LiveStats, rng: random.Random
) -> list[int]:
    known = {
        c.id: latency
        for c in candidates
        if (latency := _usable(stats.latency_ms.get(c.id))) is not None
    }
    # An unmeasured deployment ranks just ahead of the median: it gets traffic (and so a
    # measurement) instead of losing every tie to an equally fast, already-measured one.
    default = statistics.median(known.values()) - 1e-6 if known else 0.0
    return _ascending(candidates, lambda c: known.get(c.id, default))


def _lowest_cost(
    candidates: Sequence[Candidate], stats: LiveStats, rng: random.Random
) -> list[int]:
    return _ascending(candidates, lambda c: _finite_or(c.est_cost, math.inf))


def _least_busy(candidates: Sequence[Candidate], stats: LiveStats, rng: random.Random) -> list[int]:
    return _ascending(candidates, lambda c: max(stats.inflight.get(c.id, 0), 0))


def _ascending(candidates: Sequence[Candidate], metric: Callable[[Candidate], float]) -> list[int]:
    return [c.id for c in sorted(candidates, key=lambda c: (metric(c), c.priority, c.id))]


def _usable(value: float | None) -> float | None:
    """A latency that can be compared meaningfully (finite, not negative), else None."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _finite_or(value: float, default: float) -> float:
    # NaN would make the sort order arbitrary; an unusable estimate ranks last instead.
    return float(value) if math.isfinite(value) else default


_Ordering = Callable[[Sequence[Candidate], LiveStats, random.Random], list[int]]

_ORDERINGS: dict[Strategy, _Ordering] = {
    Strategy.PRIORITY: _priority,
    Strategy.WEIGHTED: _weighted,
    Strategy.ROUND_ROBIN: _round_robin,
    Strategy.LEAST_LATENCY: _least_latency,
    Strategy.LOWEST_COST: _lowest_cost,
    Strategy.LEAST_BUSY: _least_busy,
}
