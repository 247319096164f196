"""Choosing the candidate deployments for a call (the routing issue generalises this).

Today: the deployments of the model the client named (the tenant's own first, then global
ones, by priority), then those of its configured fallback models, filtered by what the key
may use, the capabilities and context the request needs, and the caller's user tier.
"""

from dataclasses import dataclass

from gateway.runtime.auth import Caller
from gateway.runtime.snapshot import DeploymentEntry, Snapshot
from tenants.models import USER_TIER_RANK


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


def _chain(snapshot: Snapshot, caller: Caller, model: str) -> list[DeploymentEntry]:
    tenant_id = caller.tenant.id
    primary = snapshot.deployments_named(tenant_id, model)
    chain = list(primary)
    seen = {model}
    for deployment in primary:
        for fallback in deployment.fallbacks:
            if fallback in seen or not _model_allowed(caller, fallback):
                continue
            seen.add(fallback)
            chain.extend(snapshot.deployments_named(tenant_id, fallback))
    return chain


def _fits(deployment: DeploymentEntry, needs: Needs, tier_rank: int) -> bool:
    return (
        needs.capabilities <= deployment.capabilities
        and needs.prompt_tokens + needs.max_tokens <= deployment.context_window
        and deployment.min_tier_rank <= tier_rank
    )


def resolve_candidates(
    snapshot: Snapshot, caller: Caller, model: str, needs: Needs
) -> list[DeploymentEntry]:
    if not _model_allowed(caller, model):
        raise RouteError(
            403, f"This API key may not use the model '{model}'.", code="model_not_allowed",
            param="model",
        )  # fmt: skip
    chain = _chain(snapshot, caller, model)
    if not chain:
        raise RouteError(
            404,
            f"The model '{model}' does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )
    tier_rank = caller_tier_rank(caller, needs.user_tier)
    candidates = [deployment for deployment in chain if _fits(deployment, needs, tier_rank)]
    if not candidates:
        wanted = ", ".join(sorted(needs.capabilities)) or "no special capability"
        raise RouteError(
            400,
            f"No deployment of '{model}' can serve this request (needs {wanted}, "
            f"~{needs.prompt_tokens} prompt tokens, your user tier).",
            code="no_capable_deployment",
            param="model",
        )
    return candidates
