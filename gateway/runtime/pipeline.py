"""One gateway call from authenticated request to settled usage, independent of wire format.

The OpenAI, Anthropic and native endpoints parse their own shapes into a `ChatRequest`, call
`chat_call` / `chat_stream_call` / `embeddings_call`, and render the result their own way.
Every call — success, provider error, refusal or cancellation — records one usage event.
"""

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from analytics.usage import UsageEvent
from budgets import gate as budget_gate
from budgets import ledger
from gateway.models import Capability
from gateway.routing.live_stats import LiveStatsStore
from gateway.runtime.auth import Caller
from gateway.runtime.executor import (
    CallStats,
    ExecutionFailed,
    OpenStream,
    execute,
    open_breakers,
    open_stream,
)
from gateway.runtime.guard import ChatRequest, EmbeddingsRequest, apply_token_cap
from gateway.runtime.guard import estimate_prompt_tokens as estimate_tokens
from gateway.runtime.providers import ProviderError
from gateway.runtime.retry import ErrorKind
from gateway.runtime.routing import (
    Needs,
    RouteDecision,
    RouteError,
    RouteTrace,
    Subject,
    resolve_candidates,
    route,
)
from gateway.runtime.snapshot import DeploymentEntry, Snapshot
from switchboard import metrics

logger = logging.getLogger(__name__)


@dataclass
class CallContext:
    """What one call knows about itself while it runs."""

    request_id: str
    caller: Caller
    snapshot: Snapshot
    model: str
    end_user: str = ""
    task_type: str = ""
    user_tier: str | None = None
    started: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=timezone.now)
    stats: CallStats = field(default_factory=CallStats)
    client_request_id: str = ""
    route: RouteTrace | None = None
    request_defaults: tuple[tuple[str, Any], ...] = ()
    # An experiment variant's parameters: unlike defaults they replace the client's values.
    request_overrides: tuple[tuple[str, Any], ...] = ()
    cost_tier: str | None = None
    # Budgets and rate limits this call holds (None: none apply); `checked` False when Redis
    # was down and only soft limits applied, so the call ran unchecked.
    admission: ledger.Admission | None = None
    admission_checked: bool = False
    # The prompt estimate routing made; admission reserves against the same number.
    prompt_tokens: int = 0

    @property
    def deadline(self) -> float:
        return self.started + settings.GATEWAY_DEADLINE_S

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def overhead_ms(self) -> float:
        return max((time.monotonic() - self.started - self.stats.upstream_s) * 1000, 0.0)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @classmethod
    def from_body(cls, usage: Any) -> "Usage | None":
        if not isinstance(usage, dict):
            return None
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(cached or 0),
        )


@dataclass
class ChatResult:
    deployment: DeploymentEntry
    body: dict[str, Any]
    usage: Usage
    cost: Decimal


def context_for(
    *, http: HttpRequest, caller: Caller, snapshot: Snapshot, model: str,
    metadata: dict[str, Any], user: str | None,
) -> CallContext:  # fmt: skip
    return CallContext(
        request_id=str(getattr(http, "request_id", "")),
        client_request_id=str(getattr(http, "client_request_id", "")),
        caller=caller,
        snapshot=snapshot,
        model=model,
        end_user=str(user or metadata.get("user_id") or "")[:256],
        task_type=str(
            metadata.get("task_type") or http.headers.get("x-switchboard-task-type") or ""
        )[:100],
        cost_tier=str(metadata["cost_tier"]) if metadata.get("cost_tier") else None,
        user_tier=str(metadata["user_tier"]) if metadata.get("user_tier") else None,
    )


def _needs(request: ChatRequest, max_tokens: int) -> Needs:
    payload = request.payload
    capabilities = set()
    if request.stream:
        capabilities.add(Capability.STREAMING)
    if payload.get("tools"):
        capabilities.add(Capability.TOOLS)
    response_format = payload.get("response_format") or {}
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        capabilities.add(Capability.JSON_MODE)
    if _has_images(payload.get("messages", [])):
        capabilities.add(Capability.VISION)
    return Needs(
        capabilities=frozenset(str(c) for c in capabilities),
        prompt_tokens=estimate_tokens(payload["messages"], tools=payload.get("tools")),
        max_tokens=max_tokens,
        user_tier=None,
    )


def _has_images(messages: list[dict[str, Any]]) -> bool:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") == "image_url" for part in content
        ):
            return True
    return False


def _requested_max_tokens(payload: dict[str, Any]) -> int:
    value = payload.get("max_completion_tokens") or payload.get("max_tokens") or 0
    return int(value)


