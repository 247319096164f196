"""The fake LLM upstream: an aiohttp app speaking the OpenAI, Azure OpenAI and Anthropic formats.

Built for load tests, so the hot path avoids per-request work that is not needed: no access
log, no middleware, stream chunks are built from pre-encoded templates, and a stream without
``chunk_delay`` goes out in a single write.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.log import access_logger

from switchboard.fakellm import replies
from switchboard.fakellm.faults import FAULT_HEADER, DirectiveError, Faults, resolve, split_model

DEFAULT_HOST = "127.0.0.1"
MAX_BODY_BYTES = 64 * 1024 * 1024
SECRET_HEADERS = ("authorization", "api-key", "x-api-key")
MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "text-embedding-3-small",
    "claude-3-5-haiku-latest",
    "claude-sonnet-4-5",
)

JSON_HEADERS = {"Content-Type": "application/json"}
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}

# Ids only need to be unique, not unpredictable: a per-process random prefix plus a counter.
_ID_PREFIX = secrets.token_hex(4)
_id_counter = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}{_ID_PREFIX}{next(_id_counter):010d}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class State:
    """Request counters and fail_first bookkeeping; lives on the server's event loop."""

    def __init__(self, require_key: str | None) -> None:
        self.require_key = require_key
        # Set when the server stops so hanging requests let go instead of blocking shutdown.
        self.stopping = asyncio.Event()
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_path: Counter[str] = Counter()
        self.by_model: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        # Raw pairs are kept as-is and only turned into names when stats are asked for.
        self.last_raw_headers: tuple[tuple[bytes, bytes], ...] = ()
        self.fail_counts: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        names = sorted({name.decode("latin-1").lower() for name, _ in self.last_raw_headers})
        last_headers: dict[str, Any] = {"names": names}
        # Only whether a credential was sent, never its value.
        last_headers.update({header: header in names for header in SECRET_HEADERS})
        return {
            "requests": self.requests,
            "by_path": dict(self.by_path),
            "by_model": dict(self.by_model),
            "by_status": {str(code): count for code, count in sorted(self.by_status.items())},
            "last_headers": last_headers,
        }


