"""Translation between the Anthropic Messages wire format and OpenAI chat completions.

`POST /v1/messages` accepts Anthropic requests, but the gateway routes and executes every call
in the OpenAI chat-completions shape whatever the upstream provider is. This module is the pure
(no I/O) bridge: it validates an Anthropic request strictly and converts it to an OpenAI request,
converts an OpenAI completion back into an Anthropic `Message`, and re-frames an OpenAI chunk
stream as Anthropic server-sent events.

Validation errors name the offending field with a dotted path (`messages.0.content.1.type`), as
the real API does, so that SDK users can find their mistake.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

__all__ = [
    "ANTHROPIC_ERROR_TYPES",
    "AnthropicRequestError",
    "AnthropicStreamTranslator",
    "anthropic_error_body",
    "anthropic_message_id",
    "anthropic_request_to_openai",
    "openai_response_to_anthropic",
    "sse_encode",
]

Event = tuple[str, dict[str, Any]]

_TOP_LEVEL_FIELDS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "service_tier",
        "thinking",
    }
)
_MESSAGE_FIELDS = frozenset({"role", "content"})
_METADATA_FIELDS = frozenset({"user_id"})
_TOOL_CHOICE_FIELDS = frozenset({"type", "name", "disable_parallel_tool_use"})
_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Both APIs restrict function names to this alphabet; checking here gives an Anthropic-style
# error instead of an opaque upstream one.
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MAX_STOP_SEQUENCES = 4
_MAX_USER_ID_LENGTH = 256
# Reasoning from an earlier turn has no OpenAI equivalent and its signature only means
# something to Anthropic, so it is dropped rather than rejected.
_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

ANTHROPIC_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}


class AnthropicRequestError(Exception):
    """An Anthropic request the gateway refuses; the view answers 400 invalid_request_error."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    """The Anthropic error object for an HTTP status (unlisted 4xx are client errors)."""
    fallback = "invalid_request_error" if 400 <= status < 500 else "api_error"
    error_type = ANTHROPIC_ERROR_TYPES.get(status, fallback)
    return {"type": "error", "error": {"type": error_type, "message": message}}


def anthropic_message_id(seed: str) -> str:
    """A `msg_…` id derived from `seed`, so the same upstream id always maps to the same id."""
    suffix = seed.removeprefix("chatcmpl-").removeprefix("msg_")
    suffix = re.sub(r"[^A-Za-z0-9]", "", suffix)
    if not suffix:
        suffix = hashlib.sha256(seed.encode()).hexdigest()[:24]
    return f"msg_{suffix}"


def sse_encode(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event in the Anthropic framing (`event:` line, compact JSON `data:`)."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event}\ndata: {payload}\n\n".encode()


# --------------------------------------------------------------------------- validation helpers


def _fail(path: str, problem: str) -> AnthropicRequestError:
    return AnthropicRequestError(f"{path}: {problem}", param=path)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _expect_str(value: Any, path: str, *, non_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"must be a string, got {_type_name(value)}")
    if non_empty and not value:
        raise _fail(path, "must not be empty")
    return value


def _expect_dict(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"must be an object, got {_type_name(value)}")
    return value


def _expect_list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"must be an array, got {_type_name(value)}")
    return value


def _expect_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, f"must be a boolean, got {_type_name(value)}")
    return value


def _expect_int(value: Any, path: str, *, minimum: int) -> int:
    # bool is an int subclass; `true` as a token count is a client bug, not 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(path, f"must be an integer, got {_type_name(value)}")
    if value < minimum:
        raise _fail(path, f"must be at least {minimum}")
    return value


def _expect_unit_float(value: Any, path: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _fail(path, f"must be a number, got {_type_name(value)}")
    if not 0 <= value <= 1:
        raise _fail(path, "must be between 0 and 1")
    return float(value)


def _require(obj: dict[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise _fail(f"{path}.{key}" if path else key, "field required")
    return obj[key]


def _reject_unknown(obj: dict[str, Any], allowed: frozenset[str], path: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise _fail(where, "extra inputs are not permitted")


def _block_type(block: Any, path: str) -> tuple[dict[str, Any], str]:
    block = _expect_dict(block, path)
    return block, _expect_str(_require(block, "type", path), f"{path}.type")


# --------------------------------------------------------------------------- request translation


def anthropic_request_to_openai(body: dict[str, Any]) -> dict[str, Any]:
    """Validate an Anthropic Messages request and return the equivalent OpenAI chat request."""
    body = _expect_dict(body, "body")
    _reject_unknown(body, _TOP_LEVEL_FIELDS, "")
    model = _expect_str(_require(body, "model", ""), "model", non_empty=True)
    max_tokens = _expect_int(_require(body, "max_tokens", ""), "max_tokens", minimum=1)
    messages = _system_messages(body.get("system"))
    messages += _conversation(_require(body, "messages", ""))
    out: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    out.update(_sampling(body))
    out.update(_streaming(body))
    out.update(_metadata(body.get("metadata")))
    out.update(_tooling(body.get("tools"), body.get("tool_choice")))
    _check_dropped(body)
    return out


def _system_messages(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        text = system
    else:
        blocks = _expect_list(system, "system")
        texts = [_text_block(block, f"system.{i}") for i, block in enumerate(blocks)]
        # System blocks are separate sections (often split for prompt caching); keep them apart.
        text = "\n\n".join(texts)
    return [{"role": "system", "content": text}] if text else []


def _text_block(block: Any, path: str) -> str:
    block, kind = _block_type(block, path)
    if kind != "text":
        raise _fail(f"{path}.type", f"must be 'text', got {kind!r}")
    return _expect_str(_require(block, "text", path), f"{path}.text")


def _conversation(messages: Any) -> list[dict[str, Any]]:
    messages = _expect_list(messages, "messages")
    if not messages:
        raise _fail("messages", "must contain at least one message")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        out += _message(message, f"messages.{i}")
    return out


def _message(message: Any, path: str) -> list[dict[str, Any]]:
    message = _expect_dict(message, path)
    _reject_unknown(message, _MESSAGE_FIELDS, path)
    role = _require(message, "role", path)
    if role not in ("user", "assistant"):
        raise _fail(f"{path}.role", f"must be 'user' or 'assistant', got {role!r}")
    content = _require(message, "content", path)
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = _expect_list(content, f"{path}.content")
    if not blocks:
        raise _fail(f"{path}.content", "must not be empty")
    if role == "user":
        return _user_messages(blocks, f"{path}.content")
    return _assistant_messages(blocks, f"{path}.content")


def _user_messages(blocks: list[Any], path: str) -> list[dict[str, Any]]:
    """One Anthropic user turn → OpenAI tool messages (in place) and user messages."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    # OpenAI tool messages can't carry images, and nothing may sit between the tool messages
    # that answer one assistant turn, so tool-result images go in the user message that follows.
    deferred: list[dict[str, Any]] = []
    for i, raw in enumerate(blocks):
        block, kind = _block_type(raw, f"{path}.{i}")
        if kind == "tool_result":
            if parts:
                out.append(_user_message(parts))
                parts = []
            tool_message, images = _tool_result(block, f"{path}.{i}")
            out.append(tool_message)
            deferred += images
        elif kind not in _DROPPED_BLOCKS:
            parts.append(_user_part(block, kind, f"{path}.{i}"))
    if deferred or parts:
        out.append(_user_message(deferred + parts))
    return out