def _chat_payload_for(
    request: ChatRequest,
    defaults: tuple[tuple[str, Any], ...] = (),
    overrides: tuple[tuple[str, Any], ...] = (),
) -> Any:
    def payload_for(deployment: DeploymentEntry) -> dict[str, Any]:
        payload = dict(request.payload)
        for name, value in overrides:  # the experiment variant's parameters
            if name == "max_tokens":
                payload.pop("max_completion_tokens", None)
            payload[name] = value
        for name, value in defaults:  # the task profile's defaults, where the client set none
            if name == "max_tokens" and "max_completion_tokens" in payload:
                continue
            payload.setdefault(name, value)
        apply_token_cap(payload, max_output_tokens=deployment.max_output_tokens)
        if request.stream:
            # Always ask for usage upstream: billing needs it even if the client did not.
            payload["stream_options"] = {"include_usage": True}
        return payload

    return payload_for


def route_context(ctx: CallContext, request: ChatRequest, needs: Needs) -> dict[str, Any]:
    """What routing rule conditions can look at (see gateway/routing/conditions.py)."""
    return {
        "task_type": ctx.task_type or None,
        "user_tier": ctx.user_tier,
        "model": request.model,
        "prompt_tokens": needs.prompt_tokens,
        "max_tokens": needs.max_tokens,
        "key_name": ctx.caller.key.name,
        "capabilities": sorted(needs.capabilities),
        "cost_tier": ctx.cost_tier,
        "stream": request.stream,
        "metadata": request.metadata,
    }


LIVE_STRATEGIES = frozenset({"least_latency", "least_busy", "round_robin"})
OBSERVED_STRATEGIES = frozenset({"least_latency", "least_busy"})
live_stats = LiveStatsStore()


async def chat_route(ctx: CallContext, request: ChatRequest) -> RouteDecision:
    needs = _needs(request, _requested_max_tokens(request.payload))
    needs = Needs(needs.capabilities, needs.prompt_tokens, needs.max_tokens, ctx.user_tier)
    ctx.prompt_tokens = needs.prompt_tokens
    context = route_context(ctx, request, needs)
    subject = Subject(end_user=ctx.end_user, request_id=ctx.request_id)
    broken = open_breakers.current()
    decision = route(ctx.snapshot, ctx.caller, request.model, needs,
                     task_type=ctx.task_type or None, context=context,
                     subject=subject, open_breakers=broken)  # fmt: skip
    if decision.trace.strategy in LIVE_STRATEGIES:
        # Only these strategies need shared live numbers: one Redis round trip, then the
        # same (pure) routing again with them.
        target = decision.trace.profile or decision.trace.rule or request.model
        group = f"{ctx.caller.tenant.id}:{target}"
        stats = await live_stats.read(
            [d.id for d in decision.candidates],
            rr_group=group if decision.trace.strategy == "round_robin" else None,
        )
        decision = route(ctx.snapshot, ctx.caller, request.model, needs,
                         task_type=ctx.task_type or None, context=context, stats=stats,
                         subject=subject, open_breakers=broken)  # fmt: skip
    ctx.route = decision.trace
    ctx.request_overrides = decision.overrides
    if decision.trace.profile:
        profile = ctx.snapshot.profile(ctx.caller.tenant.id, decision.trace.profile)
        ctx.request_defaults = profile.defaults if profile else ()
    return decision


async def chat_candidates(ctx: CallContext, request: ChatRequest) -> list[DeploymentEntry]:
    candidates = (await chat_route(ctx, request)).candidates
    requested = _requested_max_tokens(request.payload)
    for name, value in ctx.request_overrides:
        if name == "max_tokens":
            requested = int(value)
    if not requested:
        requested = int(dict(ctx.request_defaults).get("max_tokens") or 0)
    await admit(ctx, candidates, prompt_tokens=ctx.prompt_tokens, requested_max_tokens=requested)
    return candidates


async def admit(
    ctx: CallContext, candidates: list[DeploymentEntry], *, prompt_tokens: int,
    requested_max_tokens: int,
) -> None:  # fmt: skip
    """Reserve the call's maximum cost on every budget that covers it and count it against
    its rate limits, in one Redis round trip; refusals become route errors (429 / 503)."""
    admission = budget_gate.admission_for(ctx, candidates, prompt_tokens=prompt_tokens,
                                          requested_max_tokens=requested_max_tokens)  # fmt: skip
    if admission is None:
        return
    try:
        ctx.admission_checked = await budget_gate.admit(ctx, admission)
    except ledger.Refused as refused:
        headers = {"retry-after": str(refused.retry_after_s)} if refused.retry_after_s else {}
        raise RouteError(429, refused.message, code=refused.reason, headers=headers) from None
    except budget_gate.BudgetUnavailable:
        raise RouteError(
            503,
            "Budgets cannot be checked right now; the call was not made.",
            code="budget_unavailable",
            headers={"retry-after": "1"},
        ) from None
    ctx.admission = admission


