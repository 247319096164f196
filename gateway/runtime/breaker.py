"""Circuit breakers per model deployment, shared by every process through Redis.

State machine (per deployment):

    CLOSED --(window has >= min_requests calls and failures/total >= failure_ratio)--> OPEN
    OPEN   --(open_s elapsed; computed lazily, nothing runs on a timer)-------------> HALF_OPEN
    HALF_OPEN: exactly one caller, across all processes, gets a probe permit (SET NX with a
               TTL of probe_ttl_s, so a prober that crashes does not wedge the breaker); every
               other caller is refused.
    HALF_OPEN --(probe succeeds)--> CLOSED, counts reset
    HALF_OPEN --(probe fails)-----> OPEN for another open_s

While OPEN or HALF_OPEN, outcomes of calls admitted earlier (stragglers) are ignored: they
describe the deployment before it tripped, and only the probe decides what happens next.

Redis keys, all under the `{dep:<id>}` hash tag so one script touches one Cluster slot:

    sb:{dep:<id>}:breaker:counts  hash  "<bucket>:s" / "<bucket>:f" -> successes / failures;
                                        <bucket> = server-time ms // (window_s*1000/buckets).
                                        Expires one window after the last write.
    sb:{dep:<id>}:breaker:open    str   server-time ms at which OPEN becomes HALF_OPEN; absent
                                        means CLOSED. Expires idle_ttl_s after open_s ends, so
                                        an idle deployment leaves nothing behind.
    sb:{dep:<id>}:breaker:probe   str   the half-open probe permit (PX probe_ttl_s).

Time comes from Redis (`TIME`) inside the scripts, so processes with skewed clocks agree.
`admit` and `record` are one EVALSHA each; `states` is one pipelined round trip.

The breaker protects latency, not money: when Redis fails or is slow (beyond
`redis_timeout_s`), `admit` lets the call through and `record` does nothing, with a warning at
most every 10 s per process; for `outage_skip_s` afterwards the instance does not even ask
Redis, so an outage does not add a timeout to every gateway call.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from switchboard.redis_client import LuaScript, redis_async, redis_sync

logger = logging.getLogger(__name__)

# Failures that mean "Redis is unavailable", as opposed to a bug in this module.
_UNAVAILABLE = (RedisError, OSError, TimeoutError)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    """Thresholds of every breaker; durations in seconds (fractions allowed)."""

    window_s: float = 30
    buckets: int = 6
    min_requests: int = 5
    failure_ratio: float = 0.5
    open_s: float = 15
    probe_ttl_s: float = 10
    # How long the OPEN marker of a deployment nobody calls survives after open_s ends;
    # when it expires the breaker is simply CLOSED again.
    idle_ttl_s: float = 3600
    # Bound on one breaker round trip: a sick Redis must not add seconds to every call.
    redis_timeout_s: float = 0.5
    # After Redis fails, this process answers "allowed" without asking it for this long, so
    # an outage costs one timeout per interval instead of one per gateway call.
    outage_skip_s: float = 1.0

    def __post_init__(self) -> None:
        if self.buckets < 1 or self.min_requests < 1:
            raise ValueError("buckets and min_requests must be at least 1")
        if not 0 < self.failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        durations = (self.window_s, self.open_s, self.probe_ttl_s, self.idle_ttl_s)
        if min(durations) <= 0 or self.redis_timeout_s <= 0 or self.outage_skip_s < 0:
            raise ValueError("durations must be positive")

    @property
    def bucket_ms(self) -> int:
        return max(int(self.window_s * 1000) // self.buckets, 1)


@dataclass(frozen=True)
class Admission:
    allowed: bool
    state: BreakerState
    probe: bool  # True when this caller holds the half-open permit and must report back


_ALLOWED_CLOSED = Admission(allowed=True, state=BreakerState.CLOSED, probe=False)

# KEYS: open, probe. ARGV: probe_ttl_ms. Returns {allowed 0/1, state, probe 0/1}.
_ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reopen_at = tonumber(redis.call('GET', KEYS[1]))
if not reopen_at then
  return {1, 'closed', 0}
end
if now < reopen_at then
  return {0, 'open', 0}
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then
  return {1, 'half_open', 1}
end
return {0, 'half_open', 0}
"""

