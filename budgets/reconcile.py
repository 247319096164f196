"""Reconcile the Redis budget counters with PostgreSQL, the authority for spend.

For each enabled budget's current period: a counter below PostgreSQL's sum (it missed
settles, e.g. it was seeded while events were still in the stream) is raised to it; a counter
above it is lowered only when the tenant's usage stream is empty (every settled call is in
PostgreSQL, so the difference is drift, not calls in transit). Each correction is a
compare-and-set, so a settle that lands meanwhile is never overwritten.
"""

import logging
from datetime import UTC, datetime

from analytics.usage import usage_stream_key
from budgets import ledger
from budgets.models import Budget
from budgets.periods import period_bounds
from budgets.selectors import budget_target, spent_in_period
from switchboard.redis_client import redis_sync

logger = logging.getLogger(__name__)


def budgets_reconcile(now: datetime | None = None) -> int:
    """Returns how many counters were corrected."""
    now = now or datetime.now(UTC)
    client = redis_sync()
    corrected = 0
    for budget in Budget.objects.filter(enabled=True).select_related("tenant"):
        start, end = period_bounds(budget.period, now, budget.tenant.time_zone,
                                   created_at=budget.created_at)  # fmt: skip
        key = ledger.budget_key(budget.tenant_id, budget.pk, int(start.timestamp()))
        raw_spent, seeded = client.hmget(key, ["spent", "seeded"])
        if seeded is None:
            continue  # not in Redis: the next call seeds it from PostgreSQL
        redis_spent = int(raw_spent or 0)
        authority = ledger.to_nanos(
            spent_in_period(tenant_id=budget.tenant_id, scope=budget.scope,
                            target=budget_target(budget), start=start, end=end),
            up=False,
        )  # fmt: skip
        drained = client.xlen(usage_stream_key(budget.tenant_id)) == 0
        wrong = redis_spent < authority or (redis_spent > authority and drained)
        if wrong and ledger.CORRECT.run_sync(client, [key], [raw_spent or b"0", authority]):
            corrected += 1
            logger.warning("budget %s counter corrected from %s to %s nano-USD",
                           budget.pk, redis_spent, authority)  # fmt: skip
    return corrected