def _observer(ctx: CallContext) -> LiveStatsStore | None:
    if ctx.route is not None and ctx.route.strategy in OBSERVED_STRATEGIES:
        return live_stats
    return None


async def chat_call(ctx: CallContext, request: ChatRequest) -> ChatResult:
    candidates = await chat_candidates(ctx, request)
    try:
        deployment, body = await execute(
            "chat",
            candidates,
            _chat_payload_for(request, ctx.request_defaults, ctx.request_overrides),
            deadline=ctx.deadline,
            model=request.model,
            stats=ctx.stats,
            observer=_observer(ctx),
        )
    except ExecutionFailed as failure:
        await record_failure(ctx, failure, stream=False)
        raise
    usage = Usage.from_body(body.get("usage")) or Usage(
        estimate_tokens(request.payload["messages"]), 0
    )
    cost = deployment.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    body["model"] = deployment.name
    await record_usage(ctx, deployment=deployment, usage=usage, cost=cost, status="success",
                       http_status=200, stream=False)  # fmt: skip
    return ChatResult(deployment=deployment, body=body, usage=usage, cost=cost)


async def embeddings_call(ctx: CallContext, request: EmbeddingsRequest) -> ChatResult:
    tokens = _estimate_embedding_tokens(request.payload.get("input"))
    needs = Needs(frozenset({str(Capability.EMBEDDINGS)}), tokens, 0, ctx.user_tier)
    candidates = resolve_candidates(ctx.snapshot, ctx.caller, request.model, needs,
                                    open_breakers.current())  # fmt: skip
    await admit(ctx, candidates, prompt_tokens=tokens, requested_max_tokens=budget_gate.NO_OUTPUT)
    try:
        deployment, body = await execute(
            "embeddings",
            candidates,
            lambda deployment: dict(request.payload),
            deadline=ctx.deadline,
            model=request.model,
            stats=ctx.stats,
        )
    except ExecutionFailed as failure:
        await record_failure(ctx, failure, stream=False)
        raise
    usage = Usage.from_body(body.get("usage")) or Usage(tokens, 0)
    cost = deployment.cost(usage.prompt_tokens, 0)
    body["model"] = deployment.name
    await record_usage(ctx, deployment=deployment, usage=usage, cost=cost, status="success",
                       http_status=200, stream=False)  # fmt: skip
    return ChatResult(deployment=deployment, body=body, usage=usage, cost=cost)


def _estimate_embedding_tokens(value: Any) -> int:
    if isinstance(value, str):
        return math.ceil(len(value) / 4)
    if isinstance(value, list):
        return sum(
            _estimate_embedding_tokens(item) if not isinstance(item, int) else 1 for item in value
        )
    return 0


