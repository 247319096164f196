"""The spend ledger and rate limits in Redis: one Lua script to admit a call, one to settle it.

Money is counted in integer nano-dollars (1e-9 USD; Redis integers are 64-bit, so a counter
holds up to $9.2 billion). Every key of a call carries its tenant's hash tag `{t:<id>}`, so
both scripts run on one Redis Cluster slot.

Per budget and period (`sb:{t:T}:bud:<budget>:<period start>`): a hash with `spent` (settled
cost), `reserved` (the sum of live reservations) and `seeded` (set once the counter was
loaded from PostgreSQL, the authority); a sorted set `…:rz` of reservations by expiry and a
hash `…:ra` of their amounts. A reservation that outlives its TTL (its process died) is
purged by the next admission, so a crash cannot pin a budget.

Rate limits are sliding-window counters (this minute's count plus the previous minute's,
weighted by how much of it is still inside the window) per API key, tenant and end user,
for requests and for tokens; a concurrency cap per key holds one expiring lease per call.

Admit (atomic): purge expired reservations; refuse if a counter is not seeded (the caller
seeds it and retries), if a hard budget would go over (`spent + reserved + amount > limit`),
if a rate limit would be exceeded or the key is at its concurrency cap; otherwise reserve,
count and lease — all or nothing. Settle (atomic): release the reservations, add the actual
cost to the budgets that apply, correct the token count, release the lease and XADD the
usage event to the tenant's stream.
"""

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

import redis.asyncio as aioredis

from analytics.usage import UsageEvent, usage_stream_key
from switchboard.redis_client import LuaScript

logger = logging.getLogger(__name__)

NANOS = Decimal(1_000_000_000)
WINDOW_MS = 60_000
# After its period ends a budget counter is kept this long (late settles, status reads).
COUNTER_GRACE_S = 7 * 24 * 3600

_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid, ttl = ARGV[1], tonumber(ARGV[2])
local nb, nl, climit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local a = 6
local unseeded = {}
for i = 1, nb do
  local h = KEYS[3 * i - 2]
  if redis.call('HEXISTS', h, 'seeded') == 0 then table.insert(unseeded, i) end
end
if #unseeded > 0 then return {2, unseeded} end
-- Budgets: purge expired reservations, then check.
local state = {}
for i = 1, nb do
  local h, rz, ra = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local expired = redis.call('ZRANGEBYSCORE', rz, '-inf', now)
  for _, m in ipairs(expired) do
    local amt = tonumber(redis.call('HGET', ra, m) or '0')
    redis.call('HDEL', ra, m)
    redis.call('ZREM', rz, m)
    redis.call('HINCRBY', h, 'reserved', -amt)
  end
  local limit, amount, hard = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
  local spent = tonumber(redis.call('HGET', h, 'spent') or '0')
  local reserved = tonumber(redis.call('HGET', h, 'reserved') or '0')
  if hard == '1' and spent + reserved + amount > limit then
    return {0, 'budget', i, tostring(spent), tostring(reserved)}
  end
  state[i] = amount
  a = a + 4
end
-- Rate limits: sliding window over this and the previous minute.
local win = 60000
local cur_w = math.floor(now / win)
local into = now % win
local remaining = {}
local lbase = 3 * nb
local largs = a
for j = 1, nl do
  local k = KEYS[lbase + j]
  local limit, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local cur = tonumber(redis.call('GET', k .. ':' .. cur_w) or '0')
  local prev = tonumber(redis.call('GET', k .. ':' .. (cur_w - 1)) or '0')
  local weighted = prev * (win - into) / win
  if weighted + cur + cost > limit then
    local retry = win - into
    if cur + cost <= limit and prev > 0 then
      local need = 1 - (limit - cur - cost) / prev
      retry = math.max(1, math.ceil(need * win - into))
    end
    return {0, 'rate', j, retry}
  end
  remaining[j] = math.floor(limit - weighted - cur - cost)
  a = a + 2
end
local ckey = KEYS[lbase + nl + 1]
if climit > 0 then
  redis.call('ZREMRANGEBYSCORE', ckey, '-inf', now)
  if redis.call('ZCARD', ckey) >= climit then return {0, 'concurrency', 0, ttl} end
end
-- Everything admits: reserve, count, lease.
a = 6
for i = 1, nb do
  local h, rz, ra = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local amount, keep = state[i], tonumber(ARGV[a + 3])
  if amount > 0 then
    redis.call('ZADD', rz, now + ttl, rid)
    redis.call('HSET', ra, rid, amount)
    redis.call('HINCRBY', h, 'reserved', amount)
  end
  redis.call('EXPIRE', h, keep)
  redis.call('EXPIRE', rz, keep)
  redis.call('EXPIRE', ra, keep)
  a = a + 4
