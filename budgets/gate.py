"""The gateway's side of budgets and rate limits: which apply to a call, admit, settle.

Everything here reads the snapshot (no database query) except seeding a budget counter that
Redis does not have (once per budget and period, or after Redis lost its data) and the
last-resort write of a usage record when Redis cannot take the settle.
"""

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from redis.exceptions import RedisError

from analytics.usage import UsageEvent, usage_event_append
from budgets import ledger
from budgets.periods import period_bounds
from budgets.selectors import spent_in_period
from switchboard.redis_client import redis_async

logger = logging.getLogger(__name__)

_bounds_cache: dict[tuple[str, str], tuple[datetime, datetime]] = {}


class BudgetUnavailable(Exception):
    """Redis cannot be reached and a hard budget covers the call: it must not run unchecked."""


def _bounds(period: str, time_zone: str, created_at: datetime, now: datetime) -> tuple[int, int]:
    if period == "none":
        start, end = period_bounds(period, now, time_zone, created_at=created_at)
    else:
        cached = _bounds_cache.get((period, time_zone))
        if cached is None or not cached[0] <= now < cached[1]:
            cached = period_bounds(period, now, time_zone)
            _bounds_cache[(period, time_zone)] = cached
        start, end = cached
    return int(start.timestamp()), int(end.timestamp())


NO_OUTPUT = -1  # requested_max_tokens of a call that produces no tokens (embeddings)


def _max_tokens(deployment: Any, requested: int) -> int:
    if requested == NO_OUTPUT:
        return 0
    cap = deployment.max_output_tokens
    return min(requested, cap) if requested else cap


def max_cost(deployment: Any, prompt_tokens: int, requested_max_tokens: int) -> Decimal:
    """The most this call can cost on this deployment (what is reserved)."""
    return deployment.cost(prompt_tokens, _max_tokens(deployment, requested_max_tokens))


def admission_for(
    ctx: Any, candidates: Sequence[Any], *, prompt_tokens: int, requested_max_tokens: int
) -> ledger.Admission | None:
    """The budgets, limits and concurrency cap this call counts against (None: nothing)."""
    caller = ctx.caller
    tenant, key = caller.tenant, caller.key
    now = datetime.now(UTC)
    worst = max((max_cost(d, prompt_tokens, requested_max_tokens) for d in candidates),
                default=Decimal(0))  # fmt: skip
    charges = []
    for budget in ctx.snapshot.budgets_by_tenant.get(tenant.id, ()):
        deployment_id = None
        amount = worst
        if budget.scope == "team" and str(key.team_id or "") != budget.target:
            continue
        if budget.scope == "api_key" and str(key.id) != budget.target:
            continue
        if budget.scope == "end_user" and (not ctx.end_user or ctx.end_user != budget.target):
            continue
        if budget.scope == "deployment":
            matching = [d for d in candidates if str(d.id) == budget.target]
            if not matching:
                continue
            deployment_id = matching[0].id
            amount = max_cost(matching[0], prompt_tokens, requested_max_tokens)
        start, end = _bounds(budget.period, tenant.time_zone, budget.created_at, now)
        charges.append(ledger.Charge(
            budget_id=budget.id, name=budget.name, limit_nanos=ledger.to_nanos(budget.limit,
            up=False), amount_nanos=ledger.to_nanos(amount), hard=budget.hard,
            period_start=start, period_end=end, deployment_id=deployment_id,
        ))  # fmt: skip
    tokens = prompt_tokens + max((_max_tokens(d, requested_max_tokens) for d in candidates),
                                 default=0)  # fmt: skip
    limits = []
    for prefix, rpm, tpm in (
        (f"k{key.id}", key.rpm_limit, key.tpm_limit),
        ("t", tenant.rpm_limit, tenant.tpm_limit),
        (f"u:{ledger.end_user_tag(ctx.end_user)}" if ctx.end_user else "",
         tenant.end_user_rpm_limit, tenant.end_user_tpm_limit),
    ):  # fmt: skip
        if not prefix:
            continue
        if rpm:
            limits.append(ledger.Limit(f"{prefix}:req", "requests", rpm, 1))
        if tpm:
            limits.append(ledger.Limit(f"{prefix}:tok", "tokens", tpm, tokens))
    concurrency = key.max_concurrency or 0
    if not charges and not limits and not concurrency:
        return None
    return ledger.Admission(
        tenant_id=tenant.id, request_id=ctx.request_id, charges=charges, limits=limits,
        concurrency_limit=concurrency, key_id=key.id,
    )  # fmt: skip


