"""Choosing the candidate deployments for a call, and saying why.

1. The first routing rule whose condition holds (the tenant's and global rules, by priority)
   picks a task profile or an explicit model list with a strategy.
2. Without a matching rule: the task type's profile (from `metadata.task_type`, the
   `x-switchboard-task-type` header or the native `task_type`), else a profile named as the
   `model`, else the requested model itself.
3. Each model expands to its deployments (the tenant's own first, then global), then the
   fallbacks; each deployment is kept or dropped (key's allowed models, capabilities,
   context window, user tier) and the kept ones are ordered by the strategy.
Every step is recorded in a `RouteTrace`; explain and the gateway run this same code.
"""

import random
from dataclasses import dataclass, field
from typing import Any

from gateway.routing.strategies import Candidate, LiveStats, Strategy, order
from gateway.runtime.auth import Caller
from gateway.runtime.snapshot import DeploymentEntry, ProfileEntry, RuleEntry, Snapshot
from tenants.models import USER_TIER_RANK

_EMPTY_STATS = LiveStats(latency_ms={}, inflight={}, rr_counter=0)
_rng = random.Random()  # noqa: S311 (load spreading, not security)


class RouteError(Exception):
    def __init__(self, status: int, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


@dataclass(frozen=True, slots=True)
class Needs:
    capabilities: frozenset[str]
    prompt_tokens: int
    max_tokens: int
    user_tier: str | None


@dataclass
class RouteTrace:
    """Why this route: the rule, the profile, and each deployment kept or dropped."""

    task_type: str | None = None
    rule: str | None = None
    rule_condition: str | None = None
    profile: str | None = None
    strategy: str = "priority"
    models: list[str] = field(default_factory=list)
    considered: list[dict[str, Any]] = field(default_factory=list)
    order: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "rule": self.rule,
            "rule_condition": self.rule_condition,
            "profile": self.profile,
            "strategy": self.strategy,
            "models": self.models,
            "candidates": self.considered,
            "order": self.order,
        }

    def header(self) -> str:
        """Compact form for `x-switchboard-route`."""
        parts = [f"strategy={self.strategy}", "order=" + ",".join(map(str, self.order))]
        if self.profile:
            parts.insert(0, f"profile={self.profile}")
        if self.rule:
            parts.insert(0, f"rule={self.rule}")
        return ";".join(parts)[:500]


@dataclass
class RouteDecision:
    candidates: list[DeploymentEntry]
    trace: RouteTrace


def caller_tier_rank(caller: Caller, requested: str | None) -> int:
    """The end user's tier as the app asserts it, never above the key's maximum nor the
    tenant's own tier (which only platform staff set); the lower of those if absent."""
    ceiling = USER_TIER_RANK.get(caller.tenant.tier, 0)
    if caller.key.max_user_tier:
        ceiling = min(ceiling, USER_TIER_RANK.get(caller.key.max_user_tier, 0))
    if not requested:
        return ceiling
    return min(USER_TIER_RANK.get(requested, 0), ceiling)


def _model_allowed(caller: Caller, name: str) -> bool:
    return not caller.key.allowed_models or name in caller.key.allowed_models


def _matching_rule(snapshot: Snapshot, caller: Caller, context: dict[str, Any]) -> RuleEntry | None:
    for rule in snapshot.rules_for(caller.tenant.id):
        if rule.predicate(context):
            return rule
    return None


@dataclass
class _Plan:
    models: list[str]
    weights: dict[str, int]
    strategy: str
    profile: ProfileEntry | None = None


def _plan(
    snapshot: Snapshot, caller: Caller, model: str, task_type: str | None, trace: RouteTrace,
    context: dict[str, Any] | None,
) -> _Plan:  # fmt: skip
    tenant_id = caller.tenant.id
    # No context: a call that rules do not apply to (embeddings), straight to the model.
    rule = _matching_rule(snapshot, caller, context) if context is not None else None
    profile: ProfileEntry | None = None
    if rule is not None:
        trace.rule, trace.rule_condition = rule.name, rule.description
        if rule.task_profile is None:
            return _Plan(list(rule.models), {}, rule.strategy)
        profile = snapshot.profile(tenant_id, rule.task_profile)
    elif task_type:
        profile = snapshot.profile(tenant_id, task_type)
    if profile is None and not snapshot.deployments_named(tenant_id, model):
        profile = snapshot.profile(tenant_id, model)  # a client may name a profile as model
    if profile is None:
        return _Plan([model], {}, "priority")
    trace.profile = profile.name
    names = [name for name, _ in profile.candidates]
    return _Plan(names + list(profile.fallbacks), dict(profile.candidates), profile.strategy,
                 profile)  # fmt: skip


