"""OpenAI-compatible gateway endpoints: chat completions (plain and SSE), embeddings, models."""

import json
from collections.abc import Awaitable, Callable
from typing import Any

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
)
from django.views.decorators.csrf import csrf_exempt

from gateway.api.common import (
    GatewayError,
    authenticate,
    call_headers,
    guard_error,
    json_body,
    sse_response,
)
from gateway.runtime.executor import ExecutionFailed
from gateway.runtime.guard import (
    ChatRequest,
    GuardError,
    guard_chat_request,
    guard_embeddings_request,
)
from gateway.runtime.pipeline import (
    CallContext,
    chat_call,
    chat_stream_call,
    context_for,
    embeddings_call,
    record_refusal,
    settled_stream,
)
from gateway.runtime.providers import ProviderError
from gateway.runtime.routing import RouteError
from switchboard.api.errors import error_body, error_response

View = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _method_not_allowed(allowed: str) -> JsonResponse:
    return error_response(
        405,
        f"Use {allowed} on this endpoint.",
        code="method_not_allowed",
        headers={"allow": allowed},
    )


def _failure_response(failure: ExecutionFailed) -> JsonResponse:
    headers = {}
    if failure.retry_after is not None and failure.status in (429, 503):
        headers["retry-after"] = str(max(1, round(failure.retry_after)))
    headers["x-switchboard-attempts"] = str(failure.stats.attempts)
    return error_response(failure.status, failure.message, code=str(failure.kind), headers=headers)


async def _guarded(
    request: HttpRequest, method: str, handle: Callable[[], Awaitable[HttpResponseBase]]
) -> HttpResponseBase:
    """Run a handler, turning the gateway's errors into the OpenAI error shape."""
    if request.method != method:
        return _method_not_allowed(method)
    try:
        return await handle()
    except GatewayError as exc:
        return error_response(
            exc.status, exc.message, code=exc.code, param=exc.param, headers=exc.headers
        )
    except ExecutionFailed as failure:
        return _failure_response(failure)


async def _refused(ctx: CallContext, exc: RouteError) -> GatewayError:
    await record_refusal(ctx, http_status=exc.status, error_type=exc.code)
    return GatewayError(exc.status, exc.message, code=exc.code, param=exc.param,
                        headers=exc.headers)  # fmt: skip


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    async def handle() -> HttpResponseBase:
        caller, snapshot = await authenticate(request)
        try:
            chat = guard_chat_request(json_body(request))
        except GuardError as exc:
            raise guard_error(exc) from None
        ctx = context_for(
            http=request, caller=caller, snapshot=snapshot, model=chat.model,
            metadata=chat.metadata, user=chat.user,
        )  # fmt: skip
        try:
            if chat.stream:
                return await _stream_response(ctx, chat)
            result = await chat_call(ctx, chat)
        except RouteError as exc:
            raise await _refused(ctx, exc) from None
        headers = call_headers(ctx, result.deployment, cost=result.cost)
        return HttpResponse(_dumps(result.body), content_type="application/json", headers=headers)

    return await _guarded(request, "POST", handle)


async def _stream_response(ctx: CallContext, chat: ChatRequest) -> HttpResponseBase:
    opened = await chat_stream_call(ctx, chat)
    body = settled_stream(ctx, chat, opened, OpenAIRenderer(include_usage=chat.include_usage))
    return sse_response(body, call_headers(ctx, opened.deployment, cost=None))


class OpenAIRenderer:
    """OpenAI SSE: `data: {chunk}` lines, `data: [DONE]`, or an error object on failure."""

    def __init__(self, *, include_usage: bool) -> None:
        self.include_usage = include_usage

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        if "usage" in chunk and not self.include_usage:
            if not chunk.get("choices"):
                return []
            chunk = {key: value for key, value in chunk.items() if key != "usage"}
        return [b"data: " + _dumps(chunk) + b"\n\n"]

    def end(self) -> list[bytes]:
        return [b"data: [DONE]\n\n"]

    def error(self, exc: ProviderError) -> list[bytes]:
        return [b"data: " + _dumps(error_body(502, exc.message, code=str(exc.kind))) + b"\n\n"]


@csrf_exempt
async def embeddings(request: HttpRequest) -> HttpResponseBase:
    async def handle() -> HttpResponseBase:
        caller, snapshot = await authenticate(request)
        try:
            embed = guard_embeddings_request(json_body(request))
        except GuardError as exc:
            raise guard_error(exc) from None
        ctx = context_for(
            http=request, caller=caller, snapshot=snapshot, model=embed.model,
            metadata={}, user=embed.user,
        )  # fmt: skip
        try:
            result = await embeddings_call(ctx, embed)
        except RouteError as exc:
            raise await _refused(ctx, exc) from None
        headers = call_headers(ctx, result.deployment, cost=result.cost)
        return HttpResponse(_dumps(result.body), content_type="application/json", headers=headers)

    return await _guarded(request, "POST", handle)


@csrf_exempt
async def models_list(request: HttpRequest) -> HttpResponseBase:
    """`GET /v1/models`: the public model names this key may call."""

    async def handle() -> HttpResponseBase:
        caller, snapshot = await authenticate(request)
        allowed = caller.key.allowed_models
        names = [
            name
            for name in snapshot.model_names(caller.tenant.id)
            if not allowed or name in allowed
        ]
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "switchboard"}
            for name in names
        ]
        return JsonResponse({"object": "list", "data": data})

    return await _guarded(request, "GET", handle)
