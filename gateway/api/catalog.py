"""What an application may call, for the key it holds (snapshot only, no database query).

`GET /api/v1/personas`: the task profiles (task types, personas) the key may use, each with
its candidate models, their context windows and cost tiers, and a running experiment if any.
`GET /api/v1/providers`: the deployments the key may call, grouped by provider.
"""

from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from analytics.services import feedback_record
from gateway.api.common import GatewayError, authenticate, json_body
from gateway.api.openai import _guarded
from gateway.runtime.auth import Caller
from gateway.runtime.snapshot import PER_MTOK, DeploymentEntry, ProfileEntry, Snapshot
from tenants.models import USER_TIER_RANK

_TIER_BY_RANK = {rank: tier for tier, rank in USER_TIER_RANK.items()}


def _money(value: Decimal) -> str:
    return f"{(value * PER_MTOK).normalize():f}"


def _deployment(deployment: DeploymentEntry) -> dict[str, Any]:
    return {
        "id": deployment.id,
        "model": deployment.name,
        "provider": deployment.provider,
        "scope": "global" if deployment.tenant_id is None else "tenant",
        "context_window": deployment.context_window,
        "max_output_tokens": deployment.max_output_tokens,
        "capabilities": sorted(deployment.capabilities),
        "cost_tier": deployment.cost_tier,
        "input_price_per_mtok": _money(deployment.input_price),
        "output_price_per_mtok": _money(deployment.output_price),
        "min_user_tier": _TIER_BY_RANK.get(deployment.min_tier_rank, "") or None,
    }


def _visible_deployments(snapshot: Snapshot, caller: Caller) -> list[DeploymentEntry]:
    allowed = caller.key.allowed_models
    return [
        deployment
        for name in snapshot.model_names(caller.tenant.id)
        if not allowed or name in allowed
        for deployment in snapshot.deployments_named(caller.tenant.id, name)
    ]


def _visible_profiles(snapshot: Snapshot, caller: Caller) -> list[ProfileEntry]:
    tenant_id = caller.tenant.id
    names = sorted({name for owner, name in snapshot.profiles if owner in (None, tenant_id)})
    allowed = caller.key.allowed_task_types
    profiles = [snapshot.profile(tenant_id, name) for name in names]
    return [p for p in profiles if p is not None and (not allowed or p.name in allowed)]


def _persona(snapshot: Snapshot, caller: Caller, profile: ProfileEntry) -> dict[str, Any]:
    tenant_id = caller.tenant.id
    candidates = []
    for name, weight in profile.candidates:
        deployments = snapshot.deployments_named(tenant_id, name)
        candidates.append({
            "model": name,
            "weight": weight,
            "available": bool(deployments),
            "context_window": max((d.context_window for d in deployments), default=None),
            "cost_tier": deployments[0].cost_tier if deployments else None,
        })  # fmt: skip
    experiment = snapshot.experiment_for(tenant_id, rule_id=None, task_type=profile.name)
    running = None
    if experiment is not None:
        running = {
            "name": experiment.name,
            "variants": [v.key for v in experiment.variants],
            "promoted": experiment.winner or None,
        }
    return {
        "name": profile.name,
        "description": profile.description,
        "scope": "global" if profile.tenant_id is None else "tenant",
        "strategy": profile.strategy,
        "candidates": candidates,
        "fallbacks": list(profile.fallbacks),
        "required_capabilities": sorted(profile.required_capabilities),
        "defaults": dict(profile.defaults),
        "cache_ttl_s": profile.cache_ttl_s,
        "experiment": running,
    }


@csrf_exempt
async def personas(request: HttpRequest) -> HttpResponseBase:
    async def handle() -> HttpResponseBase:
        caller, snapshot = await authenticate(request)
        data = [_persona(snapshot, caller, p) for p in _visible_profiles(snapshot, caller)]
        return JsonResponse({"object": "list", "data": data})

    return await _guarded(request, "GET", handle)


@csrf_exempt
async def providers(request: HttpRequest) -> HttpResponseBase:
    async def handle() -> HttpResponseBase:
        caller, snapshot = await authenticate(request)
        grouped: dict[str, list[dict[str, Any]]] = {}
        for deployment in _visible_deployments(snapshot, caller):
            grouped.setdefault(deployment.provider, []).append(_deployment(deployment))
        data = [{"provider": name, "deployments": grouped[name]} for name in sorted(grouped)]
        return JsonResponse({"object": "list", "data": data})

    return await _guarded(request, "GET", handle)


def _feedback_score(body: dict[str, Any]) -> float:
    score, thumbs = body.get("score"), body.get("thumbs")
    if (score is None) == (thumbs is None):
        raise GatewayError(400, "Give exactly one of 'score' (0 to 1) or 'thumbs' ('up'/'down').",
                           code="invalid_request")  # fmt: skip
    if thumbs is not None:
        if thumbs not in ("up", "down"):
            raise GatewayError(400, "'thumbs' must be 'up' or 'down'.", code="invalid_request",
                               param="thumbs")  # fmt: skip
        return 1.0 if thumbs == "up" else 0.0
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        raise GatewayError(400, "'score' must be a number from 0 to 1.", code="invalid_request",
                           param="score")  # fmt: skip
    return float(score)


@csrf_exempt
async def feedback(request: HttpRequest) -> HttpResponseBase:
    """`POST /v1/feedback`: `{"request_id", "score" | "thumbs", "comment"?}` scores one of the
    tenant's calls (by the `x-request-id` the gateway returned); a later verdict replaces an
    earlier one. Scores feed the A/B experiment results."""

    async def handle() -> HttpResponseBase:
        caller, _ = await authenticate(request)
        body = json_body(request)
        unknown = sorted(set(body) - {"request_id", "score", "thumbs", "comment"})
        if unknown:
            raise GatewayError(400, f"Unrecognized field: {unknown[0]}.", code="invalid_request",
                               param=unknown[0])  # fmt: skip
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 64:
            raise GatewayError(400, "'request_id' must be the x-request-id of a call.",
                               code="invalid_request", param="request_id")  # fmt: skip
        comment = body.get("comment", "")
        if not isinstance(comment, str) or len(comment) > 2000 or "\x00" in comment:
            raise GatewayError(400, "'comment' must be text of at most 2000 characters.",
                               code="invalid_request", param="comment")  # fmt: skip
        score = _feedback_score(body)
        await sync_to_async(feedback_record)(
            tenant_id=caller.tenant.id, api_key_id=caller.key.id, request_id=request_id,
            score=score, comment=comment,
        )  # fmt: skip
        return JsonResponse(
            {"object": "feedback", "request_id": request_id, "score": score}, status=201
        )

    return await _guarded(request, "POST", handle)