def _drop_reason(deployment: DeploymentEntry, needs: Needs, tier_rank: int) -> str | None:
    missing = needs.capabilities - deployment.capabilities
    if missing:
        return "lacks " + ", ".join(sorted(missing))
    if needs.prompt_tokens + needs.max_tokens > deployment.context_window:
        return f"context window {deployment.context_window} too small"
    if deployment.min_tier_rank > tier_rank:
        return "above the caller's user tier"
    return None


def _expand(snapshot: Snapshot, caller: Caller, models: list[str]) -> list[DeploymentEntry]:
    """Deployments of each model, then of their configured fallbacks, without repeats."""
    seen_models: set[str] = set()
    chain: list[DeploymentEntry] = []
    queue = list(models)
    while queue:
        name = queue.pop(0)
        if name in seen_models:
            continue
        seen_models.add(name)
        deployments = snapshot.deployments_named(caller.tenant.id, name)
        chain.extend(deployments)
        for deployment in deployments:
            queue.extend(f for f in deployment.fallbacks if f not in seen_models)
    return chain


def route(
    snapshot: Snapshot, caller: Caller, model: str, needs: Needs, *,
    task_type: str | None = None, context: dict[str, Any] | None = None,
    stats: LiveStats = _EMPTY_STATS,
) -> RouteDecision:  # fmt: skip
    trace = RouteTrace(task_type=task_type)
    plan = _plan(snapshot, caller, model, task_type, trace, context)
    trace.strategy, trace.models = plan.strategy, plan.models
    if plan.profile is not None:
        needs = Needs(needs.capabilities | plan.profile.required_capabilities,
                      needs.prompt_tokens, needs.max_tokens, needs.user_tier)  # fmt: skip
    routed = trace.rule is not None or trace.profile is not None
    if not routed and not _model_allowed(caller, model):
        raise RouteError(403, f"This API key may not use the model '{model}'.",
                         code="model_not_allowed", param="model")  # fmt: skip
    chain = _expand(snapshot, caller, plan.models)
    if not chain:
        raise RouteError(
            404,
            f"The model '{model}' does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )
    tier_rank = caller_tier_rank(caller, needs.user_tier)
    kept: list[DeploymentEntry] = []
    for deployment in chain:
        reason = None if _model_allowed(caller, deployment.name) else "not allowed for this key"
        reason = reason or _drop_reason(deployment, needs, tier_rank)
        trace.considered.append({"deployment": deployment.id, "model": deployment.name,
                                 "provider": deployment.provider, "kept": reason is None,
                                 "reason": reason or "ok"})  # fmt: skip
        if reason is None:
            kept.append(deployment)
    if not kept:
        wanted = ", ".join(sorted(needs.capabilities)) or "no special capability"
        raise RouteError(
            400,
            f"No deployment of '{model}' can serve this request (needs {wanted}, "
            f"~{needs.prompt_tokens} prompt tokens, your user tier).",
            code="no_capable_deployment",
            param="model",
        )
    ordered = _ordered(kept, plan, needs, stats)
    trace.order = [deployment.id for deployment in ordered]
    return RouteDecision(candidates=ordered, trace=trace)


def _ordered(
    kept: list[DeploymentEntry], plan: _Plan, needs: Needs, stats: LiveStats
) -> list[DeploymentEntry]:
    """The plan's first model's deployments are ordered by the strategy; fallbacks keep
    their order after them (a fallback is only for when the first choice fails)."""
    primary_names = set(plan.models if not plan.weights else plan.weights)
    primary = [d for d in kept if d.name in primary_names]
    rest = [d for d in kept if d.name not in primary_names]
    if not primary:
        return rest
    by_id = {d.id: d for d in primary}
    listed = plan.models
    candidates = [
        Candidate(
            id=d.id,
            # The plan's listing order first (a profile's or rule's order is its priority),
            # then the deployment's own priority.
            priority=listed.index(d.name) * 1_000_000 + d.priority,
            weight=plan.weights.get(d.name, d.weight) if plan.weights else d.weight,
            est_cost=float(d.cost(needs.prompt_tokens, needs.max_tokens)),
        )
        for d in primary
    ]
    ids = order(Strategy(plan.strategy), candidates, stats, rng=_rng)
    return [by_id[i] for i in ids] + rest


def resolve_candidates(
    snapshot: Snapshot, caller: Caller, model: str, needs: Needs
) -> list[DeploymentEntry]:
    """The candidates of a named model, without routing rules (embeddings)."""
    return route(snapshot, caller, model, needs).candidates