def _user_message(parts: list[dict[str, Any]]) -> dict[str, Any]:
    # A lone text part as a plain string is what every OpenAI-compatible upstream accepts.
    if len(parts) == 1 and parts[0]["type"] == "text":
        return {"role": "user", "content": parts[0]["text"]}
    return {"role": "user", "content": parts}


def _user_part(block: dict[str, Any], kind: str, path: str) -> dict[str, Any]:
    if kind == "text":
        return {"type": "text", "text": _expect_str(_require(block, "text", path), f"{path}.text")}
    if kind == "image":
        return _image_part(block, path)
    if kind == "document":
        return {"type": "text", "text": _document_text(block, path)}
    if kind == "tool_use":
        raise _fail(f"{path}.type", "'tool_use' blocks are only allowed in assistant messages")
    raise _fail(f"{path}.type", f"block type {kind!r} is not supported")


def _image_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = _expect_dict(_require(block, "source", path), f"{path}.source")
    kind = _require(source, "type", f"{path}.source")
    if kind == "base64":
        media_type = _require(source, "media_type", f"{path}.source")
        if media_type not in _IMAGE_MEDIA_TYPES:
            allowed = ", ".join(sorted(_IMAGE_MEDIA_TYPES))
            raise _fail(f"{path}.source.media_type", f"must be one of {allowed}")
        data = _expect_str(_require(source, "data", f"{path}.source"), f"{path}.source.data")
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        url = _expect_str(_require(source, "url", f"{path}.source"), f"{path}.source.url")
        # Only web URLs: a file: or other scheme must never reach a provider SDK.
        if not url.startswith(("https://", "http://")):
            raise _fail(f"{path}.source.url", "must be an http(s) URL")
    else:
        raise _fail(f"{path}.source.type", f"must be 'base64' or 'url', got {kind!r}")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_text(block: dict[str, Any], path: str) -> str:
    source = _expect_dict(_require(block, "source", path), f"{path}.source")
    kind = _require(source, "type", f"{path}.source")
    if kind == "text":
        text = _expect_str(_require(source, "data", f"{path}.source"), f"{path}.source.data")
    elif kind == "content":
        content = _require(source, "content", f"{path}.source")
        text = _text_or_text_blocks(content, f"{path}.source.content")
    else:
        raise _fail(f"{path}.source.type", f"document source {kind!r} is not supported (text only)")
    title = block.get("title")
    # The title is all the model would otherwise lose of a document block.
    if title is not None:
        return f"{_expect_str(title, f'{path}.title')}\n\n{text}"
    return text


