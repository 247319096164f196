"""`POST /api/v1/gateway/requests`: the native shape (prompt or messages plus context).

Input: `{"prompt" | "messages", "model", "task_type"?, "user_id"?, "user_tier"?, "metadata"?,
"max_tokens"?, "temperature"?}`. Output: the content and what served it, what it cost and
the request id, so a caller need not parse a provider format.
"""

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from gateway.api.common import GatewayError, authenticate, call_headers, json_body
from gateway.api.openai import _guarded
from gateway.runtime.guard import GuardError, guard_chat_request
from gateway.runtime.pipeline import chat_call, chat_route, context_for, record_refusal
from gateway.runtime.routing import RouteError

_PASSED = ("max_tokens", "temperature", "top_p", "stop", "seed", "response_format", "tools")
_CONTEXT = ("task_type", "user_id", "user_tier")
_KNOWN = frozenset({"prompt", "messages", "model", "metadata", *_PASSED, *_CONTEXT})


def _openai_body(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise GatewayError(400, f"Unrecognized field: {unknown[0]}.", code="invalid_request",
                           param=unknown[0])  # fmt: skip
    prompt, messages = body.get("prompt"), body.get("messages")
    if (prompt is None) == (messages is None):
        raise GatewayError(
            400, "Give exactly one of 'prompt' or 'messages'.", code="invalid_request"
        )
    if prompt is not None and (not isinstance(prompt, str) or not prompt):
        raise GatewayError(400, "'prompt' must be a non-empty string.", code="invalid_request",
                           param="prompt")  # fmt: skip
    if not body.get("model"):
        raise GatewayError(
            400,
            "'model' is required (task-type routing without a model arrives with task profiles).",
            code="invalid_request",
            param="model",
        )
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise GatewayError(400, "'metadata' must be an object.", code="invalid_request",
                           param="metadata")  # fmt: skip
    context = {name: body[name] for name in _CONTEXT if body.get(name) is not None}
    openai_body: dict[str, Any] = {
        "model": body["model"],
        "messages": messages if messages is not None else [{"role": "user", "content": prompt}],
        "metadata": {**metadata, **context},
    }
    if body.get("user_id") is not None:
        openai_body["user"] = str(body["user_id"])
    openai_body.update({name: body[name] for name in _PASSED if name in body})
    return openai_body


@csrf_exempt
async def gateway_requests(request: HttpRequest) -> HttpResponseBase:
    async def handle() -> HttpResponseBase:
        caller, snapshot = await authenticate(request)
        try:
            chat = guard_chat_request(_openai_body(json_body(request)))
        except GuardError as exc:
            raise GatewayError(exc.status, str(exc), code=exc.code, param=exc.param) from None
        ctx = context_for(
            http=request, caller=caller, snapshot=snapshot, model=chat.model,
            metadata=chat.metadata, user=chat.user,
        )  # fmt: skip
        try:
            result = await chat_call(ctx, chat)
        except RouteError as exc:
            await record_refusal(ctx, http_status=exc.status, error_type=exc.code)
            raise GatewayError(exc.status, exc.message, code=exc.code, param=exc.param,
                               headers=exc.headers) from None  # fmt: skip
        choice = (result.body.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        body = {
            "request_id": ctx.request_id,
            "content": message.get("content") or "",
            "tool_calls": message.get("tool_calls") or [],
            "finish_reason": choice.get("finish_reason"),
            "model_used": result.deployment.name,
            "provider": result.deployment.provider,
            "cost_usd": f"{result.cost:.10f}",
            "cached": False,
            "usage": {
                "prompt_tokens": result.usage.prompt_tokens,
                "completion_tokens": result.usage.completion_tokens,
                "cached_tokens": result.usage.cached_tokens,
            },
            "attempts": ctx.stats.attempts,
            "fallbacks": ctx.stats.fallbacks,
            "task_type": ctx.task_type or None,
        }
        headers = call_headers(ctx, result.deployment, cost=result.cost)
        return HttpResponse(json.dumps(body), content_type="application/json", headers=headers)

    return await _guarded(request, "POST", handle)


@csrf_exempt
async def route_explain(request: HttpRequest) -> HttpResponseBase:
    """`POST /api/v1/route/explain`: the routing decision for a request, without calling a
    provider or spending anything. Same body as `/v1/chat/completions` (plus `task_type`)."""

    async def handle() -> HttpResponseBase:
        caller, snapshot = await authenticate(request)
        body = json_body(request)
        task_type = body.pop("task_type", None)
        if task_type is not None:
            if not isinstance(task_type, str):
                raise GatewayError(400, "'task_type' must be a string.", code="invalid_request",
                                   param="task_type")  # fmt: skip
            body.setdefault("metadata", {})
            if isinstance(body["metadata"], dict):
                body["metadata"]["task_type"] = task_type
        try:
            chat = guard_chat_request(body)
        except GuardError as exc:
            raise GatewayError(exc.status, str(exc), code=exc.code, param=exc.param) from None
        ctx = context_for(http=request, caller=caller, snapshot=snapshot, model=chat.model,
                          metadata=chat.metadata, user=chat.user)  # fmt: skip
        try:
            decision = await chat_route(ctx, chat)
        except RouteError as exc:
            raise GatewayError(exc.status, exc.message, code=exc.code, param=exc.param,
                               headers=exc.headers) from None  # fmt: skip
        result = {
            "route": decision.trace.as_dict(),
            "candidates": [
                {"deployment": d.id, "model": d.name, "provider": d.provider}
                for d in decision.candidates
            ],
        }
        return HttpResponse(json.dumps(result), content_type="application/json")

    return await _guarded(request, "POST", handle)
