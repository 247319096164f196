"""Plumbing shared by the gateway's wire formats: authentication, body parsing, headers."""

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from budgets.gate import rate_limit_headers
from gateway.runtime.auth import Caller, GatewayAuthError, gateway_authenticate
from gateway.runtime.guard import GuardError, parse_json_body
from gateway.runtime.pipeline import CallContext
from gateway.runtime.snapshot import DeploymentEntry, Snapshot, snapshot_holder

# Renders (status, message, code, param, headers) in one wire format's error shape.
ErrorRenderer = Callable[[int, str, str, str | None, dict[str, str] | None], HttpResponse]


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


async def authenticate(request: HttpRequest) -> tuple[Caller, Snapshot]:
    snapshot = await snapshot_holder.get()
    try:
        return gateway_authenticate(request, snapshot), snapshot
    except GatewayAuthError as exc:
        raise GatewayError(
            401,
            str(exc),
            code="invalid_api_key",
            headers={"www-authenticate": 'Bearer realm="switchboard"'},
        ) from None


def json_body(request: HttpRequest) -> dict[str, Any]:
    limit = settings.GATEWAY_MAX_BODY_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, f"The request body is larger than {limit} bytes.", code="too_large")
    try:
        raw = request.body
    except RequestDataTooBig:
        raise GatewayError(
            413, f"The request body is larger than {limit} bytes.", code="too_large"
        ) from None
    try:
        return parse_json_body(raw, max_bytes=limit)
    except GuardError as exc:
        raise GatewayError(exc.status, str(exc), code=exc.code, param=exc.param) from None


def guard_error(exc: GuardError) -> GatewayError:
    return GatewayError(exc.status, str(exc), code=exc.code, param=exc.param)


def call_headers(
    ctx: CallContext, deployment: DeploymentEntry, *, cost: Decimal | None
) -> dict[str, str]:
    headers = {
        "x-switchboard-model": deployment.name,
        "x-switchboard-deployment": str(deployment.id),
        "x-switchboard-provider": deployment.provider,
        "x-switchboard-attempts": str(ctx.stats.attempts),
        "x-switchboard-fallbacks": str(ctx.stats.fallbacks),
        "x-switchboard-overhead-ms": f"{ctx.overhead_ms():.1f}",
    }
    if cost is not None:
        headers["x-switchboard-cost-usd"] = f"{cost:.10f}"
    if ctx.route is not None:
        headers["x-switchboard-route"] = ctx.route.header()
    headers.update(rate_limit_headers(ctx.admission))
    return headers


def request_id(request: HttpRequest) -> str:
    return str(getattr(request, "request_id", ""))


def client_request_id(request: HttpRequest) -> str:
    return str(getattr(request, "client_request_id", ""))


def sse_response(body: AsyncIterator[bytes], headers: dict[str, str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream", headers=headers)
    response["cache-control"] = "no-cache"
    response["x-accel-buffering"] = "no"  # proxies must not buffer a stream
    return response