end
a = largs
for j = 1, nl do
  local k = KEYS[lbase + j] .. ':' .. cur_w
  redis.call('INCRBY', k, tonumber(ARGV[a + 1]))
  redis.call('PEXPIRE', k, 2 * win + 1000)
  a = a + 2
end
if climit > 0 then
  redis.call('ZADD', ckey, now + ttl, rid)
  redis.call('PEXPIRE', ckey, ttl + 1000)
end
return {1, remaining, win - into, cur_w}
"""

_SETTLE = """
local rid, nb, nt = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local window, climit = ARGV[4], tonumber(ARGV[5])
local a = 6
local spent = {}
for i = 1, nb do
  local h, rz, ra = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local amt = redis.call('HGET', ra, rid)
  if amt then
    redis.call('HDEL', ra, rid)
    redis.call('ZREM', rz, rid)
    redis.call('HINCRBY', h, 'reserved', -tonumber(amt))
  end
  local charge = tonumber(ARGV[a])
  -- A counter that vanished (Redis flushed) is not recreated unseeded: the next admission
  -- reseeds it from PostgreSQL, where this call's usage event will be.
  if charge > 0 and redis.call('HEXISTS', h, 'seeded') == 1 then
    spent[i] = redis.call('HINCRBY', h, 'spent', charge)
  else
    spent[i] = tonumber(redis.call('HGET', h, 'spent') or '-1')
  end
  a = a + 1
end
local base = 3 * nb
for j = 1, nt do
  local k = KEYS[base + j] .. ':' .. window
  local delta = tonumber(ARGV[a])
  if delta ~= 0 and redis.call('EXISTS', k) == 1 then redis.call('INCRBY', k, delta) end
  a = a + 1
end
if climit > 0 then redis.call('ZREM', KEYS[base + nt + 1], rid) end
local stream = KEYS[base + nt + 2]
local fields = {}
for i = a, #ARGV do table.insert(fields, ARGV[i]) end
local id = redis.call('XADD', stream, '*', unpack(fields))
return {id, spent}
"""

_SEED = """
if redis.call('HSETNX', KEYS[1], 'seeded', '1') == 1 then
  redis.call('HINCRBY', KEYS[1], 'spent', tonumber(ARGV[1]))
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
"""

# Reconcile: correct `spent` only if nobody changed it since it was read (compare and set).
_CORRECT = """
local current = redis.call('HGET', KEYS[1], 'spent')
if current == ARGV[1] then
  redis.call('HSET', KEYS[1], 'spent', ARGV[2])
  return 1
