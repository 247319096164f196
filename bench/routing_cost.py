"""What routing costs per call with a realistic configuration: 50 rules, profiles, an A/B
experiment, the key and tier filters — the same `route()` the gateway and explain run.

    .venv/bin/python bench/routing_cost.py [--rules 50] [--calls 20000]

Pure CPU (no Redis, no database, no network): the snapshot is assembled in memory with the
same entry types the gateway builds. Reports microseconds per routing decision, median of
repeated rounds, for a call that matches no rule (every rule evaluated), one that matches
the last rule, and one whose task type runs an experiment. Writes JSON under results/.
"""

import argparse
import json
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchboard.settings")
os.environ.setdefault("SWITCHBOARD_ENV", "development")

import django  # noqa: E402

django.setup()

from gateway.routing.conditions import compile_condition, describe  # noqa: E402
from gateway.runtime.auth import Caller  # noqa: E402
from gateway.runtime.routing import Needs, Subject, route  # noqa: E402
from gateway.runtime.snapshot import (  # noqa: E402
    DeploymentEntry,
    ExperimentEntry,
    KeyEntry,
    ProfileEntry,
    RuleEntry,
    Snapshot,
    TenantEntry,
    VariantEntry,
)

MODELS = [f"model-{i}" for i in range(12)]


def _deployment(index: int, name: str) -> DeploymentEntry:
    price = Decimal(index + 1) / Decimal(1_000_000)
    return DeploymentEntry(
        id=index + 1, tenant_id=None, name=name, provider="openai",
        litellm_model=f"openai/{name}", upstream_model=name, api_base="http://127.0.0.1:1/v1",
        api_version="", api_key_env="K", direct=True, input_price=price,
        output_price=price * 3, cached_input_price=price, context_window=128_000,
        max_output_tokens=4096, capabilities=frozenset({"streaming", "tools", "json_mode"}),
        min_tier_rank=0, priority=index, weight=1, timeout_s=30.0, fallbacks=(),
    )  # fmt: skip


def _rule(index: int, total: int) -> RuleEntry:
    # A mix of shapes: metadata lookups, numeric comparisons, combinators.
    shapes = [
        {"field": "metadata.team", "op": "eq", "value": f"team-{index}"},
        {"all": [{"field": "task_type", "op": "eq", "value": f"task-{index}"},
                 {"field": "prompt_tokens", "op": "gt", "value": 1000 + index}]},
        {"any": [{"field": "user_tier", "op": "in", "value": ["free"]},
                 {"not": {"field": "max_tokens", "op": "lte", "value": 100_000 + index}}]},
        {"field": "key_name", "op": "ne", "value": "bench key"},
    ]  # fmt: skip
    condition = shapes[index % 3] if index < total - 1 else shapes[3]
    return RuleEntry(
        id=index + 1, tenant_id=None, name=f"rule-{index}", priority=index,
        predicate=compile_condition(condition), description=describe(condition),
        task_profile=None, models=(MODELS[index % len(MODELS)],), strategy="lowest_cost",
    )  # fmt: skip


def build(rules: int, *, last_matches: bool) -> tuple[Snapshot, Caller]:
    deployments = [_deployment(i, name) for i, name in enumerate(MODELS)]
    by_name: dict[tuple[int | None, str], tuple[DeploymentEntry, ...]] = {
        (None, d.name): (d,) for d in deployments
    }
    rule_entries = tuple(_rule(i, rules + (0 if last_matches else 1)) for i in range(rules))
    profile = ProfileEntry(
        id=1, tenant_id=None, name="chat", description="", candidates=(("model-1", 1),
        ("model-2", 1), ("model-3", 2)), strategy="weighted", fallbacks=("model-4",),
        required_capabilities=frozenset(), defaults=(("max_tokens", 512),), cache_ttl_s=None,
    )  # fmt: skip
    experiment = ExperimentEntry(
        id=9, tenant_id=None, name="exp", task_type="chat", rule_id=None, winner="",
        variants=(VariantEntry("a", "model-1", 1, ()), VariantEntry("b", "model-5", 1, ())),
    )  # fmt: skip
    snapshot = Snapshot(
        version="1", built_at=time.monotonic(), keys_by_prefix={}, tenants={},
        deployments={d.id: d for d in deployments}, by_name=by_name,
        profiles={(None, "chat"): profile}, global_rules=rule_entries,
        experiments_by_task={(None, "chat"): experiment},
    )  # fmt: skip
    key = KeyEntry(
        id=1, prefix="p", secret_hmac="h",  # noqa: S106 (not a secret)
        name="bench key", tenant_id=1, team_id=None,
        expires_at=None, revoked_at=None, allowed_models=frozenset(),
        allowed_task_types=frozenset(), max_user_tier="", rpm_limit=None, tpm_limit=None,
    )  # fmt: skip
    tenant = TenantEntry(id=1, slug="t", active=True, tier="enterprise", time_zone="UTC")
    return snapshot, Caller(key=key, tenant=tenant)


def measure(rules: int, calls: int, scenario: str) -> float:
    snapshot, caller = build(rules, last_matches=scenario == "last-rule-matches")
    task_type = "chat" if scenario == "experiment" else None
    needs = Needs(frozenset({"streaming"}), 900, 512, None)
    context = {
        "task_type": task_type, "user_tier": None, "model": "model-0", "prompt_tokens": 900,
        "max_tokens": 512, "key_name": "bench key" if scenario != "last-rule-matches" else "k",
        "capabilities": ["streaming"], "cost_tier": None, "stream": True,
        "metadata": {"team": "nobody", "app": "bench"},
    }  # fmt: skip
    rounds = []
    for _ in range(7):
        started = time.perf_counter()
        for i in range(calls):
            route(snapshot, caller, "model-0", needs, task_type=task_type, context=context,
                  subject=Subject(end_user=f"user-{i % 500}", request_id="r"))  # fmt: skip
        rounds.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    results = {}
    for scenario in ("no-rule-matches", "last-rule-matches", "experiment"):
        results[scenario] = round(measure(args.rules, args.calls, scenario), 2)
        print(f"{scenario:>18}: {results[scenario]:7.2f} µs per routing decision "
              f"({args.rules} rules)")  # fmt: skip
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "routing_cost.json").write_text(json.dumps({"rules": args.rules, "us": results}))


if __name__ == "__main__":
    main()