STATE_KEY = web.AppKey("fakellm_state", State)


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the API formats: error body shape, auth and version checks."""

    name: str
    anthropic_errors: bool
    key_headers: tuple[str, ...]
    bearer: bool
    version_query: str | None = None
    version_header: str | None = None


OPENAI = Dialect("openai", anthropic_errors=False, key_headers=(), bearer=True)
AZURE = Dialect(
    "azure", anthropic_errors=False, key_headers=("api-key",), bearer=True,
    version_query="api-version",
)  # fmt: skip
ANTHROPIC = Dialect(
    "anthropic", anthropic_errors=True, key_headers=("x-api-key",), bearer=False,
    version_header="anthropic-version",
)  # fmt: skip
# /v1/models is shared by the OpenAI and Anthropic APIs, so any of their credentials will do.
ANY_V1 = Dialect("v1", anthropic_errors=False, key_headers=("api-key", "x-api-key"), bearer=True)


class ApiError(Exception):
    """An error answered in the request's API format."""

    def __init__(self, status: int, message: str, *, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_response(dialect: Dialect, error: ApiError) -> web.Response:
    if dialect.anthropic_errors:
        default = "api_error" if error.status >= 500 else "invalid_request_error"
        kind = _ANTHROPIC_ERROR_TYPES.get(error.status, default)
        payload: dict[str, Any] = {
            "type": "error",
            "error": {"type": kind, "message": error.message},
        }
    else:
        default_pair = (
            ("server_error", None) if error.status >= 500 else ("invalid_request_error", None)
        )
        kind, code = _OPENAI_ERROR_TYPES.get(error.status, default_pair)
        payload = {"error": {"message": error.message, "type": kind, "param": None, "code": code}}
    headers = dict(JSON_HEADERS)
    if error.retry_after is not None:
        headers["Retry-After"] = error.retry_after
    return web.Response(status=error.status, body=_dumps(payload).encode(), headers=headers)


# --------------------------------------------------------------------------- request plumbing

ApiHandler = Callable[[web.Request, State], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def endpoint(state: State, dialect: Dialect, handler: ApiHandler) -> Handler:
    """Wrap an API handler with counting, auth, version checks and error formatting."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        state.requests += 1
        state.by_path[request.path] += 1
        state.last_raw_headers = request.raw_headers
        try:
            _check_auth(state.require_key, dialect, request)
            _check_version(dialect, request)
            response = await handler(request, state)
        except ApiError as error:
            response = error_response(dialect, error)
        except web.HTTPException as error:  # e.g. body too large, raised by aiohttp itself
            response = error_response(dialect, ApiError(error.status, error.reason))
        state.by_status[response.status] += 1
        return response

    return wrapped


def _check_auth(require_key: str | None, dialect: Dialect, request: web.Request) -> None:
    if require_key is None:
        return
    offered = [request.headers.get(name) for name in dialect.key_headers]
    if dialect.bearer:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            offered.append(token.strip())
    expected = require_key.encode()
    if any(key is not None and hmac.compare_digest(key.encode(), expected) for key in offered):
        return
    where = [*dialect.key_headers, *(["Authorization: Bearer"] if dialect.bearer else [])]
    raise ApiError(401, f"invalid or missing API key (send it in {' or '.join(where)})")


def _check_version(dialect: Dialect, request: web.Request) -> None:
    if dialect.version_query and not request.query.get(dialect.version_query):
        raise ApiError(400, f"missing required query parameter '{dialect.version_query}'")
    if dialect.version_header and not request.headers.get(dialect.version_header):
        raise ApiError(400, f"missing required header '{dialect.version_header}'")


async def _read_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def _optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    # bool is an int subclass; a flag where a number belongs is still a type error.
    if value is not None and (not isinstance(value, kind) or _bool_for_int(value, kind)):
        raise ApiError(400, f"'{name}' has the wrong type")
    return value


def _bool_for_int(value: Any, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, bool) and kind is int


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value: int | None = _optional(body, name, int)
    if value is not None and value < 1:
        raise ApiError(400, f"'{name}' must be at least 1")
    return value


def _model(body: dict[str, Any], fallback: str | None) -> str:
    model: str | None = _optional(body, "model", str)
    if model is not None:
        return model
    if fallback is None:
        raise ApiError(400, "'model' is required")
    return fallback


def _faults(request: web.Request, directives: str) -> Faults:
    try:
        return resolve(directives, request.headers.get(FAULT_HEADER))
    except DirectiveError as error:
        raise ApiError(400, str(error)) from None


async def _apply_faults(state: State, faults: Faults, fail_key: str) -> None:
    """The faults that act before any answer: latency, hang and error statuses."""
    if faults.latency:
        await asyncio.sleep(faults.latency / 1000)
    if faults.hang:
        # Handler cancellation ends this when the client disconnects; shutdown sets the event.
        await state.stopping.wait()
        raise ApiError(503, "fake upstream is shutting down")
    if faults.status is not None and _should_fail(state, faults, fail_key):
        raise ApiError(
            faults.status, f"fake fault: status {faults.status}", retry_after=faults.retry_after
        )


def _fail_key(request: web.Request, model: str) -> str:
    """fail_first counts per exact model string plus the fault header, if any."""
    header = request.headers.get(FAULT_HEADER)
    return model if header is None else f"{model}|{header}"


def _should_fail(state: State, faults: Faults, fail_key: str) -> bool:
    if faults.fail_first is None and faults.fail_every is None:
        return True
    state.fail_counts[fail_key] += 1
    if faults.fail_every is not None:
        return state.fail_counts[fail_key] % faults.fail_every == 0
    return state.fail_counts[fail_key] <= (faults.fail_first or 0)


def _json_response(payload: dict[str, Any], faults: Faults) -> web.Response:
    body = _dumps(payload).encode()
    if faults.malformed:
        body = b'{"id": "fake-malformed", "choices": [{"index": 0,, "message": }'
    elif faults.truncate:
        body = body[: len(body) // 2]
    return web.Response(body=body, headers=JSON_HEADERS)


async def _stream(
    request: web.Request,
    state: State,
    faults: Faults,
    parts: tuple[list[bytes], list[bytes], list[bytes]],
    broken: bytes,
) -> web.StreamResponse:
    """Send head, content and tail SSE events, applying chunk_delay/truncate/malformed."""
    head, content, tail = parts
    half = len(content) // 2
    events = head + content[:half]
    if faults.malformed:
        events.append(broken)
    if not faults.truncate:
        events += content[half:] + tail
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    try:
        finished = await _write_events(response, events, faults.chunk_delay / 1000, state)
        if finished and not faults.truncate:
            await response.write_eof()
        else:
            _drop_connection(request)
    except ConnectionError:
        pass  # the client went away mid-stream; there is nobody left to tell
    return response


async def _write_events(
    response: web.StreamResponse, events: list[bytes], delay: float, state: State
) -> bool:
    if not delay:
        await response.write(b"".join(events))
        return True
    for index, event in enumerate(events):
        if index:
            await asyncio.sleep(delay)
            if state.stopping.is_set():
                return False
        await response.write(event)
    return True


def _drop_connection(request: web.Request) -> None:
    """Close the socket without ending the chunked body, as a crashed upstream would."""
    transport = request.transport
    if transport is not None:
        transport.close()


# --------------------------------------------------------------------------- chat requests


@dataclass(frozen=True, slots=True)
class Chat:
    """A validated chat request, format-independent."""

    model: str
    faults: Faults
    stream: bool
    include_usage: bool
    prompt_tokens: int
    reply: replies.Reply
    tool_call: dict[str, Any] | None = None


def _messages(body: dict[str, Any], roles: frozenset[str] | None) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(400, f"messages[{index}] must be an object with a string 'role'")
        if roles is not None and message["role"] not in roles:
            raise ApiError(400, f"messages[{index}].role must be one of {sorted(roles)}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise ApiError(400, f"messages[{index}].content must be a string or a list")
    return messages


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return replies.content_text(message.get("content"))
    return ""


def _build_chat(
    request: web.Request,
    model: str,
    directives: str,
    messages: list[dict[str, Any]],
    *,
    system: str | None,
    body: dict[str, Any],
    max_tokens: int | None,
) -> Chat:
    faults = _faults(request, directives)
    texts = [replies.content_text(message.get("content")) for message in messages]
    if system is not None:
        texts.append(system)
    seed = [split_model(model)[0], system, messages]
    natural = faults.tokens or replies.DEFAULT_TOKENS
    options = _optional(body, "stream_options", dict) or {}
    return Chat(
        model=model,
        faults=faults,
        stream=bool(_optional(body, "stream", bool)),
        include_usage=options.get("include_usage") is True,
        prompt_tokens=replies.prompt_tokens(texts),
        reply=replies.make_reply(seed, _last_user_text(messages), natural, max_tokens),
    )


def _openai_chat(request: web.Request, body: dict[str, Any], deployment: str | None) -> Chat:
    messages = _messages(body, roles=None)
    model = _model(body, deployment)
    max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    # Azure: the deployment in the path is the "model" that carries directives.
    directives = split_model(deployment if deployment is not None else model)[1]
    chat = _build_chat(
        request, model, directives, messages, system=None, body=body, max_tokens=max_tokens
    )
    tool_call = _tool_call(body, messages)
    if tool_call is None:
        return chat
    return Chat(
        **{**{f: getattr(chat, f) for f in chat.__dataclass_fields__}, "tool_call": tool_call}
    )


def _tool_call(body: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Call the first offered function, unless told not to or a tool result just came back."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools or body.get("tool_choice") == "none":
        return None
    if messages and messages[-1].get("role") == "tool":
        return None
    function = tools[0].get("function") if isinstance(tools[0], dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ApiError(400, "'tools[0].function.name' must be a string")
    words = _last_user_text(messages).split()[:4]
    arguments = _dumps({"query": " ".join(words)})
    call_id = "call_" + replies.seed_hex([function["name"], arguments])[:24]
    return {"id": call_id, "type": "function",
            "function": {"name": function["name"], "arguments": arguments}}  # fmt: skip


async def openai_chat(request: web.Request, state: State) -> web.StreamResponse:
    return await _serve_openai_chat(request, state, deployment=None)


async def azure_chat(request: web.Request, state: State) -> web.StreamResponse:
    return await _serve_openai_chat(request, state, deployment=request.match_info["deployment"])


async def _serve_openai_chat(
    request: web.Request, state: State, deployment: str | None
) -> web.StreamResponse:
    body = await _read_object(request)
    chat = _openai_chat(request, body, deployment)
    model = deployment if deployment is not None else chat.model
    state.by_model[model] += 1
    await _apply_faults(state, chat.faults, _fail_key(request, model))
    if chat.stream:
        return await _stream(request, state, chat.faults, _openai_events(chat), _OPENAI_BROKEN)
    return _json_response(_openai_completion(chat), chat.faults)


def _usage(chat: Chat) -> dict[str, Any]:
    completion = chat.reply.tokens
    return {
        "prompt_tokens": chat.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": chat.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _finish_reason(chat: Chat) -> str:
    if chat.tool_call is not None:
        return "tool_calls"
    return "length" if chat.reply.cut else "stop"


def _openai_completion(chat: Chat) -> dict[str, Any]:
    return {
        "id": _new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "system_fingerprint": "fp_fakellm",
        "choices": [
            {
                "index": 0,
                "message": _message(chat),
                "logprobs": None,
                "finish_reason": _finish_reason(chat),
            }
        ],
        "usage": _usage(chat),
    }


def _message(chat: Chat) -> dict[str, Any]:
    if chat.tool_call is not None:
        return {"role": "assistant", "content": None, "tool_calls": [chat.tool_call]}
    return {"role": "assistant", "content": chat.reply.text, "refusal": None}


def _tool_call_deltas(call: dict[str, Any]) -> list[dict[str, Any]]:
    """The call's name first, then its arguments in a few pieces, as real streams do."""
    arguments = call["function"]["arguments"]
    head = {"index": 0, "id": call["id"], "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""}}  # fmt: skip
    step = max(len(arguments) // 3, 1)
    pieces = [arguments[i : i + step] for i in range(0, len(arguments), step)]
    return [head] + [{"index": 0, "function": {"arguments": piece}} for piece in pieces]


_OPENAI_BROKEN = b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content": \n\n'


def _openai_events(chat: Chat) -> tuple[list[bytes], list[bytes], list[bytes]]:
    envelope = {
        "id": _new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": chat.model,
        "system_fingerprint": "fp_fakellm",
    }
    # Every chunk shares this prefix; only the choices differ, so encode the envelope once.
    prefix = "data: " + _dumps(envelope)[:-1] + ","

    def choice(delta: dict[str, Any], finish: str | None) -> bytes:
        item = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return f'{prefix}"choices":[{_dumps(item)}]}}\n\n'.encode()

    piece_prefix = prefix + '"choices":[{"index":0,"delta":{"content":'
    piece_suffix = '},"logprobs":null,"finish_reason":null}]}\n\n'
    if chat.tool_call is not None:
        content = [
            choice({"tool_calls": [delta]}, None) for delta in _tool_call_deltas(chat.tool_call)
        ]
    else:
        content = [f"{piece_prefix}{_dumps(p)}{piece_suffix}".encode() for p in chat.reply.pieces]
    tail = [choice({}, _finish_reason(chat))]
    if chat.include_usage:
        tail.append(f'{prefix}"choices":[],"usage":{_dumps(_usage(chat))}}}\n\n'.encode())
    tail.append(b"data: [DONE]\n\n")
    return [choice({"role": "assistant", "content": ""}, None)], content, tail


# --------------------------------------------------------------------------- anthropic

_ANTHROPIC_ROLES = frozenset({"user", "assistant"})
_ANTHROPIC_BROKEN = (
    b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": \n\n'
)


def _anthropic_chat(request: web.Request, body: dict[str, Any]) -> Chat:
    messages = _messages(body, roles=_ANTHROPIC_ROLES)
    model = _model(body, None)
    system = _optional(body, "system", (str, list))
    # The real API requires max_tokens; the fake is lenient and uses its default length.
    max_tokens = _positive_int(body, "max_tokens")
    return _build_chat(
        request,
        model,
        split_model(model)[1],
        messages,
        system=None if system is None else replies.content_text(system),
        body=body,
        max_tokens=max_tokens,
    )


async def anthropic_messages(request: web.Request, state: State) -> web.StreamResponse:
    body = await _read_object(request)
    chat = _anthropic_chat(request, body)
    state.by_model[chat.model] += 1
    await _apply_faults(state, chat.faults, _fail_key(request, chat.model))
    if chat.stream:
        events = _anthropic_events(chat)
        return await _stream(request, state, chat.faults, events, _ANTHROPIC_BROKEN)
    return _json_response(_anthropic_message(chat), chat.faults)


def _stop_reason(chat: Chat) -> str:
    return "max_tokens" if chat.reply.cut else "end_turn"


def _anthropic_message(chat: Chat) -> dict[str, Any]:
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": chat.model,
        "content": [{"type": "text", "text": chat.reply.text}],
        "stop_reason": _stop_reason(chat),
        "stop_sequence": None,
        "usage": {"input_tokens": chat.prompt_tokens, "output_tokens": chat.reply.tokens},
    }


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {_dumps(data)}\n\n".encode()


def _anthropic_events(chat: Chat) -> tuple[list[bytes], list[bytes], list[bytes]]:
    message = _anthropic_message(chat)
    # output_tokens is 0 here: the cumulative count arrives with message_delta.
    message.update(content=[], stop_reason=None, usage={**message["usage"], "output_tokens": 0})
    head = [
        _sse("message_start", {"type": "message_start", "message": message}),
        _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        _sse("ping", {"type": "ping"}),
    ]
    piece_prefix = (
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":'
    )
    content = [f"{piece_prefix}{_dumps(p)}}}}}\n\n".encode() for p in chat.reply.pieces]
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(chat), "stop_sequence": None},
        "usage": {"output_tokens": chat.reply.tokens},
    }
    tail = [
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse("message_delta", delta),
        _sse("message_stop", {"type": "message_stop"}),
    ]
    return head, content, tail


# --------------------------------------------------------------------------- embeddings


def _embedding_inputs(body: dict[str, Any]) -> list[tuple[str, int]]:
    """(text to hash, token count) per input: strings, token arrays or lists of either."""
    value = body.get("input")
    if isinstance(value, str):
        return [(value, replies.count_tokens(value))]
    if isinstance(value, list) and value:
        if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            return [(_dumps(value), len(value))]
        if all(isinstance(item, str) for item in value):
            return [(item, replies.count_tokens(item)) for item in value]
        if all(isinstance(item, list) and item for item in value):
            return [(_dumps(item), len(item)) for item in value]
    raise ApiError(400, "'input' must be a string, a non-empty list of strings or token arrays")


async def openai_embeddings(request: web.Request, state: State) -> web.StreamResponse:
    return await _serve_embeddings(request, state, deployment=None)


async def azure_embeddings(request: web.Request, state: State) -> web.StreamResponse:
    return await _serve_embeddings(request, state, deployment=request.match_info["deployment"])


async def _serve_embeddings(
    request: web.Request, state: State, deployment: str | None
) -> web.StreamResponse:
    body = await _read_object(request)
    inputs = _embedding_inputs(body)
    model = _model(body, deployment)
    dimensions = _positive_int(body, "dimensions") or replies.DEFAULT_DIMENSIONS
    if dimensions > replies.MAX_DIMENSIONS:
        raise ApiError(400, f"'dimensions' must be at most {replies.MAX_DIMENSIONS}")
    encoding = _optional(body, "encoding_format", str) or "float"
    if encoding not in ("float", "base64"):
        raise ApiError(400, "'encoding_format' must be 'float' or 'base64'")
    target = deployment if deployment is not None else model
    faults = _faults(request, split_model(target)[1])
    state.by_model[target] += 1
    await _apply_faults(state, faults, _fail_key(request, target))
    data = []
    for index, (text, _) in enumerate(inputs):
        vector = replies.embedding(text, dimensions)
        encoded: Any = replies.encode_base64(vector) if encoding == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(count for _, count in inputs)
    payload = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return _json_response(payload, faults)


# --------------------------------------------------------------------------- misc endpoints

_MODELS_BODY = _dumps(
    {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "fakellm"}
            for name in MODELS
        ],
    }
).encode()


