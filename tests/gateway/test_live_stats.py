"""Live routing stats against real Redis: EWMA, busy counters, round robin, one round trip,
sharing between processes, and failing open when Redis is gone."""

import asyncio
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from django.conf import settings

from gateway.routing import live_stats as live_stats_module
from gateway.routing.live_stats import LiveStatsStore, busy_key, latency_key, rr_key
from gateway.routing.strategies import EMPTY_STATS, LiveStats
from switchboard.redis_client import redis_sync

T = TypeVar("T")


def run(scenario: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """Run an async scenario on a fresh event loop with its own Redis client, then close it."""

    async def main() -> T:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            return await scenario(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def bound(client: aioredis.Redis, **options: Any) -> LiveStatsStore:
    return LiveStatsStore(client_factory=lambda: client, **options)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Ids:
    """Deployment ids and round-robin groups no one else uses, so each test owns its keys."""

    def __init__(self) -> None:
        self.base = random.randrange(10**12, 10**13) * 100
        self.deployments: list[int] = []
        self.groups: list[str] = []

    def deployment(self) -> int:
        self.deployments.append(self.base + len(self.deployments))
        return self.deployments[-1]

    def group(self) -> str:
        self.groups.append(f"test-{uuid.uuid4().hex}")
        return self.groups[-1]


@pytest.fixture
def ids() -> Iterator[_Ids]:
    issued = _Ids()
    yield issued
    keys = [key for dep in issued.deployments for key in (latency_key(dep), busy_key(dep))]
    keys += [rr_key(group) for group in issued.groups]
    if keys:
        redis_sync().delete(*keys)


# --- keys ------------------------------------------------------------------------------------


def test_key_layout_uses_one_hash_tag_per_deployment_and_group() -> None:
    assert latency_key(42) == "sb:{dep:42}:lat"
    assert busy_key(42) == "sb:{dep:42}:busy"
    assert rr_key("gpt-4o") == "sb:{rr:gpt-4o}:n"


# --- latency EWMA ----------------------------------------------------------------------------


def test_ewma_first_sample_sets_it_then_blends_across_processes(ids: _Ids) -> None:
    dep = ids.deployment()

    async def scenario(client: aioredis.Redis) -> None:
        # Two connections and two stores: two web processes sharing Redis.
        other = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            first, second = bound(client, alpha=0.2), bound(other, alpha=0.2)
            await first.started(dep)
            await first.finished(dep, 100.0)
            assert (await second.read([dep], rr_group=None)).latency_ms == {dep: 100.0}

            await second.started(dep)
            await second.finished(dep, 200.0)  # 0.2 * 200 + 0.8 * 100
            assert (await first.read([dep], rr_group=None)).latency_ms[dep] == pytest.approx(120)

            await first.finished(dep, 20.0)  # 0.2 * 20 + 0.8 * 120
            read = await second.read([dep], rr_group=None)
            assert read.latency_ms[dep] == pytest.approx(100)
        finally:
            await other.aclose()

    run(scenario)


def test_finished_without_a_usable_latency_leaves_the_ewma_alone(ids: _Ids) -> None:
    dep = ids.deployment()

    async def scenario(client: aioredis.Redis) -> None:
        store = bound(client, alpha=0.5)
        await store.finished(dep, None)
        assert await client.exists(latency_key(dep)) == 0
        await store.finished(dep, 40.0)
        for unusable in (None, -1.0, float("nan"), float("inf")):
            await store.finished(dep, unusable)
        assert (await store.read([dep], rr_group=None)).latency_ms == {dep: 40.0}

    run(scenario)


def test_latency_expires_so_an_idle_deployment_is_unknown_again(ids: _Ids) -> None:
    dep = ids.deployment()

    async def scenario(client: aioredis.Redis) -> None:
        store = bound(client, latency_ttl_s=0.2)
        await store.finished(dep, 75.0)
        assert 0 < await client.pttl(latency_key(dep)) <= 200
        await asyncio.sleep(0.3)
        assert (await store.read([dep], rr_group=None)).latency_ms == {}

    run(scenario)


def test_a_corrupt_stored_latency_restarts_the_average(ids: _Ids) -> None:
    dep = ids.deployment()

    async def scenario(client: aioredis.Redis) -> None:
        store = bound(client)
        await client.set(latency_key(dep), "nan")
        assert (await store.read([dep], rr_group=None)).latency_ms == {}
        await store.finished(dep, 30.0)
        assert (await store.read([dep], rr_group=None)).latency_ms == {dep: 30.0}

    run(scenario)


# --- busy counter ----------------------------------------------------------------------------


def test_busy_counts_calls_in_flight_and_never_goes_below_zero(ids: _Ids) -> None:
    dep = ids.deployment()

    async def scenario(client: aioredis.Redis) -> None:
        store = bound(client)
        await asyncio.gather(*(store.started(dep) for _ in range(5)))
        assert (await store.read([dep], rr_group=None)).inflight == {dep: 5}

        await asyncio.gather(*(store.finished(dep, None) for _ in range(3)))
        assert (await store.read([dep], rr_group=None)).inflight == {dep: 2}

        # More ends than starts (a start lost to an outage): floored, key gone at zero.
        for _ in range(4):
            await store.finished(dep, None)
        assert await client.exists(busy_key(dep)) == 0
        assert (await store.read([dep], rr_group=None)).inflight == {}

        await store.started(dep)
        assert (await store.read([dep], rr_group=None)).inflight == {dep: 1}

    run(scenario)


def test_busy_counter_has_a_ttl_so_a_crashed_process_cannot_pin_it(ids: _Ids) -> None:
    dep = ids.deployment()

    async def scenario(client: aioredis.Redis) -> None:
        assert await client.ttl(busy_key(dep)) == -2
        await LiveStatsStore(client_factory=lambda: client).started(dep)
        assert 290 <= await client.ttl(busy_key(dep)) <= 300  # the default, 300 s

        store = bound(client, busy_ttl_s=0.2)
        await store.started(dep)  # and the process "crashes": finished never comes
        await asyncio.sleep(0.3)
        assert (await store.read([dep], rr_group=None)).inflight == {}

    run(scenario)


# --- read ------------------------------------------------------------------------------------


def test_read_maps_each_deployment_and_leaves_unknown_ones_out(ids: _Ids) -> None:
    fast, slow, busy_only, fresh = (ids.deployment() for _ in range(4))

    async def scenario(client: aioredis.Redis) -> None:
        store = bound(client)
        await store.finished(fast, 10.0)
        await store.finished(slow, 900.5)
        for _ in range(3):
            await store.started(busy_only)
        await store.started(slow)

        assert await store.read([fast, slow, busy_only, fresh], rr_group=None) == LiveStats(
            latency_ms={fast: 10.0, slow: 900.5},
            inflight={slow: 1, busy_only: 3},
            rr_counter=0,
        )
        assert await store.read([], rr_group=None) == EMPTY_STATS

    run(scenario)


def test_read_advances_the_round_robin_counter_once_per_read(ids: _Ids) -> None:
    dep = ids.deployment()
    group, other_group = ids.group(), ids.group()

    async def scenario(client: aioredis.Redis) -> None:
        first, second = bound(client), bound(client)
        counters = [(await first.read([dep], rr_group=group)).rr_counter for _ in range(3)]
        counters.append((await second.read([], rr_group=group)).rr_counter)
        assert counters == [0, 1, 2, 3]
        # Groups count separately; reads without a group do not count.
        assert (await first.read([dep], rr_group=other_group)).rr_counter == 0
        assert (await first.read([dep], rr_group=None)).rr_counter == 0
        assert (await first.read([dep], rr_group=group)).rr_counter == 4
        assert 0 < await client.ttl(rr_key(group)) <= 86400

    run(scenario)


class _CountingConnection(aioredis.Connection):
    """Counts writes to the socket: a pipeline sends all its commands in one write."""

    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        await super().send_packed_command(command, check_health)


def test_read_is_one_round_trip(ids: _Ids) -> None:
    deps = [ids.deployment() for _ in range(6)]
    group = ids.group()

    async def scenario(client: aioredis.Redis) -> None:
        for dep in deps:
            await bound(client).finished(dep, float(dep % 1000))
        pool = aioredis.ConnectionPool.from_url(
            settings.REDIS_URL, connection_class=_CountingConnection, max_connections=1
        )
        counting = aioredis.Redis(connection_pool=pool)
        try:
            await counting.ping()  # connect (and its handshake) before counting
            _CountingConnection.sends = 0
            stats = await bound(counting).read(deps, rr_group=group)
            assert _CountingConnection.sends == 1
            assert stats.latency_ms == {dep: float(dep % 1000) for dep in deps}
            assert stats.rr_counter == 0
        finally:
            await counting.aclose()

    run(scenario)


# --- Redis unavailable -----------------------------------------------------------------------


def test_redis_unreachable_fails_open_quickly_and_warns_once(
    ids: _Ids, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        live_stats_module, "_unavailable_warning", live_stats_module._WarningThrottle(10)
    )
    dep = ids.deployment()

    async def scenario(_: aioredis.Redis) -> list[float]:
        # redis-py retries a refused connection with backoff; the store's timeout bounds it.
        dead = aioredis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=0.2)
        # No outage skip, so every call really tries Redis.
        store = bound(dead, outage_skip_s=0)
        durations = []
        try:
            for call in (
                lambda: store.read([dep, dep + 1], rr_group="g"),
                lambda: store.started(dep),
                lambda: store.finished(dep, 12.0),
                lambda: store.read([dep], rr_group=None),
            ):
                started = time.monotonic()
                assert await call() in (EMPTY_STATS, None)
                durations.append(time.monotonic() - started)
        finally:
            await dead.aclose()
        return durations

    with caplog.at_level(logging.WARNING, logger=live_stats_module.__name__):
        durations = run(scenario)
    assert all(d < 0.25 + 0.15 for d in durations), durations
    warnings = [r for r in caplog.records if r.name == live_stats_module.__name__]
    assert len(warnings) == 1
    assert "Redis unavailable" in warnings[0].getMessage()


def test_a_redis_that_never_answers_costs_at_most_the_timeout(ids: _Ids) -> None:
    dep = ids.deployment()
    # A listening socket nobody accepts from: the connection opens, no reply ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]

        async def scenario(_: aioredis.Redis) -> list[float]:
            hung = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
            store = bound(hung, outage_skip_s=0)
            durations = []
            try:
                for call in (
                    lambda: store.read([dep], rr_group="g"),
                    lambda: store.started(dep),
                    lambda: store.finished(dep, 1.0),
                ):
                    started = time.monotonic()
                    result = await call()
                    durations.append(time.monotonic() - started)
                    assert result in (EMPTY_STATS, None)
            finally:
                await hung.aclose()
            return durations

        durations = run(scenario)
    assert all(d < 0.25 + 0.15 for d in durations), durations


def test_after_a_failure_redis_is_not_asked_for_outage_skip_s(ids: _Ids) -> None:
    dep = ids.deployment()

    async def scenario(client: aioredis.Redis) -> None:
        await bound(client).finished(dep, 55.0)
        dead = aioredis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=0.2)
        current = [dead]
        store = LiveStatsStore(client_factory=lambda: current[0], outage_skip_s=0.3)
        try:
            assert await store.read([dep], rr_group=None) == EMPTY_STATS  # Redis down
            current[0] = client  # Redis is back...
            assert await store.read([dep], rr_group=None) == EMPTY_STATS  # ...not asked yet
            await asyncio.sleep(0.35)
            assert (await store.read([dep], rr_group=None)).latency_ms == {dep: 55.0}
        finally:
            await dead.aclose()

    run(scenario)


@pytest.mark.parametrize(
    "options",
    [{"alpha": 0}, {"alpha": 1.5}, {"timeout_s": 0}, {"busy_ttl_s": -1}, {"outage_skip_s": -1}],
)
def test_rejects_nonsense_settings(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"alpha|durations"):
        LiveStatsStore(**options)  # type: ignore[arg-type]