def _spent_nanos(tenant_id: int, charge: ledger.Charge, budgets: Sequence[Any]) -> int:
    budget = next(b for b in budgets if b.id == charge.budget_id)
    total = spent_in_period(
        tenant_id=tenant_id, scope=budget.scope, target=budget.target,
        start=datetime.fromtimestamp(charge.period_start, UTC),
        end=datetime.fromtimestamp(charge.period_end, UTC),
    )  # fmt: skip
    return ledger.to_nanos(total, up=False)


async def admit(ctx: Any, admission: ledger.Admission) -> bool:
    """Admit (raise `ledger.Refused` or `BudgetUnavailable`); False: admitted unchecked."""
    client = redis_async()
    ttl_ms = int((settings.GATEWAY_DEADLINE_S + 30) * 1000)
    budgets = ctx.snapshot.budgets_by_tenant.get(admission.tenant_id, ())
    try:
        for attempt in range(2):
            try:
                await ledger.admit(client, admission, ttl_ms=ttl_ms)
                return True
            except ledger.NeedsSeed as missing:
                if attempt:
                    raise BudgetUnavailable from None
                for charge in missing.charges:
                    spent = await sync_to_async(_spent_nanos)(admission.tenant_id, charge, budgets)
                    await ledger.seed(client, admission.tenant_id, charge, spent)
    except (RedisError, OSError) as exc:
        if any(charge.hard for charge in admission.charges):
            logger.error("budget ledger unavailable, refusing a hard-budgeted call: %s",
                         type(exc).__name__)  # fmt: skip
            raise BudgetUnavailable from None
        logger.warning("rate limits unavailable, admitting unchecked: %s", type(exc).__name__)
        return False
    return False  # pragma: no cover  (the loop returns or raises)


async def settle(
    admission: ledger.Admission | None, event: UsageEvent, *, checked: bool,
    served_deployment_id: int | None, total_tokens: int,
) -> None:  # fmt: skip
    """Release and charge what admission took, and record the usage event — in one round
    trip; without an admission, just the event. If Redis refuses, the record goes straight
    to PostgreSQL so that nothing billed is lost (reservations then expire by their TTL)."""
    client = redis_async()
    try:
        if admission is None or not checked:
            await usage_event_append(event, client=client)
        else:
            await ledger.settle(client, admission, event,
                                charge_nanos=ledger.to_nanos(event.cost_usd, up=False),
                                served_deployment_id=served_deployment_id,
                                actual_tokens=total_tokens)  # fmt: skip
    except (RedisError, OSError) as exc:
        logger.error("settle failed (%s); writing usage %s to PostgreSQL directly",
                     type(exc).__name__, event.request_id)  # fmt: skip
        await sync_to_async(_store_directly)(event)


def _store_directly(event: UsageEvent) -> None:
    from analytics.usage import usage_record_store

    usage_record_store(event)


def rate_limit_headers(admission: ledger.Admission | None) -> dict[str, str]:
    """OpenAI-style `x-ratelimit-*` headers for the tightest request and token limits."""
    if admission is None or not admission.remaining:
        return {}
    headers: dict[str, str] = {}
    reset = f"{max(admission.reset_ms, 0) / 1000:.0f}s"
    for kind, suffix in (("requests", "requests"), ("tokens", "tokens")):
        limits = [limit for limit in admission.limits if limit.kind == kind]
        if not limits:
            continue
        tightest = min(limits, key=lambda limit: admission.remaining.get(limit.name, 0))
        headers[f"x-ratelimit-limit-{suffix}"] = str(tightest.limit)
        headers[f"x-ratelimit-remaining-{suffix}"] = str(
            max(admission.remaining.get(tightest.name, 0), 0)
        )
        headers[f"x-ratelimit-reset-{suffix}"] = reset
    return headers


def now_ms() -> int:
    return int(time.time() * 1000)
