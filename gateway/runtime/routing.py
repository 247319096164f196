"""Choosing the candidate deployments for a call, and saying why.

1. The first routing rule whose condition holds (the tenant's and global rules, by priority)
   picks a task profile or an explicit model list with a strategy.
2. Without a matching rule: the task type's profile (from `metadata.task_type`, the
   `x-switchboard-task-type` header or the native `task_type`), else a profile named as the
   `model`, else the requested model itself.
3. A running A/B experiment on the matched rule or the task type replaces the plan's models
   by its variant's model (sticky per end user; per request without one); once promoted,
   every call goes to the winner.
4. Each model expands to its deployments (the tenant's own first, then global), then the
   fallbacks; each deployment is kept or dropped (key's allowed models, capabilities,
   context window, user tier) and the kept ones are ordered by the strategy.
Every step is recorded in a `RouteTrace`; explain and the gateway run this same code.
"""

import random
from dataclasses import dataclass, field
from typing import Any

from gateway.experiments.assignment import VariantWeight, assign_variant
from gateway.routing.strategies import Candidate, LiveStats, Strategy, order
from gateway.runtime.auth import Caller
from gateway.runtime.snapshot import (
    DeploymentEntry,
    ExperimentEntry,
    ProfileEntry,
    RuleEntry,
    Snapshot,
    VariantEntry,
)
from tenants.models import USER_TIER_RANK

_EMPTY_STATS = LiveStats(latency_ms={}, inflight={}, rr_counter=0)
_rng = random.Random()  # noqa: S311 (load spreading, not security)


class RouteError(Exception):
    def __init__(
        self, status: int, message: str, *, code: str, param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


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
    experiment: str | None = None
    experiment_id: int | None = None
    variant: str | None = None
    promoted: bool = False
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
            "experiment": self.experiment,
            "variant": self.variant,
            "promoted": self.promoted,
            "strategy": self.strategy,
            "models": self.models,
            "candidates": self.considered,
            "order": self.order,
        }

    def header(self) -> str:
        """Compact form for `x-switchboard-route`."""
        parts = [f"strategy={self.strategy}", "order=" + ",".join(map(str, self.order))]
        if self.experiment:
            parts.insert(0, f"experiment={self.experiment}:{self.variant}")
        if self.profile:
            parts.insert(0, f"profile={self.profile}")
        if self.rule:
            parts.insert(0, f"rule={self.rule}")
        return ";".join(parts)[:500]


@dataclass
class RouteDecision:
    candidates: list[DeploymentEntry]
    trace: RouteTrace
    # The serving variant's parameter overrides (they win over the client's values).
    overrides: tuple[tuple[str, Any], ...] = ()


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
    overrides: tuple[tuple[str, Any], ...] = ()
    rule: RuleEntry | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a call is for, as experiment assignment sees it."""

    end_user: str = ""
    request_id: str = ""


def _variant_for(experiment: ExperimentEntry, subject: Subject) -> VariantEntry | None:
    if experiment.winner:
        return experiment.variant(experiment.winner)
    weights = [VariantWeight(v.key, v.weight) for v in experiment.variants]
    if sum(w.weight for w in weights) <= 0:
        return None
    key = assign_variant(experiment.id, weights, subject.end_user or None,
                         request_id=subject.request_id)  # fmt: skip
    return experiment.variant(key)


def _experiment_plan(
    snapshot: Snapshot, caller: Caller, rule: RuleEntry | None, task_key: str | None,
    plan: _Plan, subject: Subject, trace: RouteTrace,
) -> _Plan:  # fmt: skip
    experiment = snapshot.experiment_for(
        caller.tenant.id, rule_id=rule.id if rule else None, task_type=task_key
    )
    if experiment is None:
        return plan
    variant = _variant_for(experiment, subject)
    if variant is None:
        return plan
    trace.experiment, trace.experiment_id = experiment.name, experiment.id
    trace.variant, trace.promoted = variant.key, bool(experiment.winner)
    fallbacks = list(plan.profile.fallbacks) if plan.profile else []
    return _Plan([variant.model, *fallbacks], {}, "priority", plan.profile, variant.params,
                 plan.rule)  # fmt: skip


def _plan(
    snapshot: Snapshot, caller: Caller, model: str, task_type: str | None, trace: RouteTrace,
    context: dict[str, Any] | None, subject: Subject,
) -> _Plan:  # fmt: skip
    plan = _base_plan(snapshot, caller, model, task_type, trace, context)
    if context is None:
        return plan
    task_key = None if plan.rule is not None else (task_type or trace.profile)
    return _experiment_plan(snapshot, caller, plan.rule, task_key, plan, subject, trace)


def _base_plan(
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
            return _Plan(list(rule.models), {}, rule.strategy, rule=rule)
        profile = snapshot.profile(tenant_id, rule.task_profile)
    elif task_type:
        profile = snapshot.profile(tenant_id, task_type)
    if profile is None and not snapshot.deployments_named(tenant_id, model):
        profile = snapshot.profile(tenant_id, model)  # a client may name a profile as model
    if profile is None:
        return _Plan([model], {}, "priority", rule=rule)
    trace.profile = profile.name
    names = [name for name, _ in profile.candidates]
    return _Plan(names + list(profile.fallbacks), dict(profile.candidates), profile.strategy,
                 profile, rule=rule)  # fmt: skip


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
    stats: LiveStats = _EMPTY_STATS, subject: Subject = Subject(),
    open_breakers: frozenset[int] = frozenset(),
) -> RouteDecision:  # fmt: skip
    trace = RouteTrace(task_type=task_type)
    plan = _plan(snapshot, caller, model, task_type, trace, context, subject)
    trace.strategy, trace.models = plan.strategy, plan.models
    allowed_types = caller.key.allowed_task_types
    if context is not None and allowed_types and (task_type or trace.profile) not in allowed_types:
        named = task_type or trace.profile
        message = (f"This API key may not use the task type '{named}'." if named else
                   "This API key may only be used with a task type: "
                   + ", ".join(sorted(allowed_types)) + ".")  # fmt: skip
        raise RouteError(403, message, code="task_type_not_allowed", param="task_type")
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
    breaker_open = 0
    for deployment in chain:
        reason = None if _model_allowed(caller, deployment.name) else "not allowed for this key"
        reason = reason or _drop_reason(deployment, needs, tier_rank)
        if reason is None and deployment.id in open_breakers:
            reason, breaker_open = "circuit breaker open", breaker_open + 1
        trace.considered.append({"deployment": deployment.id, "model": deployment.name,
                                 "provider": deployment.provider, "kept": reason is None,
                                 "reason": reason or "ok"})  # fmt: skip
        if reason is None:
            kept.append(deployment)
    if not kept and breaker_open:
        raise RouteError(
            503,
            f"Every deployment that can serve '{model}' is failing (circuit open); retry shortly.",
            code="deployments_unavailable",
            headers={"retry-after": "1"},
        )
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
    return RouteDecision(candidates=ordered, trace=trace, overrides=plan.overrides)


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
    snapshot: Snapshot, caller: Caller, model: str, needs: Needs,
    open_breakers: frozenset[int] = frozenset(),
) -> list[DeploymentEntry]:  # fmt: skip
    """The candidates of a named model, without routing rules (embeddings)."""
    return route(snapshot, caller, model, needs, open_breakers=open_breakers).candidates