@dataclass
class StreamState:
    """What a stream produced so far: enough to bill it if it is cut short."""

    deployment: DeploymentEntry
    usage: Usage | None = None
    completion_chars: int = 0
    first_token_ms: int | None = None
    status: str = "success"
    error_kind: str = ""
    http_status: int = 200

    def note_chunk(self, chunk: dict[str, Any], ctx: CallContext) -> None:
        usage = Usage.from_body(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                text += (call.get("function") or {}).get("arguments") or ""
            if text:
                if self.first_token_ms is None:
                    self.first_token_ms = ctx.elapsed_ms()
                self.completion_chars += len(text)


async def chat_stream_call(ctx: CallContext, request: ChatRequest) -> OpenStream:
    """Open the upstream stream (retries and fallback happen here, before the first chunk)."""
    candidates = await chat_candidates(ctx, request)
    try:
        return await open_stream(
            candidates,
            _chat_payload_for(request, ctx.request_defaults, ctx.request_overrides),
            deadline=ctx.deadline,
            model=request.model,
            stats=ctx.stats,
            observer=_observer(ctx),
        )
    except ExecutionFailed as failure:
        await record_failure(ctx, failure, stream=True)
        raise


async def stream_chunks(
    ctx: CallContext, opened: OpenStream, state: StreamState
) -> AsyncIterator[dict[str, Any]]:
    """Yield upstream chunks (model renamed), with an idle timeout between chunks."""
    deployment = opened.deployment
    chunk = opened.first_chunk
    while True:
        state.note_chunk(chunk, ctx)
        chunk["model"] = deployment.name
        yield chunk
        try:
            async with asyncio.timeout(deployment.timeout_s):
                chunk = await anext(opened.rest)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ProviderError(
                ErrorKind.TIMEOUT, "The upstream stopped sending (idle timeout).", status=504
            ) from None


class StreamRenderer(Protocol):
    """Turns upstream OpenAI chunks into one wire format's bytes."""

    def chunk(self, chunk: dict[str, Any]) -> Iterable[bytes]: ...

    def end(self) -> Iterable[bytes]: ...

    def error(self, exc: ProviderError) -> Iterable[bytes]: ...


async def settled_stream(
    ctx: CallContext, chat: ChatRequest, opened: OpenStream, renderer: StreamRenderer
) -> AsyncIterator[bytes]:
    """Render a stream and, however it ends — done, broken upstream, client gone — close the
    upstream request and bill what was produced."""
    state = StreamState(deployment=opened.deployment)
    try:
        async for chunk in stream_chunks(ctx, opened, state):
            for part in renderer.chunk(chunk):
                yield part
        for part in renderer.end():
            yield part
    except ProviderError as exc:
        state.status, state.error_kind, state.http_status = "provider_error", str(exc.kind), 502
        for part in renderer.error(exc):
            yield part
    except (asyncio.CancelledError, GeneratorExit):
        # Cancelled (client gone while we awaited the upstream) or closed (client gone while
        # its socket was blocking a send): either way the caller left before the end.
        state.status, state.http_status = "cancelled", 499
        raise
    finally:
        with suppress(Exception):
            await opened.rest.aclose()  # type: ignore[attr-defined]  # stops the upstream
        await settle_stream(ctx, opened, state, chat)


async def settle_stream(
    ctx: CallContext, opened: OpenStream, state: StreamState, request: ChatRequest
) -> None:
    """Bill what the stream produced (the provider's usage, else an estimate) and record it.

    Runs from a `finally` that may be unwinding a cancellation (client gone): the write is
    shielded, so a second cancellation cannot drop it half way.
    """
    usage = state.usage or Usage(
        prompt_tokens=estimate_tokens(request.payload["messages"]),
        completion_tokens=math.ceil(state.completion_chars / 4),
    )
    deployment = opened.deployment
    cost = deployment.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    await asyncio.shield(
        record_usage(
            ctx,
            deployment=deployment,
            usage=usage,
            cost=cost,
            status=state.status,
            http_status=state.http_status,
            stream=True,
            error_type=state.error_kind,
            ttft_ms=state.first_token_ms,
        )
    )


async def record_failure(ctx: CallContext, failure: ExecutionFailed, *, stream: bool) -> None:
    status = "provider_error" if failure.stats.attempts else "error"
    await record_usage(ctx, deployment=failure.deployment, usage=Usage(0, 0), cost=Decimal(0),
                       status=status, http_status=failure.status, stream=stream,
                       error_type=str(failure.kind))  # fmt: skip


async def record_refusal(ctx: CallContext, *, http_status: int, error_type: str) -> None:
    """A call refused before any upstream attempt (unknown model, not allowed, bad input)."""
    await record_usage(ctx, deployment=None, usage=Usage(0, 0), cost=Decimal(0),
                       status="blocked", http_status=http_status, stream=False,
                       error_type=error_type)  # fmt: skip


def _experiment_fields(trace: RouteTrace | None) -> dict[str, Any]:
    """Calls an experiment assigned (not those after its promotion) count in its results."""
    if trace is None or trace.experiment_id is None or trace.promoted:
        return {}
    return {"experiment_id": trace.experiment_id, "variant": trace.variant or ""}


async def record_usage(
    ctx: CallContext,
    *,
    deployment: DeploymentEntry | None,
    usage: Usage,
    cost: Decimal,
    status: str,
    http_status: int,
    stream: bool,
    error_type: str = "",
    ttft_ms: int | None = None,
) -> None:
    # Never raises; in-process only (no database, no Redis), so it costs the call nothing.
    metrics.observe_call(ctx, deployment, usage, cost, status=status, error_type=error_type,
                         ttft_ms=ttft_ms, stream=stream)  # fmt: skip
    try:
        event = UsageEvent(
            request_id=ctx.request_id,
            created_at=ctx.started_at,
            tenant_id=ctx.caller.tenant.id,
            api_key_id=ctx.caller.key.id,
            team_id=ctx.caller.key.team_id,
            end_user=ctx.end_user,
            deployment_id=deployment.id if deployment else None,
            model=ctx.model,
            provider=deployment.provider if deployment else "",
            task_type=ctx.task_type,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cost_usd=cost,
            saved_cost_usd=Decimal(0),
            latency_ms=ctx.elapsed_ms(),
            ttft_ms=ttft_ms,
            status=status,
            http_status=http_status,
            error_type=error_type,
            attempts=ctx.stats.attempts,
            fallback_count=ctx.stats.fallbacks,
            cached=False,
            stream=stream,
            metadata={"client_request_id": ctx.client_request_id} if ctx.client_request_id else {},
            **_experiment_fields(ctx.route),
        )
        await budget_gate.settle(
            ctx.admission, event, checked=ctx.admission_checked,
            served_deployment_id=deployment.id if deployment else None,
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
        )  # fmt: skip
    except Exception:
        # The budgets issue makes money limits fail closed; usage loss is logged loudly.
        logger.exception("could not append the usage event for request %s", ctx.request_id)
