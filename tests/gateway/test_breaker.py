"""Circuit breaker against real Redis: tripping, half-open probing, windows, sharing, outages.

Durations are shortened through the config (tens to hundreds of milliseconds) rather than
faked, so the Lua scripts run on Redis's own clock exactly as in production.
"""

import asyncio
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway.runtime import breaker as breaker_module
from gateway.runtime.breaker import (
    Admission,
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    LuaScript,
    breaker_keys,
)
from switchboard.redis_client import redis_sync

T = TypeVar("T")

FAST = BreakerConfig(
    window_s=2, buckets=4, min_requests=5, failure_ratio=0.5, open_s=0.4, probe_ttl_s=0.6
)
OPEN_WAIT_S = FAST.open_s + 0.15


def run(scenario: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """Run an async scenario on a fresh event loop with its own Redis client, then close it."""

    async def main() -> T:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            return await scenario(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def bound(client: aioredis.Redis, config: BreakerConfig = FAST) -> CircuitBreaker:
    return CircuitBreaker(config, client_factory=lambda: client)


async def trip(breaker: CircuitBreaker, deployment_id: int) -> None:
    for _ in range(breaker.config.min_requests):
        await breaker.record(deployment_id, success=False)
    assert (await breaker.admit(deployment_id)).state is BreakerState.OPEN


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def deployment_id() -> Iterator[Callable[[], int]]:
    """Hands out deployment ids no one else uses (so each test owns its `sb:{dep:<id>}` keys),
    and deletes those keys afterwards."""
    base = random.randrange(10**12, 10**13) * 100
    issued: list[int] = []

    def next_id() -> int:
        issued.append(base + len(issued))
        return issued[-1]

    yield next_id
    keys = [key for dep in issued for key in breaker_keys(dep)]
    if keys:
        redis_sync().delete(*keys)


# --- tripping --------------------------------------------------------------------------------


def test_opens_when_the_failure_ratio_is_crossed_with_enough_requests(deployment_id) -> None:
    dep = deployment_id()

    async def scenario(client: aioredis.Redis) -> None:
        breaker = bound(client)
        for success in (True, True, True, False, False):
            assert await breaker.record(dep, success=success) is BreakerState.CLOSED
        # 2 failures of 5 is below the 0.5 ratio.
        assert await breaker.admit(dep) == Admission(True, BreakerState.CLOSED, False)

        # 3 of 6 reaches it.
        assert await breaker.record(dep, success=False) is BreakerState.OPEN
        assert await breaker.admit(dep) == Admission(False, BreakerState.OPEN, False)

    run(scenario)


def test_does_not_open_below_min_requests(deployment_id) -> None:
    dep = deployment_id()

    async def scenario(client: aioredis.Redis) -> None:
        breaker = bound(client)
        for _ in range(FAST.min_requests - 1):
            assert await breaker.record(dep, success=False) is BreakerState.CLOSED
        assert (await breaker.admit(dep)).allowed
        # The boundary: the min_requests-th failure is the one that trips it.
        assert await breaker.record(dep, success=False) is BreakerState.OPEN

    run(scenario)


def test_window_expiry_forgets_the_failures_of_an_idle_deployment(deployment_id) -> None:
    dep = deployment_id()
    config = BreakerConfig(window_s=0.8, buckets=4, min_requests=5, open_s=0.4)

    async def scenario(client: aioredis.Redis) -> None:
        breaker = bound(client, config)
        for _ in range(config.min_requests - 1):
            await breaker.record(dep, success=False)
        await asyncio.sleep(config.window_s + config.bucket_ms / 1000 + 0.1)
        # Had the old four been remembered, this fifth failure would trip the breaker.
        assert await breaker.record(dep, success=False) is BreakerState.CLOSED
        assert (await breaker.admit(dep)).allowed

    run(scenario)


def test_old_buckets_age_out_while_the_deployment_stays_busy(deployment_id) -> None:
    dep = deployment_id()
    # 200 ms buckets; the counts key itself stays alive because calls keep arriving.
    config = BreakerConfig(window_s=0.8, buckets=4, min_requests=5, open_s=0.4)

    async def scenario(client: aioredis.Redis) -> None:
        breaker = bound(client, config)
        for _ in range(3):
            await breaker.record(dep, success=False)
        await asyncio.sleep(0.6)
        await breaker.record(dep, success=True)
        await asyncio.sleep(0.45)  # the three failures are now more than a window old
        # The key is still alive, so it is the buckets (not the key's TTL) that forget.
        assert await client.exists(breaker_keys(dep)[0]) == 1
        # Remembered, they would make 4 failures of 5 and trip the breaker.
        assert await breaker.record(dep, success=False) is BreakerState.CLOSED

    run(scenario)


# --- half-open -------------------------------------------------------------------------------


def test_half_open_grants_exactly_one_probe_among_concurrent_callers(deployment_id) -> None:
    dep = deployment_id()

    async def scenario(client: aioredis.Redis) -> None:
        breaker = bound(client)
        await trip(breaker, dep)
        await asyncio.sleep(OPEN_WAIT_S)

        admissions = await asyncio.gather(*(breaker.admit(dep) for _ in range(20)))

        assert [a for a in admissions if a.allowed] == [
            Admission(True, BreakerState.HALF_OPEN, True)
        ]
        assert all(a.state is BreakerState.HALF_OPEN for a in admissions)
        assert sum(a.probe for a in admissions) == 1

    run(scenario)


def test_probe_success_closes_with_counts_reset(deployment_id) -> None:
    dep = deployment_id()

    async def scenario(client: aioredis.Redis) -> None:
        breaker = bound(client)
        await trip(breaker, dep)
        await asyncio.sleep(OPEN_WAIT_S)
        admission = await breaker.admit(dep)
        assert admission.probe

        assert await breaker.record(dep, success=True, probe=True) is BreakerState.CLOSED
        assert await breaker.admit(dep) == Admission(True, BreakerState.CLOSED, False)
        # The failures that tripped it are still inside window_s; were they kept, one more
        # would reopen the breaker.
        assert await breaker.record(dep, success=False) is BreakerState.CLOSED

    run(scenario)


def test_probe_failure_reopens_for_open_s(deployment_id) -> None:
    dep = deployment_id()

    async def scenario(client: aioredis.Redis) -> None:
        breaker = bound(client)
        await trip(breaker, dep)
        await asyncio.sleep(OPEN_WAIT_S)
        assert (await breaker.admit(dep)).probe

        assert await breaker.record(dep, success=False, probe=True) is BreakerState.OPEN
        assert await breaker.admit(dep) == Admission(False, BreakerState.OPEN, False)

        await asyncio.sleep(OPEN_WAIT_S)
        assert await breaker.admit(dep) == Admission(True, BreakerState.HALF_OPEN, True)

    run(scenario)


def test_a_crashed_probers_permit_expires(deployment_id) -> None:
    dep = deployment_id()

    async def scenario(client: aioredis.Redis) -> None:
        breaker = bound(client)
        await trip(breaker, dep)
        await asyncio.sleep(OPEN_WAIT_S)
        assert (await breaker.admit(dep)).probe  # ...and this prober never reports back
        assert not (await breaker.admit(dep)).allowed

        await asyncio.sleep(FAST.probe_ttl_s + 0.1)
        assert await breaker.admit(dep) == Admission(True, BreakerState.HALF_OPEN, True)

    run(scenario)


def test_outcomes_of_calls_admitted_before_the_trip_are_ignored(deployment_id) -> None:
    dep = deployment_id()

    async def scenario(client: aioredis.Redis) -> None:
        breaker = bound(client)
        await trip(breaker, dep)
        assert await breaker.record(dep, success=True) is BreakerState.OPEN
        await asyncio.sleep(OPEN_WAIT_S)
        # Only the probe's outcome may close a half-open breaker.
        assert await breaker.record(dep, success=True) is BreakerState.HALF_OPEN
        assert (await breaker.admit(dep)).probe

    run(scenario)


# --- sharing and reads -----------------------------------------------------------------------


def test_two_processes_see_the_same_state(deployment_id) -> None:
    dep = deployment_id()

    async def scenario(client: aioredis.Redis) -> None:
        other_client = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            web1, web2 = bound(client), bound(other_client)
            await trip(web1, dep)
            assert await web2.admit(dep) == Admission(False, BreakerState.OPEN, False)
            assert await web2.states([dep]) == {dep: BreakerState.OPEN}

            await asyncio.sleep(OPEN_WAIT_S)
            admissions = await asyncio.gather(
                *(breaker.admit(dep) for breaker in (web1, web2) * 10)
            )
            probes = [i for i, a in enumerate(admissions) if a.probe]
            assert len(probes) == 1

            prober = (web1, web2)[probes[0] % 2]
            bystander = web2 if prober is web1 else web1
            await prober.record(dep, success=True, probe=True)
            assert await bystander.admit(dep) == Admission(True, BreakerState.CLOSED, False)
        finally:
            await other_client.aclose()

    run(scenario)


def test_states_reads_many_deployments_and_never_takes_the_probe(deployment_id) -> None:
    closed, open_, half_open = deployment_id(), deployment_id(), deployment_id()

    async def scenario(client: aioredis.Redis) -> None:
        breaker = bound(client)
        await trip(breaker, half_open)
        await asyncio.sleep(OPEN_WAIT_S)
        await trip(breaker, open_)

        for _ in range(3):
            assert await breaker.states([closed, open_, half_open]) == {
                closed: BreakerState.CLOSED,
                open_: BreakerState.OPEN,
                half_open: BreakerState.HALF_OPEN,
            }
        assert await breaker.admit(half_open) == Admission(True, BreakerState.HALF_OPEN, True)
        assert await breaker.states([]) == {}

    run(scenario)


def test_states_sync_agrees_with_the_async_view(deployment_id) -> None:
    closed, open_ = deployment_id(), deployment_id()

    async def scenario(client: aioredis.Redis) -> None:
        await trip(bound(client), open_)

    run(scenario)
    # The default sync client: the console's path.
    assert CircuitBreaker(FAST).states_sync([closed, open_]) == {
        closed: BreakerState.CLOSED,
        open_: BreakerState.OPEN,
    }


def test_reset_closes_the_breaker_and_forgets_counts(deployment_id) -> None:
    dep = deployment_id()

    async def scenario(client: aioredis.Redis) -> None:
        breaker = bound(client)
        await trip(breaker, dep)
        await breaker.reset(dep)
        assert await breaker.admit(dep) == Admission(True, BreakerState.CLOSED, False)
        assert await client.exists(*breaker_keys(dep)) == 0

    run(scenario)


def test_every_key_expires_so_idle_deployments_leave_nothing(deployment_id) -> None:
    counted, tripped = deployment_id(), deployment_id()

    async def scenario(client: aioredis.Redis) -> None:
        breaker = bound(client)
        await breaker.record(counted, success=False)
        await trip(breaker, tripped)
        await asyncio.sleep(OPEN_WAIT_S)
        assert (await breaker.admit(tripped)).probe

        keys = [k async for k in client.scan_iter(match=f"sb:{{dep:{counted}}}:*")]
        keys += [k async for k in client.scan_iter(match=f"sb:{{dep:{tripped}}}:*")]
        assert len(keys) == 3  # counts of one; open marker and probe permit of the other
        for key in keys:
            assert await client.pttl(key) > 0, key

    run(scenario)


def test_admit_and_record_are_one_round_trip_each(deployment_id) -> None:
    dep = deployment_id()

    class CountingRedis(aioredis.Redis):
        commands: list[str] = []

        async def execute_command(self, *args: Any, **options: Any) -> Any:
            self.commands.append(str(args[0]))
            return await super().execute_command(*args, **options)

    async def scenario(_: aioredis.Redis) -> None:
        client = CountingRedis.from_url(settings.REDIS_URL)
        try:
            breaker = bound(client)
            await breaker.admit(dep)  # loads the scripts if this server has not seen them
            await breaker.record(dep, success=True)
            client.commands.clear()

            await breaker.admit(dep)
            await breaker.record(dep, success=False)
            assert client.commands == ["EVALSHA", "EVALSHA"]
        finally:
            await client.aclose()

    run(scenario)


def test_lua_script_falls_back_to_eval_when_the_server_lacks_it() -> None:
    script = LuaScript(f"return 7 -- {uuid.uuid4()}")  # a SHA no server has cached

    async def scenario(client: aioredis.Redis) -> None:
        assert await client.script_exists(script.sha) == [False]
        assert await script.run(client, [], []) == 7
        assert await client.script_exists(script.sha) == [True]
        assert await script.run(client, [], []) == 7

    run(scenario)


# --- outages ---------------------------------------------------------------------------------


def test_redis_unreachable_fails_open_and_warns_once(deployment_id, caplog, monkeypatch) -> None:
    monkeypatch.setattr(breaker_module, "_unavailable_warning", breaker_module._WarningThrottle(10))
    dep = deployment_id()
    port = closed_port()

    async def scenario(_: aioredis.Redis) -> tuple[float, float]:
        dead = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
        try:
            breaker = bound(dead)
            started = time.monotonic()
            assert await breaker.admit(dep) == Admission(True, BreakerState.CLOSED, False)
            first = time.monotonic() - started
            assert await breaker.record(dep, success=False) is BreakerState.CLOSED
            assert await breaker.record(dep, success=True, probe=True) is BreakerState.CLOSED
            assert await breaker.states([dep, dep + 1]) == {
                dep: BreakerState.CLOSED,
                dep + 1: BreakerState.CLOSED,
            }
            assert await breaker.admit(dep) == Admission(True, BreakerState.CLOSED, False)
            rest = time.monotonic() - started - first
            # Another instance in the same process fails too, but the log is not flooded.
            assert (await bound(dead).admit(dep)).allowed
            return first, rest
        finally:
            await dead.aclose()

    with caplog.at_level(logging.WARNING, logger=breaker_module.__name__):
        first, rest = run(scenario)
    assert first < FAST.redis_timeout_s + 0.3
    # Within outage_skip_s the breaker does not wait on Redis again.
    assert rest < 0.05
    warnings = [r for r in caplog.records if r.name == breaker_module.__name__]
    assert len(warnings) == 1
    assert "failed open" in warnings[0].getMessage()


def test_redis_is_asked_again_after_the_outage_skip(deployment_id) -> None:
    dep = deployment_id()
    config = BreakerConfig(
        window_s=2, min_requests=5, open_s=30, redis_timeout_s=0.3, outage_skip_s=0.4
    )

    async def scenario(client: aioredis.Redis) -> None:
        await trip(bound(client, config), dep)
        dead = aioredis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=0.2)
        current = [dead]
        breaker = CircuitBreaker(config, client_factory=lambda: current[0])
        try:
            assert (await breaker.admit(dep)).allowed  # Redis down: fail open
            current[0] = client  # Redis is back...
            assert (await breaker.admit(dep)).allowed  # ...but not asked yet
            await asyncio.sleep(config.outage_skip_s + 0.05)
            assert await breaker.admit(dep) == Admission(False, BreakerState.OPEN, False)
        finally:
            await dead.aclose()

    run(scenario)


def test_redis_unreachable_states_sync_fails_open(deployment_id) -> None:
    dep = deployment_id()
    dead = redis.Redis(
        host="127.0.0.1",
        port=closed_port(),
        socket_connect_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )
    breaker = CircuitBreaker(FAST, sync_client_factory=lambda: dead)
    assert breaker.states_sync([dep]) == {dep: BreakerState.CLOSED}


def test_redis_that_hangs_fails_open_within_the_timeout(deployment_id) -> None:
    dep = deployment_id()
    config = BreakerConfig(redis_timeout_s=0.2, outage_skip_s=0)

    async def never_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # swallow commands until the client hangs up
        writer.close()

    async def scenario(_: aioredis.Redis) -> float:
        server = await asyncio.start_server(never_reply, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # Its own socket timeout is long: only the breaker's bound can end the wait quickly.
        stuck = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
        try:
            breaker = bound(stuck, config)
            started = time.monotonic()
            assert await breaker.admit(dep) == Admission(True, BreakerState.CLOSED, False)
            assert await breaker.record(dep, success=False) is BreakerState.CLOSED
            assert await breaker.states([dep]) == {dep: BreakerState.CLOSED}
            return time.monotonic() - started
        finally:
            await stuck.aclose()
            server.close()
            await server.wait_closed()

    assert run(scenario) < 3 * config.redis_timeout_s + 0.5


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="failure_ratio"):
        BreakerConfig(failure_ratio=0)
    with pytest.raises(ValueError, match="at least 1"):
        BreakerConfig(buckets=0)
    with pytest.raises(ValueError, match="positive"):
        BreakerConfig(open_s=0)
