"""Executing one call across candidate deployments: timeouts, retries, fallback, breakers.

For each candidate in order: ask its circuit breaker (shared through Redis) for admission,
then try up to `max_attempts_per_deployment` times with full-jitter backoff that honours
`Retry-After`, each attempt bounded by the deployment timeout and the call's overall
deadline. Retriable failures (429, 5xx, timeouts, connection errors) move on to the next
candidate when retries run out; a request the provider rejects as invalid is returned at once.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

from gateway.runtime.breaker import BreakerConfig, CircuitBreaker, OpenBreakers
from gateway.runtime.providers import ProviderError, provider_for
from gateway.runtime.retry import ErrorKind, RetryPolicy, is_retriable, retry_delay
from gateway.runtime.snapshot import DeploymentEntry
from keyvault.resolver import secret_resolver

# The request itself is wrong: another deployment would refuse it too.
_FATAL_KINDS = frozenset(
    {ErrorKind.BAD_REQUEST, ErrorKind.CONTENT_POLICY, ErrorKind.CONTEXT_LENGTH}
)
# Failures that say something about the deployment's health (a 400 says nothing).
_HEALTH_KINDS = frozenset(
    {ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.RATE_LIMIT}
)

PayloadFor = Callable[[DeploymentEntry], dict[str, Any]]


class AttemptObserver(Protocol):
    """Told when an attempt starts and ends (live in-flight counts and latency)."""

    async def started(self, deployment_id: int) -> None: ...

    async def finished(self, deployment_id: int, latency_ms: float | None) -> None: ...


breaker = CircuitBreaker(
    BreakerConfig(
        window_s=settings.GATEWAY_BREAKER_WINDOW_S,
        min_requests=settings.GATEWAY_BREAKER_MIN_REQUESTS,
        failure_ratio=settings.GATEWAY_BREAKER_FAILURE_RATIO,
        open_s=settings.GATEWAY_BREAKER_OPEN_S,
    )
)
open_breakers = OpenBreakers()
policy = RetryPolicy(max_attempts_per_deployment=settings.GATEWAY_ATTEMPTS_PER_DEPLOYMENT)


@dataclass
class CallStats:
    attempts: int = 0
    deployments_tried: int = 0
    upstream_s: float = 0.0
    skipped_open: list[int] = field(default_factory=list)

    @property
    def fallbacks(self) -> int:
        return max(self.deployments_tried - 1, 0)


class ExecutionFailed(Exception):
    """Every candidate failed (or the request was rejected): status and message for the client."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: ErrorKind,
        stats: CallStats,
        retry_after: float | None = None,
        deployment: DeploymentEntry | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.stats = stats
        self.retry_after = retry_after
        self.deployment = deployment


def _failure(
    last: ProviderError | None,
    stats: CallStats,
    model: str,
    deployment: DeploymentEntry | None = None,
) -> ExecutionFailed:
    if last is None:
        return ExecutionFailed(
            503,
            f"Every deployment of '{model}' is unavailable right now (circuit open). "
            "Retry shortly.",
            kind=ErrorKind.SERVER,
            stats=stats,
            retry_after=5.0,
        )
    if last.kind is ErrorKind.RATE_LIMIT:
        status = 429
    elif last.kind is ErrorKind.TIMEOUT:
        status = 504
    elif last.kind in _FATAL_KINDS:
        status = last.status or 400
    elif last.kind is ErrorKind.VAULT:
        status = 503
    else:
        status = 502
    return ExecutionFailed(
        status,
        last.message,
        kind=last.kind,
        stats=stats,
        retry_after=last.retry_after,
        deployment=deployment,
    )


def _refresh_key(deployment: DeploymentEntry, error: ProviderError, already: bool) -> bool:
    if already or deployment.secret_ref is None:
        return False
    if error.kind not in (ErrorKind.AUTH, ErrorKind.PERMISSION):
        return False
    secret_resolver.invalidate(deployment.secret_ref)
    return True