end
return 0
"""


ADMIT = LuaScript(_ADMIT)
SETTLE = LuaScript(_SETTLE)
SEED = LuaScript(_SEED)
CORRECT = LuaScript(_CORRECT)


def to_nanos(usd: Decimal, *, up: bool = True) -> int:
    """USD → integer nano-dollars; reservations round up so they never under-reserve."""
    scaled = usd * NANOS
    return int(scaled.to_integral_value(rounding=ROUND_CEILING) if up else round(scaled))


def from_nanos(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS


def budget_key(tenant_id: int, budget_id: int, period_start: int) -> str:
    return f"sb:{{t:{tenant_id}}}:bud:{budget_id}:{period_start}"


def budget_keys(tenant_id: int, budget_id: int, period_start: int) -> tuple[str, str, str]:
    base = budget_key(tenant_id, budget_id, period_start)
    return base, f"{base}:rz", f"{base}:ra"


def limit_key(tenant_id: int, name: str) -> str:
    return f"sb:{{t:{tenant_id}}}:rl:{name}"


def concurrency_key(tenant_id: int, key_id: int) -> str:
    return f"sb:{{t:{tenant_id}}}:cc:{key_id}"


def end_user_tag(end_user: str) -> str:
    """End-user ids are app data of any length: key them by a short digest."""
    return hashlib.blake2b(end_user.encode(), digest_size=10).hexdigest()


@dataclass(frozen=True, slots=True)
class Charge:
    """One budget a call reserves against."""

    budget_id: int
    name: str
    limit_nanos: int
    amount_nanos: int
    hard: bool
    period_start: int  # epoch seconds
    period_end: int
    deployment_id: int | None = None  # deployment budgets charge only the serving one


@dataclass(frozen=True, slots=True)
class Limit:
    """One rate limit a call counts against."""

    name: str  # e.g. "k12:req", "t:tok", "u:<digest>:req"
    kind: str  # "requests" or "tokens"
    limit: int
    cost: int


@dataclass
class Admission:
    """What a call holds after admission; settle releases exactly this."""

    tenant_id: int
    request_id: str
    charges: list[Charge]
    limits: list[Limit]
    concurrency_limit: int
    key_id: int
    window: int = 0
    remaining: dict[str, int] = field(default_factory=dict)  # limit name -> left this window
    reset_ms: int = 0


class Refused(Exception):
    """The call may not start: a budget, a rate limit or the concurrency cap."""

    def __init__(self, reason: str, message: str, *, retry_after_s: int | None = None,
                 budget: Charge | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after_s = retry_after_s
        self.budget = budget


class NeedsSeed(Exception):
    def __init__(self, charges: list[Charge]) -> None:
        super().__init__("budget counters need seeding")
        self.charges = charges


def _admit_call(admission: Admission, ttl_ms: int) -> tuple[list[str], list[Any]]:
    tenant = admission.tenant_id
    keys: list[str] = []
    args: list[Any] = [admission.request_id, ttl_ms, len(admission.charges),
                       len(admission.limits), admission.concurrency_limit]  # fmt: skip
    now = time.time()
    for charge in admission.charges:
        keys.extend(budget_keys(tenant, charge.budget_id, charge.period_start))
        keep = max(int(charge.period_end - now), 0) + COUNTER_GRACE_S
        args.extend([charge.limit_nanos, charge.amount_nanos, "1" if charge.hard else "0",
                     min(keep, 400 * 24 * 3600)])  # fmt: skip
    for limit in admission.limits:
        keys.append(limit_key(tenant, limit.name))
        args.extend([limit.limit, limit.cost])
    keys.append(concurrency_key(tenant, admission.key_id))
    return keys, args


async def admit(client: aioredis.Redis, admission: Admission, *, ttl_ms: int) -> Admission:
    """Run the admission script; raise `Refused` or `NeedsSeed`, else fill in the window."""
    keys, args = _admit_call(admission, ttl_ms)
    reply = await ADMIT.run(client, keys, args)
    status = int(reply[0])
    if status == 2:
        raise NeedsSeed([admission.charges[int(i) - 1] for i in reply[1]])
    if status == 0:
        reason = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        index = int(reply[2])
        if reason == "budget":
            charge = admission.charges[index - 1]
            spent, limit_usd = from_nanos(int(reply[3])), from_nanos(charge.limit_nanos)
            message = (f"Budget '{charge.name}' (id {charge.budget_id}) is exhausted for this "
                       f"period: ${spent:.2f} spent of ${limit_usd:.2f}.")  # fmt: skip
            raise Refused("budget_exceeded", message, budget=charge)
        if reason == "rate":
            limit = admission.limits[index - 1]
            retry_s = max(1, math.ceil(int(reply[3]) / 1000))
            scope = _scope_words(limit.name)
            raise Refused("rate_limit_exceeded",
                          f"Rate limit of {limit.limit} {limit.kind} per minute for {scope} "
                          f"reached; retry in {retry_s} s.", retry_after_s=retry_s)  # fmt: skip
        raise Refused("concurrency_limit_exceeded",
                      f"This API key already has {admission.concurrency_limit} calls in flight.",
                      retry_after_s=1)  # fmt: skip
    remaining = [int(x) for x in reply[1]]
    admission.remaining = {limit.name: left for limit, left in zip(admission.limits, remaining,
                                                                    strict=True)}  # fmt: skip
    admission.reset_ms = int(reply[2])
    admission.window = int(reply[3])
    return admission


def _scope_words(name: str) -> str:
    if name.startswith("k"):
        return "this API key"
    if name.startswith("u:"):
        return "this end user"
    return "this tenant"


async def settle(
    client: aioredis.Redis,
    admission: Admission,
    event: UsageEvent,
    *,
    charge_nanos: int,
    served_deployment_id: int | None,
    actual_tokens: int,
) -> list[int]:
    """Release, charge, correct and record in one round trip; returns each budget's spent."""
    tenant = admission.tenant_id
    keys: list[str] = []
    args: list[Any] = [admission.request_id, len(admission.charges)]
    token_limits = [limit for limit in admission.limits if limit.kind == "tokens"]
    args.extend([len(token_limits), admission.window, admission.concurrency_limit])
    for charge in admission.charges:
        keys.extend(budget_keys(tenant, charge.budget_id, charge.period_start))
    for charge in admission.charges:
        applies = charge.deployment_id is None or charge.deployment_id == served_deployment_id
        args.append(charge_nanos if applies else 0)
    for limit in token_limits:
        keys.append(limit_key(tenant, limit.name))
        args.append(actual_tokens - limit.cost)
    keys.append(concurrency_key(tenant, admission.key_id))
    keys.append(usage_stream_key(tenant))
    for name, value in event.to_stream_fields().items():
        args.extend([name, value])
    reply = await SETTLE.run(client, keys, args)
    return [int(x) for x in reply[1]]


async def seed(client: aioredis.Redis, tenant_id: int, charge: Charge, spent_nanos: int) -> bool:
    """Load a missing counter from PostgreSQL's sum (a no-op if someone seeded it first)."""
    key = budget_key(tenant_id, charge.budget_id, charge.period_start)
    keep = max(int(charge.period_end - time.time()), 0) + COUNTER_GRACE_S
    return bool(await SEED.run(client, [key], [spent_nanos, min(keep, 400 * 24 * 3600)]))
