"""One small provider-call interface, two implementations.

`DirectProvider` speaks the OpenAI wire format over a pooled aiohttp session (OpenAI, Azure
OpenAI and any OpenAI-compatible server); `LiteLLMProvider` goes through `litellm` for every
other provider and translation. Both return OpenAI-format dicts and raise `ProviderError`
with the same kinds, so the executor and the client see the same behaviour either way.
"""

import asyncio
import json
import os
import time
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any, Protocol

import aiohttp
import litellm
from django.conf import settings
from yarl import URL

from gateway.netpolicy import EgressRefused, check_host
from gateway.runtime.retry import ErrorKind, kind_for_status, parse_retry_after
from gateway.runtime.snapshot import DeploymentEntry
from keyvault.resolver import SecretUnavailable, secret_resolver
from switchboard.logging import redact
from switchboard.secrets import Secret

OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"
EGRESS_CHECK_TTL_S = 30.0
NO_KEY_PLACEHOLDER = "switchboard-no-key-configured"
MAX_ERROR_TEXT = 300

litellm.suppress_debug_info = True
litellm.telemetry = False


class ProviderError(Exception):
    """A failed upstream attempt: what kind, the status, and a message safe for the client."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.message = message


def _safe_text(text: str) -> str:
    """Provider error text, with anything credential-shaped scrubbed and length bounded."""
    return redact(text)[:MAX_ERROR_TEXT]


async def provider_key(deployment: DeploymentEntry) -> Secret:
    """The provider key: from the deployment's vault reference (cached), or, in development,
    from the environment variable it names; none when neither is set."""
    if deployment.secret_ref is not None:
        try:
            return await secret_resolver.get(deployment.secret_ref)
        except SecretUnavailable as exc:
            raise ProviderError(ErrorKind.VAULT, str(exc), status=503) from None
    if not deployment.api_key_env:
        return Secret("")
    value = os.environ.get(deployment.api_key_env) if settings.KEYVAULT_ALLOW_ENV_BACKEND else None
    if value is None:
        raise ProviderError(
            ErrorKind.AUTH,
            f"The provider key for deployment {deployment.id} is not configured.",
            status=502,
        )
    return Secret(value)


class ProviderCall(Protocol):
    async def chat(
        self, deployment: DeploymentEntry, payload: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]: ...

    def chat_stream(
        self, deployment: DeploymentEntry, payload: dict[str, Any], *, timeout: float
    ) -> AsyncIterator[dict[str, Any]]: ...

    async def embeddings(
        self, deployment: DeploymentEntry, payload: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]: ...


# --- Direct OpenAI-compatible passthrough ----------------------------------------------------
#
# aiohttp rather than httpx here: httpcore's pool scans every connection for each request,
# which dominated CPU at a few hundred concurrent upstream calls (measured with py-spy).

# Keyed by the loop object (weakly): a loop id can be reused after its loop is gone.
_sessions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]" = (
    weakref.WeakKeyDictionary()
)
_egress_ok_until: dict[str, float] = {}


def _http_session() -> aiohttp.ClientSession:
    """One pooled session per event loop (aiohttp sessions are bound to their loop)."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=4000, limit_per_host=0, ttl_dns_cache=30),
            json_serialize=lambda value: json.dumps(value, separators=(",", ":")),
        )
        _sessions[loop] = session
    return session


async def _check_egress(host: str) -> None:
    """Re-resolve the upstream host (DNS can change after save); cached briefly per host."""
    now = time.monotonic()
    if _egress_ok_until.get(host, 0.0) > now:
        return
    allowed = tuple(settings.ALLOWED_UPSTREAM_HOSTS)
    try:
        await asyncio.to_thread(check_host, host, allowed=allowed)
    except EgressRefused as exc:
        raise ProviderError(ErrorKind.CONNECTION, f"Upstream refused: {exc}", status=502) from None
    _egress_ok_until[host] = now + EGRESS_CHECK_TTL_S


async def _endpoint(deployment: DeploymentEntry, operation: str) -> tuple[URL, dict[str, str]]:
    key = (await provider_key(deployment)).reveal()
    if deployment.provider == "azure":
        url = URL(
            f"{deployment.api_base}/openai/deployments/{deployment.upstream_model}/{operation}"
        ).with_query({"api-version": deployment.api_version})
        return url, {"api-key": key}
    base = deployment.api_base or OPENAI_DEFAULT_BASE
    return URL(f"{base}/{operation}"), ({"authorization": f"Bearer {key}"} if key else {})


def _error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    detail = ""
    try:
        parsed = json.loads(body)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict):
            detail = str(error.get("message", ""))
        elif isinstance(error, str):
            detail = error
    except ValueError:
        detail = ""
    kind = kind_for_status(status)
    message = f"Upstream returned {status}" + (f": {_safe_text(detail)}" if detail else ".")
    return ProviderError(
        kind, message, status=status, retry_after=parse_retry_after(headers.get("retry-after"))
    )


def _transport_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, TimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, "The upstream timed out.", status=504)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProviderError(ErrorKind.SERVER, "The upstream stream ended early.", status=502)
    return ProviderError(
        ErrorKind.CONNECTION, f"Could not reach the upstream ({type(exc).__name__}).", status=502
    )


def _upstream_payload(deployment: DeploymentEntry, payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "model": deployment.upstream_model}


