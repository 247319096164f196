"""Property tests of routing (hypothesis): whatever the fleet, the key, the request and the
breaker states, routing never hands out a deployment the call must not reach, and an
experiment always gives the same end user the same variant."""

import time
from collections import Counter
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.routing.conditions import compile_condition, describe
from gateway.runtime.auth import Caller
from gateway.runtime.routing import Needs, RouteError, Subject, caller_tier_rank, route
from gateway.runtime.snapshot import (
    DeploymentEntry,
    ExperimentEntry,
    ProfileEntry,
    RuleEntry,
    Snapshot,
    VariantEntry,
)
from tenants.models import USER_TIER_RANK
from tests.gateway.test_caller_identity import _caller

NAMES = ["m-a", "m-b", "m-c", "m-d"]
CAPABILITIES = ["streaming", "tools", "vision", "json_mode"]
TIERS = list(USER_TIER_RANK)
TENANT = 1

deployment_specs = st.fixed_dictionaries({
    "name": st.sampled_from(NAMES),
    "enabled": st.booleans(),
    "context_window": st.integers(256, 200_000),
    "capabilities": st.frozensets(st.sampled_from(CAPABILITIES)),
    "min_tier": st.sampled_from(["", *TIERS]),
    "fallbacks": st.lists(st.sampled_from(NAMES), max_size=2),
    "price": st.integers(0, 50),
    "own": st.booleans(),
})  # fmt: skip


def _deployment(index: int, spec: dict[str, Any]) -> DeploymentEntry:
    price = Decimal(spec["price"]) / Decimal(1_000_000)
    return DeploymentEntry(
        id=index + 1, tenant_id=TENANT if spec["own"] else None, name=spec["name"],
        provider="openai", litellm_model=f"openai/{spec['name']}", upstream_model=spec["name"],
        api_base="http://127.0.0.1:1/v1", api_version="", api_key_env="K", direct=True,
        input_price=price, output_price=price * 2, cached_input_price=price,
        context_window=spec["context_window"], max_output_tokens=4096,
        capabilities=spec["capabilities"], min_tier_rank=USER_TIER_RANK.get(spec["min_tier"], 0),
        priority=index, weight=1, timeout_s=5.0,
        fallbacks=tuple(f for f in spec["fallbacks"] if f != spec["name"]),
    )  # fmt: skip


def _snapshot(
    deployments: list[DeploymentEntry], experiment: ExperimentEntry | None = None
) -> Snapshot:
    by_name: dict[tuple[int | None, str], list[DeploymentEntry]] = {}
    for entry in deployments:
        by_name.setdefault((entry.tenant_id, entry.name), []).append(entry)
    profile = ProfileEntry(
        id=1, tenant_id=None, name="chat", description="", candidates=(("m-a", 1), ("m-b", 2)),
        strategy="weighted", fallbacks=("m-c",), required_capabilities=frozenset(),
        defaults=(), cache_ttl_s=None,
    )  # fmt: skip
    rule = RuleEntry(
        id=1, tenant_id=None, name="long", priority=1,
        predicate=compile_condition({"field": "prompt_tokens", "op": "gt", "value": 50_000}),
        description=describe({"field": "prompt_tokens", "op": "gt", "value": 50_000}),
        task_profile=None, models=("m-d",), strategy="lowest_cost",
    )  # fmt: skip
    experiments = {(None, "chat"): experiment} if experiment else {}
    return Snapshot(
        version="1", built_at=time.monotonic(), keys_by_prefix={},
        tenants={}, deployments={d.id: d for d in deployments},
        by_name={key: tuple(value) for key, value in by_name.items()},
        profiles={(None, "chat"): profile}, global_rules=(rule,),
        experiments_by_task=experiments,
    )  # fmt: skip