def _text_or_text_blocks(content: Any, path: str) -> str:
    if isinstance(content, str):
        return content
    blocks = _expect_list(content, path)
    return "\n\n".join(_text_block(block, f"{path}.{i}") for i, block in enumerate(blocks))


def _tool_result(block: dict[str, Any], path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    tool_use_id = _expect_str(
        _require(block, "tool_use_id", path), f"{path}.tool_use_id", non_empty=True
    )
    content = block.get("content")
    texts, images = _tool_result_content("" if content is None else content, f"{path}.content")
    text = "\n\n".join(texts)
    if images:
        text = f"{text}\n\n(images follow in the next user message)".lstrip()
        images = [{"type": "text", "text": f"Images returned by tool call {tool_use_id}:"}, *images]
    is_error = block.get("is_error", False)
    # OpenAI has no error flag on tool messages; a prefix keeps the signal for the model.
    if _expect_bool(is_error, f"{path}.is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}, images


def _tool_result_content(content: Any, path: str) -> tuple[list[str], list[dict[str, Any]]]:
    if isinstance(content, str):
        return [content], []
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for i, raw in enumerate(_expect_list(content, path)):
        block, kind = _block_type(raw, f"{path}.{i}")
        if kind == "text":
            texts.append(_expect_str(_require(block, "text", f"{path}.{i}"), f"{path}.{i}.text"))
        elif kind == "image":
            images.append(_image_part(block, f"{path}.{i}"))
        else:
            raise _fail(f"{path}.{i}.type", f"must be 'text' or 'image', got {kind!r}")
    return texts, images


def _assistant_messages(blocks: list[Any], path: str) -> list[dict[str, Any]]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for i, raw in enumerate(blocks):
        block, kind = _block_type(raw, f"{path}.{i}")
        if kind == "text":
            texts.append(_expect_str(_require(block, "text", f"{path}.{i}"), f"{path}.{i}.text"))
        elif kind == "tool_use":
            tool_calls.append(_tool_call(block, f"{path}.{i}"))
        elif kind == "tool_result":
            raise _fail(
                f"{path}.{i}.type", "'tool_result' blocks are only allowed in user messages"
            )
        elif kind not in _DROPPED_BLOCKS:
            raise _fail(f"{path}.{i}.type", f"block type {kind!r} is not supported here")
    # Anthropic splits one reply into several text blocks (around tool calls or citations);
    # they are fragments of one text, so they are joined without a separator.
    text = "".join(texts)
    if not text and not tool_calls:
        return []  # only dropped thinking blocks: nothing left to send
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return [message]


def _tool_call(block: dict[str, Any], path: str) -> dict[str, Any]:
    call_id = _expect_str(_require(block, "id", path), f"{path}.id", non_empty=True)
    name = _expect_str(_require(block, "name", path), f"{path}.name", non_empty=True)
    arguments = _expect_dict(_require(block, "input", path), f"{path}.input")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    stop_sequences = body.get("stop_sequences")
    if stop_sequences is not None:
        stops = _expect_list(stop_sequences, "stop_sequences")
        if len(stops) > _MAX_STOP_SEQUENCES:
            raise _fail("stop_sequences", f"at most {_MAX_STOP_SEQUENCES} are supported")
        stops = [_expect_str(s, f"stop_sequences.{i}", non_empty=True) for i, s in enumerate(stops)]
        if stops:
            out["stop"] = stops
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = _expect_unit_float(body[key], key)
    if body.get("top_k") is not None:
        # OpenAI has no top_k; accepted for compatibility and dropped.
        _expect_int(body["top_k"], "top_k", minimum=0)
    return out


def _streaming(body: dict[str, Any]) -> dict[str, Any]:
    stream = body.get("stream")
    if stream is None or not _expect_bool(stream, "stream"):
        return {"stream": False}
    # The final usage chunk is what message_delta.usage and billing are built from.
    return {"stream": True, "stream_options": {"include_usage": True}}


def _metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    metadata = _expect_dict(metadata, "metadata")
    _reject_unknown(metadata, _METADATA_FIELDS, "metadata")
    user_id = metadata.get("user_id")
    if user_id is None:
        return {}
    user_id = _expect_str(user_id, "metadata.user_id")
    if len(user_id) > _MAX_USER_ID_LENGTH:
        raise _fail("metadata.user_id", f"must be at most {_MAX_USER_ID_LENGTH} characters")
    return {"user": user_id} if user_id else {}


def _tooling(tools: Any, tool_choice: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names: set[str] = set()
    if tools is not None:
        definitions = [_tool(t, f"tools.{i}") for i, t in enumerate(_expect_list(tools, "tools"))]
        names = {d["function"]["name"] for d in definitions}
        if len(names) != len(definitions):
            raise _fail("tools", "tool names must be unique")
        if definitions:
            out["tools"] = definitions
    if tool_choice is not None:
        out.update(_tool_choice(tool_choice, names))
    return out


def _tool(tool: Any, path: str) -> dict[str, Any]:
    tool = _expect_dict(tool, path)
    kind = tool.get("type", "custom")
    if kind != "custom":
        raise _fail(f"{path}.type", f"server tool {kind!r} is not supported (custom tools only)")
    name = _expect_str(_require(tool, "name", path), f"{path}.name")
    if not _TOOL_NAME.match(name):
        raise _fail(f"{path}.name", "must match ^[a-zA-Z0-9_-]{1,64}$")
    schema = _expect_dict(_require(tool, "input_schema", path), f"{path}.input_schema")
    if schema.get("type") != "object":
        raise _fail(f"{path}.input_schema.type", "must be 'object'")
    function: dict[str, Any] = {"name": name}
    if tool.get("description") is not None:
        function["description"] = _expect_str(tool["description"], f"{path}.description")
    function["parameters"] = schema
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, names: set[str]) -> dict[str, Any]:
    choice = _expect_dict(choice, "tool_choice")
    _reject_unknown(choice, _TOOL_CHOICE_FIELDS, "tool_choice")
    kind = _require(choice, "type", "tool_choice")
    if kind not in ("auto", "any", "tool", "none"):
        raise _fail("tool_choice.type", f"must be auto, any, tool or none, got {kind!r}")
    if not names:
        # Forcing a tool without tools is a contradiction; auto/none without tools mean "no
        # tool call", which OpenAI upstreams reject when sent without tools, so they are dropped.
        if kind in ("any", "tool"):
            raise _fail("tool_choice", f"type {kind!r} requires tools")
        return {}
    out: dict[str, Any] = {}
    if kind == "tool":
        name = _expect_str(_require(choice, "name", "tool_choice"), "tool_choice.name")
        if name not in names:
            raise _fail("tool_choice.name", f"no tool named {name!r} in tools")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and _expect_bool(disable, "tool_choice.disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False
    return out


def _check_dropped(body: dict[str, Any]) -> None:
    """Type-check the fields accepted for compatibility but not forwarded upstream."""
    if body.get("thinking") is not None:
        _expect_dict(body["thinking"], "thinking")
    if body.get("service_tier") is not None:
        _expect_str(body["service_tier"], "service_tier")


# --------------------------------------------------------------------------- response translation


def openai_response_to_anthropic(response: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Convert an OpenAI chat completion (as a dict) into an Anthropic `Message`."""
    response_id = str(response.get("id") or "")
    choices = response.get("choices") or [{}]
    choice = choices[0] or {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = _response_text(message)
    if text:
        content.append({"type": "text", "text": text})
    content += _response_tool_uses(message, response_id)
    stop_reason, stop_sequence = _stop_reason(
        choice.get("finish_reason"),
        choice.get("stop_reason"),
        has_tool_use=any(block["type"] == "tool_use" for block in content),
    )
    return {
        "id": anthropic_message_id(response_id or json.dumps(response, sort_keys=True)),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(response.get("usage")),
    }


def _response_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # some upstreams answer with content parts
        content = "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    if not content and isinstance(message.get("refusal"), str):
        return str(message["refusal"])
    return content if isinstance(content, str) else ""


def _response_tool_uses(message: dict[str, Any], response_id: str) -> list[dict[str, Any]]:
    calls = list(message.get("tool_calls") or [])
    if message.get("function_call"):  # the legacy single-function shape
        calls.append({"function": message["function_call"]})
    blocks = []
    for position, call in enumerate(calls):
        function = call.get("function") or {}
        call_id = call.get("id") or _tool_use_id(response_id, position)
        blocks.append(
            {
                "type": "tool_use",
                "id": call_id,
                "name": function.get("name") or "",
                "input": _tool_input(function.get("arguments")),
            }
        )
    return blocks


def _tool_use_id(seed: str, position: int) -> str:
    digest = hashlib.sha256(f"{seed}:{position}".encode()).hexdigest()
    return f"toolu_{digest[:24]}"


def _tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or arguments == "":
        return {}  # some upstreams send nothing for a tool without parameters
    try:
        parsed = json.loads(arguments)
    except (TypeError, ValueError):
        parsed = None
    # Anthropic's input must be an object; keep anything else visible rather than lose it.
    return parsed if isinstance(parsed, dict) else {"_raw": arguments}


def _stop_reason(finish_reason: Any, matched: Any, *, has_tool_use: bool) -> tuple[str, str | None]:
    """Anthropic (stop_reason, stop_sequence) for an OpenAI finish_reason.

    OpenAI itself cannot say whether a stop sequence was hit; vLLM-style upstreams put the
    matched string in `choice.stop_reason`, which is used when present.
    """
    if finish_reason in (None, "stop") and has_tool_use:
        # Some upstreams say "stop" after a tool call; Anthropic clients loop on "tool_use".
        return "tool_use", None
    if finish_reason == "stop" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    return _STOP_REASONS.get(str(finish_reason), "end_turn"), None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage(usage: Any) -> dict[str, int]:
    """Anthropic usage: input_tokens excludes cached tokens, which OpenAI counts in the prompt."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    # litellm reports Anthropic-upstream cache writes here (and counts them in prompt_tokens).
    created = _int(usage.get("cache_creation_input_tokens"))
    return {
        "input_tokens": max(_int(usage.get("prompt_tokens")) - cached - created, 0),
        "output_tokens": _int(usage.get("completion_tokens")),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": created,
    }


# --------------------------------------------------------------------------- streaming


class AnthropicStreamTranslator:
    """Re-frames OpenAI `chat.completion.chunk` dicts as Anthropic Messages stream events.

    Feed chunks in order; call `finish()` when the upstream stream ends (it is a no-op if the
    usage chunk already closed the message) or `error()` when it fails.
    """

    def __init__(self, *, model: str, message_id: str) -> None:
        self._model = model
        self._message_id = message_id
        self._started = False
        self._done = False
        self._next_index = 0
        self._open_index: int | None = None
        # ("text", None) or ("tool", the OpenAI tool-call index) of the open block.
        self._open_kind: tuple[str, int | None] | None = None
        self._closed_tools: set[int] = set()
        self._saw_tool_use = False
        self._finish_reason: str | None = None
        self._matched_stop: str | None = None
        self._usage: dict[str, int] | None = None

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        if self._done:
            return []
        events = self._start(chunk.get("usage"))
        choices = chunk.get("choices") or []
        # Only choice 0 is translated: Anthropic has no `n`, so requests never ask for more.
        choice = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None)
        if choice is not None:
            events += self._choice(choice)
        if isinstance(chunk.get("usage"), dict):
            self._usage = _usage(chunk["usage"])
            if self._finish_reason is not None:
                events += self.finish()
        return events

    def finish(self) -> list[Event]:
        if self._done:
            return []
        events = self._start(None) + self._close_block()
        stop_reason, stop_sequence = _stop_reason(
            self._finish_reason, self._matched_stop, has_tool_use=self._saw_tool_use
        )
        # Input tokens are only known once the usage chunk arrived, so they are repeated here.
        usage = dict(self._usage) if self._usage is not None else {"output_tokens": 0}
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                    "usage": usage,
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        self._done = True
        return events

    def error(self, error_type: str, message: str) -> list[Event]:
        # The real API ends the stream after an error event, so nothing may follow it.
        self._done = True
        return [("error", {"type": "error", "error": {"type": error_type, "message": message}})]

    def _start(self, usage: Any) -> list[Event]:
        if self._started:
            return []
        self._started = True
        start_usage = _usage(usage) if isinstance(usage, dict) else _usage(None)
        start_usage["output_tokens"] = 0
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _choice(self, choice: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        delta = choice.get("delta") or {}
        text = delta.get("content") or delta.get("refusal")
        if isinstance(text, str) and text:
            events += self._text(text)
        for call in delta.get("tool_calls") or []:
            events += self._tool_call(call)
        if choice.get("finish_reason"):
            self._finish_reason = str(choice["finish_reason"])
            if isinstance(choice.get("stop_reason"), str):
                self._matched_stop = choice["stop_reason"]
            # The content is complete; the message itself stays open until usage or finish().
            events += self._close_block()
        return events

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open_kind != ("text", None):
            events += self._close_block()
            events += self._open_block(("text", None), {"type": "text", "text": ""})
        return [*events, self._delta({"type": "text_delta", "text": text})]

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        position = _int(call.get("index"))
        function = call.get("function") or {}
        events: list[Event] = []
        if self._open_kind != ("tool", position):
            if position in self._closed_tools:
                # A closed Anthropic block cannot be reopened; upstreams stream tool calls
                # one after another, so a late fragment of an earlier call is dropped.
                return []
            events += self._close_block()
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or _tool_use_id(self._message_id, self._next_index),
                "name": function.get("name") or "",
                "input": {},
            }
            events += self._open_block(("tool", position), block)
            self._saw_tool_use = True
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return events

    def _open_block(self, kind: tuple[str, int | None], block: dict[str, Any]) -> list[Event]:
        self._open_index = self._next_index
        self._open_kind = kind
        self._next_index += 1
        data = {"type": "content_block_start", "index": self._open_index, "content_block": block}
        return [("content_block_start", data)]

    def _delta(self, delta: dict[str, Any]) -> Event:
        data = {"type": "content_block_delta", "index": self._open_index, "delta": delta}
        return ("content_block_delta", data)

    def _close_block(self) -> list[Event]:
        if self._open_index is None:
            return []
        index = self._open_index
        if self._open_kind is not None and self._open_kind[0] == "tool":
            self._closed_tools.add(_int(self._open_kind[1]))
        self._open_index = None
        self._open_kind = None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]