# KEYS: counts, open, probe.
# ARGV: success 0/1, probe 0/1, bucket_ms, buckets, min_requests, failure_ratio, open_ms,
#       idle_ms. Returns the state after recording.
_RECORD_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local success = ARGV[1] == '1'
local bucket_ms = tonumber(ARGV[3])
local buckets = tonumber(ARGV[4])
local open_ms = tonumber(ARGV[7])
local idle_ms = tonumber(ARGV[8])

local function trip()
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('SET', KEYS[2], string.format('%d', now + open_ms), 'PX',
             string.format('%d', open_ms + idle_ms))
  return 'open'
end

local reopen_at = tonumber(redis.call('GET', KEYS[2]))
if reopen_at then
  if now < reopen_at then
    return 'open'
  end
  if ARGV[2] ~= '1' then
    return 'half_open'
  end
  if success then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
    return 'closed'
  end
  return trip()
end

local bucket = math.floor(now / bucket_ms)
redis.call('HINCRBY', KEYS[1], string.format('%d', bucket) .. (success and ':s' or ':f'), 1)
redis.call('PEXPIRE', KEYS[1], bucket_ms * (buckets + 1))

local oldest = bucket - buckets + 1
local total, failures, stale = 0, 0, {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local name = fields[i]
  local sep = string.find(name, ':', 1, true)
  local b = sep and tonumber(string.sub(name, 1, sep - 1))
  if not b or b < oldest then
    stale[#stale + 1] = name
  else
    local n = tonumber(fields[i + 1])
    total = total + n
    if string.sub(name, sep + 1) == 'f' then
      failures = failures + n
    end
  end
end
if #stale > 0 then
  redis.call('HDEL', KEYS[1], unpack(stale))
end

if total >= tonumber(ARGV[5]) and failures >= tonumber(ARGV[6]) * total then
  return trip()
end
return 'closed'
"""


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


_unavailable_warning = _WarningThrottle(10.0)
_admit_script = LuaScript(_ADMIT_LUA)
_record_script = LuaScript(_RECORD_LUA)


def breaker_keys(deployment_id: int) -> tuple[str, str, str]:
    """The (counts, open, probe) keys of one deployment."""
    prefix = f"sb:{{dep:{int(deployment_id)}}}:breaker"
    return f"{prefix}:counts", f"{prefix}:open", f"{prefix}:probe"


def _state_from(reopen_at: Any, now_ms: int) -> BreakerState:
    if reopen_at is None:
        return BreakerState.CLOSED
    try:
        deadline = int(reopen_at)
    except (TypeError, ValueError):
        return BreakerState.CLOSED  # same reading as the scripts' tonumber() returning nil
    return BreakerState.OPEN if now_ms < deadline else BreakerState.HALF_OPEN


def _time_ms(server_time: tuple[int, int]) -> int:
    seconds, micros = server_time
    return int(seconds) * 1000 + int(micros) // 1000


def _warn_unavailable(operation: str, exc: BaseException) -> None:
    _unavailable_warning.warn(
        "Circuit breaker %s failed open: Redis unavailable (%s: %s)",
        operation,
        type(exc).__name__,
        exc,
    )


class CircuitBreaker:
    """Admission and outcome recording for deployments; one instance serves all of them.

    The client factories are called on every use: `redis_async()` hands out the client bound
    to the running event loop. Tests inject others to simulate a second process or an outage.
    """

    def __init__(
        self,
        config: BreakerConfig = BreakerConfig(),
        *,
        client_factory: Callable[[], aioredis.Redis] = redis_async,
        sync_client_factory: Callable[[], redis.Redis] = redis_sync,
    ) -> None:
        self.config = config
        self.client_factory = client_factory
        self.sync_client_factory = sync_client_factory
        self._skip_redis_until = 0.0  # time.monotonic() deadline of the outage skip
        self._record_args = (
            config.bucket_ms,
            config.buckets,
            config.min_requests,
            repr(float(config.failure_ratio)),
            _ms(config.open_s),
            _ms(config.idle_ttl_s),
        )

    async def admit(self, deployment_id: int) -> Admission:
        """May a call go to this deployment now? Takes the probe permit when half-open."""
        if self._skipping_redis():
            return _ALLOWED_CLOSED
        _, open_key, probe_key = breaker_keys(deployment_id)
        try:
            async with asyncio.timeout(self.config.redis_timeout_s):
                allowed, state, probe = await _admit_script.run(
                    self.client_factory(), (open_key, probe_key), (_ms(self.config.probe_ttl_s),)
                )
        except _UNAVAILABLE as exc:
            self._redis_failed("admit", exc)
            return _ALLOWED_CLOSED
        return Admission(allowed=bool(allowed), state=BreakerState(_text(state)), probe=bool(probe))

    async def record(
        self, deployment_id: int, *, success: bool, probe: bool = False
    ) -> BreakerState:
        """Count one call's outcome; `probe=True` when the caller's Admission had the permit."""
        if self._skipping_redis():
            return BreakerState.CLOSED
        args = (int(success), int(probe), *self._record_args)
        try:
            async with asyncio.timeout(self.config.redis_timeout_s):
                state = await _record_script.run(
                    self.client_factory(), breaker_keys(deployment_id), args
                )
        except _UNAVAILABLE as exc:
            self._redis_failed("record", exc)
            return BreakerState.CLOSED
        return BreakerState(_text(state))

    async def states(self, deployment_ids: Sequence[int]) -> dict[int, BreakerState]:
        """Read-only states of many deployments in one round trip; never takes a probe permit."""
        if not deployment_ids:
            return {}
        if self._skipping_redis():
            return dict.fromkeys(deployment_ids, BreakerState.CLOSED)
        try:
            pipe = self.client_factory().pipeline(transaction=False)
            _queue_state_reads(pipe, deployment_ids)
            async with asyncio.timeout(self.config.redis_timeout_s):
                replies = await pipe.execute()
        except _UNAVAILABLE as exc:
            self._redis_failed("states", exc)
            return dict.fromkeys(deployment_ids, BreakerState.CLOSED)
        return _states_from_replies(deployment_ids, replies)

    def states_sync(self, deployment_ids: Sequence[int]) -> dict[int, BreakerState]:
        """`states` for synchronous code (the console)."""
        if not deployment_ids:
            return {}
        try:
            pipe = self.sync_client_factory().pipeline(transaction=False)
            _queue_state_reads(pipe, deployment_ids)
            replies = pipe.execute()
        except _UNAVAILABLE as exc:
            _warn_unavailable("states", exc)
            return dict.fromkeys(deployment_ids, BreakerState.CLOSED)
        return _states_from_replies(deployment_ids, replies)

    async def reset(self, deployment_id: int) -> None:
        """Force CLOSED with empty counts (an admin action, so Redis errors do raise)."""
        await self.client_factory().delete(*breaker_keys(deployment_id))

    def _skipping_redis(self) -> bool:
        return time.monotonic() < self._skip_redis_until

    def _redis_failed(self, operation: str, exc: BaseException) -> None:
        self._skip_redis_until = time.monotonic() + self.config.outage_skip_s
        _warn_unavailable(operation, exc)


def _queue_state_reads(pipe: Any, deployment_ids: Sequence[int]) -> None:
    # The server's clock, in the same round trip, so OPEN vs HALF_OPEN matches the scripts.
    pipe.time()
    for deployment_id in deployment_ids:
        pipe.get(breaker_keys(deployment_id)[1])


def _states_from_replies(
    deployment_ids: Sequence[int], replies: Sequence[Any]
) -> dict[int, BreakerState]:
    now_ms = _time_ms(replies[0])
    return {
        deployment_id: _state_from(reopen_at, now_ms)
        for deployment_id, reopen_at in zip(deployment_ids, replies[1:], strict=True)
    }


def _ms(seconds: float) -> int:
    return max(round(seconds * 1000), 1)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class OpenBreakers:
    """This process's recent knowledge of open breakers, for routing to drop them without
    a Redis round trip. An entry lives `ttl_s` (short), after which the executor's next
    admission asks Redis again — which is also how a half-open probe gets through."""

    def __init__(self, ttl_s: float = 1.0) -> None:
        self.ttl_s = ttl_s
        self._until: dict[int, float] = {}

    def note(self, deployment_id: int, *, open_: bool) -> None:
        if open_:
            self._until[deployment_id] = time.monotonic() + self.ttl_s
        elif self._until:
            self._until.pop(deployment_id, None)

    def current(self) -> frozenset[int]:
        if not self._until:
            return frozenset()
        now = time.monotonic()
        for deployment_id in [d for d, until in self._until.items() if until <= now]:
            del self._until[deployment_id]
        return frozenset(self._until)
