"""Live routing numbers shared by every web process through Redis.

The strategies in `gateway.routing.strategies` rank deployments by latency, calls in flight
and a round-robin counter; keeping those in Redis makes every process rank alike.

Redis keys (per deployment under the `{dep:<id>}` hash tag, like the circuit breaker's, so
one script touches one Cluster slot):

    sb:{dep:<id>}:lat   str  EWMA of the call latency in ms ("%.17g" float). The first sample
                             sets it, then value = alpha * sample + (1 - alpha) * value.
                             Expires `latency_ttl_s` after the last sample, so a deployment
                             idle for long is "unknown" again and gets re-measured.
    sb:{dep:<id>}:busy  int  calls in flight. INCR when a call starts (and EXPIRE
                             `busy_ttl_s`), DECR when it ends, deleted instead of going to 0
                             or below. The TTL is the safety net for a process that crashed
                             mid-call: its leaked increments vanish once the deployment has
                             been idle for `busy_ttl_s`.
    sb:{rr:<group>}:n   int  round-robin counter of a routing group; INCR by every `read`
                             that names the group. Expires after `rr_ttl_s` without reads.

`read` is one pipelined round trip (the keys live in different slots, so a non-transactional
pipeline of GETs rather than MGET); `started` and `finished` are one EVALSHA each.

Like the breaker, this protects latency, not accuracy: when Redis fails or is slower than
`timeout_s`, `read` returns empty stats (the strategies then order by priority) and
`started`/`finished` do nothing, with a warning at most every 10 s per process; for
`outage_skip_s` afterwards Redis is not even asked. Nothing here raises on a Redis problem.
A `started` or `finished` lost that way skews a busy counter until it drains to 0 (floored)
or expires.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.routing.strategies import EMPTY_STATS, LiveStats
from gateway.runtime.breaker import LuaScript
from switchboard.redis_client import redis_async

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Failures that mean "Redis is unavailable", as opposed to a bug in this module.
_UNAVAILABLE = (RedisError, OSError, TimeoutError)

WARNING_INTERVAL_S = 10.0

# KEYS: busy. ARGV: ttl_ms. Returns the new count.
_STARTED_LUA = """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
"""

# KEYS: busy, lat. ARGV: latency_ms ('' for none), alpha, lat_ttl_ms.
# Returns the new EWMA as a string, or false when no sample was given.
_FINISHED_LUA = """
local busy = tonumber(redis.call('GET', KEYS[1]))
if busy and busy > 1 then
  redis.call('DECR', KEYS[1])
elseif busy then
  redis.call('DEL', KEYS[1])
end
if ARGV[1] == '' then
  return false
end
local sample = tonumber(ARGV[1])
local alpha = tonumber(ARGV[2])
local value = sample
local old = tonumber(redis.call('GET', KEYS[2]))
-- tonumber accepts 'nan' and 'inf'; such a stored value is restarted, not blended.
if old and old == old and old >= 0 and old < math.huge then
  value = alpha * sample + (1 - alpha) * old
end
local text = string.format('%.17g', value)
redis.call('SET', KEYS[2], text, 'PX', ARGV[3])
return text
"""

_started_script = LuaScript(_STARTED_LUA)
_finished_script = LuaScript(_FINISHED_LUA)


def latency_key(deployment_id: int) -> str:
    return f"sb:{{dep:{int(deployment_id)}}}:lat"


def busy_key(deployment_id: int) -> str:
    return f"sb:{{dep:{int(deployment_id)}}}:busy"


def rr_key(group: str) -> str:
    return f"sb:{{rr:{group}}}:n"


class _WarningThrottle:
    """At most one log line per interval: an outage must not flood the logs on every call."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: float | None = None

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval_s:
            return
        self._last = now
        logger.warning(message, *args)


_unavailable_warning = _WarningThrottle(WARNING_INTERVAL_S)