async def list_models(request: web.Request, state: State) -> web.StreamResponse:
    return web.Response(body=_MODELS_BODY, headers=JSON_HEADERS)


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b'{"status":"ok"}', headers=JSON_HEADERS)


async def stats(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[STATE_KEY].snapshot())


async def reset(request: web.Request) -> web.StreamResponse:
    request.app[STATE_KEY].reset()
    return web.json_response({"reset": True})


async def _on_shutdown(app: web.Application) -> None:
    app[STATE_KEY].stopping.set()


def create_app(require_key: str | None = None) -> web.Application:
    """The aiohttp application; ``require_key`` makes every API request need that key."""
    state = State(require_key)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = state
    app.on_shutdown.append(_on_shutdown)
    routes: list[tuple[str, str, Dialect, ApiHandler]] = [
        ("POST", "/v1/chat/completions", OPENAI, openai_chat),
        ("POST", "/v1/embeddings", OPENAI, openai_embeddings),
        ("GET", "/v1/models", ANY_V1, list_models),
        ("POST", "/v1/messages", ANTHROPIC, anthropic_messages),
        ("POST", "/openai/deployments/{deployment}/chat/completions", AZURE, azure_chat),
        ("POST", "/openai/deployments/{deployment}/embeddings", AZURE, azure_embeddings),
    ]
    for method, path, dialect, handler in routes:
        app.router.add_route(method, path, endpoint(state, dialect, handler))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/__fake__/stats", stats)
    app.router.add_post("/__fake__/reset", reset)
    return app


class RunningServer:
    """A started fake upstream; ``close()`` stops it, releasing hanging requests."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self.runner = runner
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"http://{host}:{self.port}"

    @property
    def state(self) -> State:
        return self.runner.app[STATE_KEY]

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_server(
    host: str = DEFAULT_HOST,
    port: int = 0,
    require_key: str | None = None,
    *,
    access_log: bool = False,
) -> RunningServer:
    """Start the fake on ``host:port`` (0 picks a free port) in the running event loop."""
    runner = web.AppRunner(
        create_app(require_key),
        # The access log costs more than the fake itself; only on request.
        access_log=access_logger if access_log else None,
        # Cancel a handler whose client disconnected, so 'hang' and slow streams end with it.
        handler_cancellation=True,
        shutdown_timeout=2.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound_port = int(runner.addresses[0][1])
    return RunningServer(runner, host, bound_port)
