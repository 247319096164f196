"""What the budget ledger costs per call: the admit and settle Lua scripts against Redis.

    .venv/bin/python bench/ledger_cost.py [--calls 5000] [--budgets 3]

Runs admit then settle (with the usage event XADD) sequentially, for a call covered by
`--budgets` budgets, a requests and a tokens limit per key and tenant, and a concurrency cap —
everything the gateway does on a fully-policed call. Uses REDIS_URL (default
redis://127.0.0.1:6379/14) and a throwaway tenant id; deletes its keys afterwards. Reports
p50 / p99 microseconds per admit and per settle (each is one round trip).
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchboard.settings")
os.environ.setdefault("SWITCHBOARD_ENV", "development")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")

import django  # noqa: E402

django.setup()

import redis.asyncio as aioredis  # noqa: E402

from analytics.usage import UsageEvent  # noqa: E402
from budgets import ledger  # noqa: E402

TENANT = 987_654_321


async def run(calls: int, budgets: int) -> tuple[list[float], list[float]]:
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    charges = [
        ledger.Charge(budget_id=i + 1, name=f"b{i}", limit_nanos=10**18, amount_nanos=12_345,
                      hard=True, period_start=1_700_000_000, period_end=2_000_000_000)
        for i in range(budgets)
    ]  # fmt: skip
    for charge in charges:
        await ledger.seed(client, TENANT, charge, 0)
    limits = [ledger.Limit("k1:req", "requests", 10**9, 1), ledger.Limit("k1:tok", "tokens",
              10**12, 500), ledger.Limit("t:req", "requests", 10**9, 1)]  # fmt: skip
    admits, settles = [], []
    for i in range(calls):
        admission = ledger.Admission(tenant_id=TENANT, request_id=f"r{i}", charges=charges,
                                     limits=limits, concurrency_limit=100, key_id=1)  # fmt: skip
        started = time.perf_counter()
        await ledger.admit(client, admission, ttl_ms=150_000)
        admits.append((time.perf_counter() - started) * 1e6)
        event = UsageEvent(request_id=f"r{i}", created_at=datetime.now(UTC), tenant_id=TENANT,
                           model="m", provider="openai", cost_usd=Decimal("0.00001"),
                           latency_ms=5, status="success", http_status=200)  # fmt: skip
        started = time.perf_counter()
        await ledger.settle(client, admission, event, charge_nanos=10_000,
                            served_deployment_id=None, actual_tokens=300)  # fmt: skip
        settles.append((time.perf_counter() - started) * 1e6)
    keys = [key async for key in client.scan_iter(match=f"sb:{{t:{TENANT}}}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    return admits, settles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--budgets", type=int, default=3)
    args = parser.parse_args()
    admits, settles = asyncio.run(run(args.calls, args.budgets))
    for name, values in (("admit", admits), ("settle", settles)):
        values.sort()
        p99 = values[int(len(values) * 0.99)]
        shape = f"{args.calls} calls, {args.budgets} budgets, 3 limits, concurrency cap"
        print(f"{name:>6}: p50 {statistics.median(values):6.0f} µs   p99 {p99:6.0f} µs ({shape})")


if __name__ == "__main__":
    main()