async def _run_on_candidates(
    candidates: Sequence[DeploymentEntry],
    attempt: Callable[[DeploymentEntry, float], Awaitable[Any]],
    *,
    deadline: float,
    model: str,
    stats: CallStats,
    observer: AttemptObserver | None = None,
) -> tuple[DeploymentEntry, Any]:
    last: ProviderError | None = None
    tried: DeploymentEntry | None = None
    for deployment in candidates:
        admission = await breaker.admit(deployment.id)
        open_breakers.note(deployment.id, open_=not admission.allowed)
        if not admission.allowed:
            stats.skipped_open.append(deployment.id)
            continue
        stats.deployments_tried += 1
        tried = deployment
        key_refreshed = False
        number = 0
        while number < policy.max_attempts_per_deployment:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _failure(
                    last or ProviderError(ErrorKind.TIMEOUT, "The call's deadline passed."),
                    stats,
                    model,
                    tried,
                )
            stats.attempts += 1
            started = time.monotonic()
            if observer is not None:
                await observer.started(deployment.id)
            try:
                timeout = min(deployment.timeout_s, remaining)
                async with asyncio.timeout(timeout):
                    result = await attempt(deployment, timeout)
            except TimeoutError:
                last = ProviderError(ErrorKind.TIMEOUT, "The upstream timed out.", status=504)
            except ProviderError as exc:
                last = exc
            else:
                if observer is not None:
                    await observer.finished(deployment.id, (time.monotonic() - started) * 1000)
                stats.upstream_s += time.monotonic() - started
                await breaker.record(deployment.id, success=True, probe=admission.probe)
                return deployment, result
            if observer is not None:
                await observer.finished(deployment.id, None)
            stats.upstream_s += time.monotonic() - started
            if _refresh_key(deployment, last, key_refreshed):
                # The provider refused the key: it may have been rotated in the vault.
                # Refetch once and retry once, without spending a retry.
                key_refreshed = True
                continue
            if last.kind in _HEALTH_KINDS:
                await breaker.record(deployment.id, success=False, probe=admission.probe)
            if last.kind in _FATAL_KINDS:
                raise _failure(last, stats, model, tried)
            if not is_retriable(last.kind) or number + 1 >= policy.max_attempts_per_deployment:
                break
            delay = retry_delay(
                number,
                retry_after=last.retry_after,
                remaining=deadline - time.monotonic(),
                max_retry_after=policy.max_retry_after,
            )
            if delay is None:
                break
            await asyncio.sleep(delay)
            number += 1
    raise _failure(last, stats, model, tried)


async def execute(
    operation: str,
    candidates: Sequence[DeploymentEntry],
    payload_for: PayloadFor,
    *,
    deadline: float,
    model: str,
    stats: CallStats,
    observer: AttemptObserver | None = None,
) -> tuple[DeploymentEntry, dict[str, Any]]:
    """A non-streaming call (`chat` or `embeddings`) on the first candidate that succeeds."""

    async def attempt(deployment: DeploymentEntry, timeout: float) -> dict[str, Any]:
        call = getattr(provider_for(deployment), operation)
        result: dict[str, Any] = await call(deployment, payload_for(deployment), timeout=timeout)
        return result

    return await _run_on_candidates(
        candidates, attempt, deadline=deadline, model=model, stats=stats, observer=observer
    )


@dataclass
class OpenStream:
    deployment: DeploymentEntry
    first_chunk: dict[str, Any]
    rest: AsyncIterator[dict[str, Any]]


async def open_stream(
    candidates: Sequence[DeploymentEntry],
    payload_for: PayloadFor,
    *,
    deadline: float,
    model: str,
    stats: CallStats,
    observer: AttemptObserver | None = None,
) -> OpenStream:
    """Start a stream; retries and fallback apply until the first chunk arrives, not after."""

    async def attempt(deployment: DeploymentEntry, timeout: float) -> OpenStream:
        iterator = provider_for(deployment).chat_stream(
            deployment, payload_for(deployment), timeout=timeout
        )
        try:
            first = await anext(iterator)
        except StopAsyncIteration:
            raise ProviderError(
                ErrorKind.SERVER, "The upstream stream was empty.", status=502
            ) from None
        except BaseException:
            await iterator.aclose()  # type: ignore[attr-defined]
            raise
        return OpenStream(deployment=deployment, first_chunk=first, rest=iterator)

    # For a stream the observed latency is the time to the first chunk.
    _, opened = await _run_on_candidates(
        candidates, attempt, deadline=deadline, model=model, stats=stats, observer=observer
    )
    result: OpenStream = opened
    return result