class DirectProvider:
    """OpenAI wire format straight to the upstream: no translation, pooled connections."""

    async def _post(
        self, deployment: DeploymentEntry, operation: str, payload: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        url, headers = await _endpoint(deployment, operation)
        await _check_egress(url.host or "")
        limits = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0))
        try:
            async with _http_session().post(
                url,
                json=_upstream_payload(deployment, payload),
                headers=headers,
                timeout=limits,
                allow_redirects=False,  # a redirect could carry the request, and key, elsewhere
            ) as response:
                content = await response.read()
                status, response_headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc) from None
        if status >= 400:
            raise _error_from_response(status, response_headers, content)
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderError(
                ErrorKind.SERVER, "The upstream sent a malformed response.", status=502
            )
        return body

    async def chat(
        self, deployment: DeploymentEntry, payload: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        return await self._post(deployment, "chat/completions", payload, timeout)

    async def embeddings(
        self, deployment: DeploymentEntry, payload: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        return await self._post(deployment, "embeddings", payload, timeout)

    async def chat_stream(
        self, deployment: DeploymentEntry, payload: dict[str, Any], *, timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        url, headers = await _endpoint(deployment, "chat/completions")
        await _check_egress(url.host or "")
        # No total limit on a stream; the idle time between reads is bounded instead.
        limits = aiohttp.ClientTimeout(total=None, connect=min(timeout, 5.0), sock_read=timeout)
        try:
            async with _http_session().post(
                url,
                json=_upstream_payload(deployment, payload),
                headers=headers,
                timeout=limits,
                allow_redirects=False,
            ) as response:
                if response.status >= 400:
                    content = await response.read()
                    raise _error_from_response(response.status, response.headers, content)
                async for chunk in _sse_chunks(response.content):
                    yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc) from None


async def _sse_chunks(lines: AsyncIterable[bytes]) -> AsyncIterator[dict[str, Any]]:
    """Parse `data:` lines; a stream that ends without [DONE] was cut short."""
    async for raw in lines:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ProviderError(
                ErrorKind.SERVER, "The upstream sent a malformed stream chunk.", status=502
            ) from None
        if isinstance(chunk, dict):
            if "error" in chunk and not chunk.get("choices"):
                error = chunk["error"]
                message = error.get("message", "") if isinstance(error, dict) else str(error)
                raise ProviderError(
                    ErrorKind.SERVER, f"Upstream stream error: {_safe_text(message)}", status=502
                )
            yield chunk
    raise ProviderError(ErrorKind.SERVER, "The upstream stream ended early.", status=502)


# --- litellm ---------------------------------------------------------------------------------


async def _litellm_kwargs(
    deployment: DeploymentEntry, payload: dict[str, Any], timeout: float
) -> dict[str, Any]:
    kwargs = {key: value for key, value in payload.items() if key != "model"}
    kwargs.update(model=deployment.litellm_model, timeout=timeout, num_retries=0, max_retries=0)
    if deployment.api_base:
        # Re-check egress at call time here too (DNS may have changed since the deployment
        # was saved); litellm does its own connecting.
        await _check_egress(URL(deployment.api_base).host or "")
        kwargs["api_base"] = deployment.api_base
    if deployment.api_version:
        kwargs["api_version"] = deployment.api_version
    key = await provider_key(deployment)
    # Without a configured key litellm would fall back to the platform's own environment
    # variables (OPENAI_API_KEY, ANTHROPIC_API_KEY, …): send a placeholder instead.
    kwargs["api_key"] = key.reveal() if key else NO_KEY_PLACEHOLDER
    return kwargs


def _litellm_error(exc: Exception) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, litellm.Timeout | asyncio.TimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, "The upstream timed out.", status=504)
    if isinstance(exc, litellm.ContextWindowExceededError):
        return ProviderError(
            ErrorKind.CONTEXT_LENGTH, "The prompt is too long for this model.", status=400
        )
    if isinstance(exc, litellm.ContentPolicyViolationError):
        return ProviderError(
            ErrorKind.CONTENT_POLICY, "The provider refused the content (policy).", status=400
        )
    status = getattr(exc, "status_code", None)
    if isinstance(exc, litellm.APIConnectionError) and status in (None, 500):
        return ProviderError(
            ErrorKind.CONNECTION, "Could not reach the upstream (connection error).", status=502
        )
    headers = getattr(exc, "headers", None) or getattr(exc, "litellm_response_headers", None)
    retry_after = None
    if headers is not None:
        retry_after = parse_retry_after(headers.get("retry-after"))
    status_code = status if isinstance(status, int) else 502
    detail = _safe_text(str(getattr(exc, "message", "") or exc))
    return ProviderError(
        kind_for_status(status_code),
        f"Upstream returned {status_code}: {detail}",
        status=status_code,
        retry_after=retry_after,
    )


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    dumped: dict[str, Any] = obj.model_dump(exclude_none=True)
    return dumped


class LiteLLMProvider:
    """Every provider litellm supports, translated to and from the OpenAI format."""

    async def chat(
        self, deployment: DeploymentEntry, payload: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        try:
            response = await litellm.acompletion(
                **await _litellm_kwargs(deployment, payload, timeout)
            )
        except Exception as exc:
            raise _litellm_error(exc) from None
        return _as_dict(response)

    async def embeddings(
        self, deployment: DeploymentEntry, payload: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        try:
            response = await litellm.aembedding(
                **await _litellm_kwargs(deployment, payload, timeout)
            )
        except Exception as exc:
            raise _litellm_error(exc) from None
        return _as_dict(response)

    async def chat_stream(
        self, deployment: DeploymentEntry, payload: dict[str, Any], *, timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            kwargs = await _litellm_kwargs(deployment, payload, timeout)
            kwargs["stream"] = True
            stream = await litellm.acompletion(**kwargs)
            async for chunk in stream:
                yield _as_dict(chunk)
        except Exception as exc:
            raise _litellm_error(exc) from None


_direct = DirectProvider()
_litellm = LiteLLMProvider()


def provider_for(deployment: DeploymentEntry) -> ProviderCall:
    return _direct if deployment.direct else _litellm