def _with_key(caller: Caller, allowed: frozenset[str], key_max: str) -> Caller:
    key = caller.key
    fields = {name: getattr(key, name) for name in key.__slots__}  # type: ignore[attr-defined]
    fields.update(allowed_models=allowed, max_user_tier=key_max)
    return Caller(key=type(key)(**fields), tenant=caller.tenant)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(deployment_specs, min_size=1, max_size=10),
    model=st.sampled_from([*NAMES, "chat"]),
    task_type=st.sampled_from([None, "chat"]),
    prompt_tokens=st.integers(1, 120_000),
    max_tokens=st.integers(0, 50_000),
    needs=st.frozensets(st.sampled_from(CAPABILITIES)),
    tenant_tier=st.sampled_from(TIERS),
    key_max=st.sampled_from(["", *TIERS]),
    asserted=st.sampled_from([None, *TIERS]),
    allowed=st.frozensets(st.sampled_from(NAMES)),
    open_ids=st.frozensets(st.integers(1, 10)),
)
def test_routing_never_returns_a_deployment_the_call_must_not_reach(
    specs, model, task_type, prompt_tokens, max_tokens, needs, tenant_tier, key_max, asserted,
    allowed, open_ids,
) -> None:  # fmt: skip
    pool = [_deployment(i, spec) for i, spec in enumerate(specs)]
    enabled = [d for d, spec in zip(pool, specs, strict=True) if spec["enabled"]]
    snapshot = _snapshot(enabled)  # as snapshot_build does: only enabled rows get in
    caller = _with_key(_caller(tenant_tier), allowed, key_max)
    request = Needs(needs, prompt_tokens, max_tokens, asserted)
    context = {"prompt_tokens": prompt_tokens, "task_type": task_type, "model": model}
    try:
        decision = route(snapshot, caller, model, request, task_type=task_type, context=context,
                         open_breakers=open_ids)  # fmt: skip
    except RouteError as exc:
        refused = exc.status
    else:
        refused = 0
    if refused:
        assert refused in (400, 403, 404, 503)
        return
    rank = caller_tier_rank(caller, asserted)
    enabled_ids = {d.id for d in enabled}
    assert decision.candidates, "a decision always has a candidate"
    for deployment in decision.candidates:
        assert deployment.id in enabled_ids  # never a disabled one
        assert not allowed or deployment.name in allowed  # never one the key may not use
        assert deployment.min_tier_rank <= rank  # never above the caller's tier
        assert prompt_tokens + max_tokens <= deployment.context_window  # never too small
        assert needs <= deployment.capabilities  # never one lacking a capability
        assert deployment.id not in open_ids  # never one whose breaker is open
    assert len({d.id for d in decision.candidates}) == len(decision.candidates)
    kept = {c["deployment"] for c in decision.trace.as_dict()["candidates"] if c["kept"]}
    assert kept == {d.id for d in decision.candidates}  # the trace says what was returned


def _experiment(weights: list[int]) -> ExperimentEntry:
    variants = tuple(
        VariantEntry(f"v{i}", NAMES[i % len(NAMES)], weight, ()) for i, weight in enumerate(weights)
    )
    return ExperimentEntry(id=7, tenant_id=None, name="exp", task_type="chat", rule_id=None,
                           variants=variants, winner="")  # fmt: skip


def _fleet() -> list[DeploymentEntry]:
    spec = {"enabled": True, "context_window": 128_000, "capabilities": frozenset(),
            "min_tier": "", "fallbacks": [], "price": 1, "own": False}  # fmt: skip
    return [_deployment(i, {**spec, "name": name}) for i, name in enumerate(NAMES)]


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(st.integers(1, 100), min_size=2, max_size=4),
    user=st.text(min_size=1, max_size=40),
    request_ids=st.lists(st.uuids().map(str), min_size=2, max_size=5),
)
def test_the_same_user_always_gets_the_same_variant(weights, user, request_ids) -> None:
    snapshot = _snapshot(_fleet(), _experiment(weights))
    caller = _caller("enterprise")
    needs = Needs(frozenset(), 10, 10, None)
    variants = {
        route(snapshot, caller, "chat", needs, task_type="chat", context={"task_type": "chat"},
              subject=Subject(end_user=user, request_id=rid)).trace.variant
        for rid in request_ids
    }  # fmt: skip
    assert len(variants) == 1


def test_ten_thousand_users_split_within_two_points_of_the_weights() -> None:
    weights = [50, 30, 20]
    snapshot = _snapshot(_fleet(), _experiment(weights))
    caller = _caller("enterprise")
    needs = Needs(frozenset(), 10, 10, None)
    counts: Counter[str] = Counter()
    for i in range(10_000):
        decision = route(snapshot, caller, "chat", needs, task_type="chat",
                         context={"task_type": "chat"},
                         subject=Subject(end_user=f"user-{i}", request_id=f"r{i}"))  # fmt: skip
        counts[decision.trace.variant or ""] += 1
        assert decision.candidates[0].name == NAMES[int((decision.trace.variant or "v0")[1:])]
    for index, weight in enumerate(weights):
        share = counts[f"v{index}"] / 10_000
        assert abs(share - weight / 100) < 0.02, (counts, weights)
