"""Reads for the console's Routing page: the task profiles and rules a tenant's traffic sees,
and the route a sample request would take (the gateway's own routing, no provider called)."""

from dataclasses import dataclass, field
from typing import Any

from django.db.models import F, Q
from django.http import HttpRequest

from gateway.models import RoutingRule, TaskProfile
from gateway.routing.conditions import ConditionError, describe
from gateway.runtime.auth import Caller
from gateway.runtime.breaker import BreakerState
from gateway.runtime.guard import GuardError, estimate_prompt_tokens, guard_chat_request
from gateway.runtime.pipeline import LIVE_STRATEGIES, context_for, route_context
from gateway.runtime.routing import Needs, RouteError, RouteTrace, Subject, route
from gateway.runtime.snapshot import KeyEntry, Snapshot, snapshot_build
from tenants.models import Tenant

MAX_ROWS = 200


def _condition_text(condition: Any) -> str:
    try:
        return describe(condition)
    except ConditionError:  # stored before a stricter validator: show it, do not fail
        return "(invalid condition)"


def _action_text(action: Any) -> str:
    if not isinstance(action, dict):
        return "?"
    if "task_profile" in action:
        return f"task profile {action['task_profile']}"
    return f"{', '.join(action.get('models', []))} ({action.get('strategy', 'priority')})"


def routing_overview(tenant: Tenant) -> dict[str, Any]:
    """The tenant's and the global task profiles and rules (rules in evaluation order)."""
    own_first = F("tenant_id").asc(nulls_last=True)
    visible = Q(tenant=tenant) | Q(tenant__isnull=True)
    profiles = TaskProfile.objects.filter(visible).order_by("name", own_first, "id")[:MAX_ROWS]
    rules = RoutingRule.objects.filter(visible).order_by("priority", own_first, "id")[:MAX_ROWS]
    return {
        "profiles": list(profiles),
        "rules": [
            {
                "rule": rule,
                "condition": _condition_text(rule.condition),
                "action": _action_text(rule.action),
            }
            for rule in rules
        ],
    }


@dataclass
class Explanation:
    """What the explain panel shows: the trace, or why there is no route."""

    error: str = ""
    error_field: str | None = None  # the explain form's field the error belongs to
    trace: RouteTrace | None = None
    context: dict[str, Any] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    order: list[dict[str, Any]] = field(default_factory=list)
    live_strategy: bool = False


def _console_caller(snapshot: Snapshot, tenant: Tenant) -> Caller | None:
    """The tenant calling with a key that has no restrictions of its own (so what is shown
    is the tenant's routing; a real key may narrow it further)."""
    entry = snapshot.tenants.get(tenant.pk)
    if entry is None:
        return None
    key = KeyEntry(
        id=0, prefix="", secret_hmac="", name="console-explain", tenant_id=tenant.pk,
        team_id=None, expires_at=None, revoked_at=None, allowed_models=frozenset(),
        allowed_task_types=frozenset(), max_user_tier="", rpm_limit=None, tpm_limit=None,
    )  # fmt: skip
    return Caller(key=key, tenant=entry)


def _open_breakers(snapshot: Snapshot, tenant: Tenant) -> frozenset[int]:
    from gateway.runtime.executor import breaker

    ids = [d.id for d in snapshot.deployments.values() if d.tenant_id in (None, tenant.pk)]
    try:
        states = breaker.states_sync(ids)
    except Exception:  # Redis down: route as if every breaker were closed
        return frozenset()
    return frozenset(pk for pk, state in states.items() if state == BreakerState.OPEN)


def route_explain_for_tenant(
    *, http: HttpRequest, tenant: Tenant, body: dict[str, Any]
) -> Explanation:
    """Guard the sample request as the gateway does and route it with the gateway's routing
    over a fresh snapshot, as `POST /api/v1/route/explain` would for this tenant."""
    try:
        chat = guard_chat_request(body)
    except GuardError as exc:
        param = exc.param or ""
        return Explanation(error=exc.message, error_field=param.split(".")[0] or None)
    snapshot = snapshot_build("console-explain")
    caller = _console_caller(snapshot, tenant)
    if caller is None:
        return Explanation(error="This tenant is not in the gateway's configuration.")
    ctx = context_for(http=http, caller=caller, snapshot=snapshot, model=chat.model,
                      metadata=chat.metadata, user=chat.user)  # fmt: skip
    payload = chat.payload
    needs = Needs(
        capabilities=frozenset(),  # a plain text prompt: no tools, images, JSON mode, stream
        prompt_tokens=estimate_prompt_tokens(payload["messages"]),
        max_tokens=int(payload.get("max_tokens") or 0),
        user_tier=ctx.user_tier,
    )
    context = route_context(ctx, chat, needs)
    try:
        decision = route(
            snapshot,
            caller,
            chat.model,
            needs,
            task_type=ctx.task_type or None,
            context=context,
            subject=Subject(end_user=ctx.end_user, request_id=ctx.request_id),
            open_breakers=_open_breakers(snapshot, tenant),
        )
    except RouteError as exc:
        return Explanation(error=exc.message, error_field=exc.param, context=context)
    trace = decision.trace
    deployments = snapshot.deployments
    position = {pk: index for index, pk in enumerate(trace.order, start=1)}
    candidates = [{**c, "position": position.get(c["deployment"])} for c in trace.considered]
    order = [
        {"deployment": pk, "model": deployments[pk].name, "provider": deployments[pk].provider}
        for pk in trace.order
    ]
    return Explanation(trace=trace, context=context, candidates=candidates, order=order,
                       live_strategy=trace.strategy in LIVE_STRATEGIES)  # fmt: skip