class LiveStatsStore:
    """Reads and updates the live stats of deployments; one instance serves all of them.

    `client_factory` is called on every use: `redis_async()` hands out the client bound to the
    running event loop. Tests inject others to simulate a second process or an outage.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.2,
        client_factory: Callable[[], aioredis.Redis] = redis_async,
        timeout_s: float = 0.25,
        busy_ttl_s: float = 300,
        latency_ttl_s: float = 3600,
        rr_ttl_s: float = 86400,
        outage_skip_s: float = 1.0,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        if min(timeout_s, busy_ttl_s, latency_ttl_s, rr_ttl_s) <= 0 or outage_skip_s < 0:
            raise ValueError("durations must be positive")
        self.alpha = alpha
        self.client_factory = client_factory
        self.timeout_s = timeout_s
        self._busy_ttl_ms = _ms(busy_ttl_s)
        self._latency_ttl_ms = _ms(latency_ttl_s)
        self._rr_ttl_ms = _ms(rr_ttl_s)
        self.outage_skip_s = outage_skip_s
        self._skip_redis_until = 0.0  # time.monotonic() deadline of the outage skip

    async def read(self, deployment_ids: Sequence[int], *, rr_group: str | None) -> LiveStats:
        """Latency and in-flight count of each deployment, and (with `rr_group`) the group's
        round-robin counter, advanced by one: successive reads see 0, 1, 2, ..."""
        if (not deployment_ids and rr_group is None) or self._skipping_redis():
            return EMPTY_STATS
        try:
            pipe = self.client_factory().pipeline(transaction=False)
            for deployment_id in deployment_ids:
                pipe.get(latency_key(deployment_id))
                pipe.get(busy_key(deployment_id))
            if rr_group is not None:
                pipe.incr(rr_key(rr_group))
                pipe.pexpire(rr_key(rr_group), self._rr_ttl_ms)
            async with asyncio.timeout(self.timeout_s):
                replies = await pipe.execute()
        except _UNAVAILABLE as exc:
            self._redis_failed("read", exc)
            return EMPTY_STATS
        return _stats_from_replies(deployment_ids, replies, rr_group is not None)

    async def started(self, deployment_id: int) -> None:
        """A call to the deployment began: count it in flight."""
        await self._run(
            "started", _started_script, (busy_key(deployment_id),), (self._busy_ttl_ms,)
        )

    async def finished(self, deployment_id: int, latency_ms: float | None) -> None:
        """A call that `started` ended; `latency_ms` (None when not meaningful, e.g. the call
        failed before the provider answered) feeds the EWMA. Negative or non-finite values
        are ignored."""
        sample = ""
        if latency_ms is not None and math.isfinite(latency_ms) and latency_ms >= 0:
            sample = repr(float(latency_ms))
        keys = (busy_key(deployment_id), latency_key(deployment_id))
        args = (sample, repr(float(self.alpha)), self._latency_ttl_ms)
        await self._run("finished", _finished_script, keys, args)

    async def _run(
        self, operation: str, script: LuaScript, keys: Sequence[str], args: Sequence[Any]
    ) -> None:
        if self._skipping_redis():
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await script.run(self.client_factory(), keys, args)
        except _UNAVAILABLE as exc:
            self._redis_failed(operation, exc)

    def _skipping_redis(self) -> bool:
        return time.monotonic() < self._skip_redis_until

    def _redis_failed(self, operation: str, exc: BaseException) -> None:
        self._skip_redis_until = time.monotonic() + self.outage_skip_s
        _unavailable_warning.warn(
            "Live routing stats %s skipped: Redis unavailable (%s: %s)",
            operation,
            type(exc).__name__,
            exc,
        )


def _stats_from_replies(
    deployment_ids: Sequence[int], replies: Sequence[Any], with_rr: bool
) -> LiveStats:
    latency: dict[int, float] = {}
    inflight: dict[int, int] = {}
    for index, deployment_id in enumerate(deployment_ids):
        lat = _parse(float, replies[2 * index])
        if lat is not None and math.isfinite(lat) and lat >= 0:
            latency[deployment_id] = lat
        busy = _parse(int, replies[2 * index + 1])
        if busy is not None:
            inflight[deployment_id] = max(busy, 0)
    rr_counter = 0
    if with_rr:
        rr_counter = max((_parse(int, replies[2 * len(deployment_ids)]) or 1) - 1, 0)
    return LiveStats(latency_ms=latency, inflight=inflight, rr_counter=rr_counter)


def _parse(kind: Callable[[Any], T], reply: Any) -> T | None:
    """A stored value as `kind`, or None when absent or unreadable (never raise on data)."""
    if reply is None:
        return None
    try:
        return kind(reply)
    except (TypeError, ValueError):
        return None


def _ms(seconds: float) -> int:
    return max(round(seconds * 1000), 1)
