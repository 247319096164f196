"""`POST /v1/messages`: the Anthropic Messages wire format in and out, streaming included.

The request is translated to the OpenAI chat format, runs through the same pipeline as
`/v1/chat/completions` (routing, retries, fallback, usage), and the answer is translated back.
"""

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from gateway.api.anthropic_format import (
    AnthropicRequestError,
    AnthropicStreamTranslator,
    anthropic_error_body,
    anthropic_request_to_openai,
    openai_response_to_anthropic,
    sse_encode,
)
from gateway.api.common import (
    GatewayError,
    authenticate,
    call_headers,
    json_body,
    sse_response,
)
from gateway.runtime.executor import ExecutionFailed
from gateway.runtime.guard import ChatRequest, GuardError, guard_chat_request
from gateway.runtime.pipeline import (
    CallContext,
    chat_call,
    chat_stream_call,
    context_for,
    record_refusal,
    settled_stream,
)
from gateway.runtime.providers import ProviderError
from gateway.runtime.routing import RouteError


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> HttpResponseBase:
    response = HttpResponse(
        json.dumps(anthropic_error_body(status, message)),
        status=status,
        content_type="application/json",
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _chat_request(body: dict[str, Any]) -> ChatRequest:
    try:
        return guard_chat_request(anthropic_request_to_openai(body))
    except AnthropicRequestError as exc:
        raise GatewayError(400, str(exc), code="invalid_request", param=exc.param) from None
    except GuardError as exc:
        raise GatewayError(exc.status, str(exc), code=exc.code, param=exc.param) from None


@csrf_exempt
async def messages(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return _error(405, "Use POST on this endpoint.", {"allow": "POST"})
    try:
        caller, snapshot = await authenticate(request)
        chat = _chat_request(json_body(request))
        ctx = context_for(
            http=request, caller=caller, snapshot=snapshot, model=chat.model,
            metadata=chat.metadata, user=chat.user,
        )  # fmt: skip
        try:
            if chat.stream:
                return await _stream(ctx, chat)
            result = await chat_call(ctx, chat)
        except RouteError as exc:
            await record_refusal(ctx, http_status=exc.status, error_type=exc.code)
            return _error(exc.status, exc.message, exc.headers)
    except GatewayError as exc:
        return _error(exc.status, exc.message, exc.headers)
    except ExecutionFailed as failure:
        headers = {}
        if failure.retry_after is not None and failure.status in (429, 503):
            headers["retry-after"] = str(max(1, round(failure.retry_after)))
        return _error(failure.status, failure.message, headers)
    body = openai_response_to_anthropic(result.body, model=result.deployment.name)
    return HttpResponse(
        json.dumps(body),
        content_type="application/json",
        headers=call_headers(ctx, result.deployment, cost=result.cost),
    )


async def _stream(ctx: CallContext, chat: ChatRequest) -> HttpResponseBase:
    opened = await chat_stream_call(ctx, chat)
    translator = AnthropicStreamTranslator(
        model=opened.deployment.name, message_id=f"msg_{ctx.request_id}"
    )
    body = settled_stream(ctx, chat, opened, AnthropicRenderer(translator))
    return sse_response(body, call_headers(ctx, opened.deployment, cost=None))


class AnthropicRenderer:
    """Anthropic SSE events, translated from the OpenAI chunks."""

    def __init__(self, translator: AnthropicStreamTranslator) -> None:
        self.translator = translator

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        return [sse_encode(event, data) for event, data in self.translator.feed(chunk)]

    def end(self) -> list[bytes]:
        return [sse_encode(event, data) for event, data in self.translator.finish()]

    def error(self, exc: ProviderError) -> list[bytes]:
        return [sse_encode(e, d) for e, d in self.translator.error("api_error", exc.message)]
