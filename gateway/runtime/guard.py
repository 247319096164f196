"""Strict validation of gateway requests in the OpenAI wire format.

Every gateway call passes through here before anything else looks at the body, so the rules
are plain dict and type checks (no pydantic, no DRF) and the walk over the body is iterative.

Two jobs:
- **Allow-list**: only known provider parameters, with checked types and ranges, reach the
  upstream payload. Anything else is a 400 naming the parameter, like OpenAI does.
- **Security**: a client must never steer where or how we call a provider. Keys that name an
  endpoint, a credential or a provider setting (`api_base`, `api_key`, `extra_body`, ...) are
  refused at ANY depth, and `metadata` (Switchboard's own, never sent upstream) may not carry
  URL-valued strings. The SDKs we hand payloads to read such keys from places we don't expect,
  so the rule is by name, everywhere, rather than by position.
"""

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 32
MAX_MESSAGES = 2048
MAX_TOOLS = 128
MAX_METADATA_KEYS = 64
MAX_EMBEDDING_INPUTS = 2048
MAX_STOP_SEQUENCES = 4
MAX_MODEL_NAME = 200
MAX_USER = 256
IMAGE_TOKENS = 85  # what a low-detail image costs at OpenAI; a floor, not a ceiling
INT64_MAX = 2**63 - 1

FORBIDDEN_KEYS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "custom_llm_provider",
        "api_version",
        "organization",
        "azure_endpoint",
        "azure_ad_token",
        "azure_deployment",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_region_name",
        "aws_profile_name",
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
        "extra_headers",
        "extra_body",
        "headers",
        "proxy",
        "proxies",
        "litellm_params",
        "mock_response",
        "input_cost_per_token",
        "output_cost_per_token",
        "endpoint",
        "base",
        "host",
        "webhook_url",
        "callback_url",
        "callbacks",
        "success_callback",
        "failure_callback",
    }
)
# Singular `_token` only: `max_tokens`, `max_completion_tokens` end in `_tokens` and pass.
FORBIDDEN_SUFFIXES = ("_base", "_url", "_endpoint", "_api_key", "_token")

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MESSAGE_KEYS = frozenset(
    {
        "role",
        "content",
        "name",
        "tool_calls",
        "tool_call_id",
        "function_call",
        # What the OpenAI SDK's `message.model_dump()` adds when a reply is sent back as history.
        "refusal",
        "audio",
        "annotations",
    }
)
# OpenAI accepts media parts only from the user; other roles carry text (assistant: refusals).
PART_TYPES_BY_ROLE: dict[str, tuple[str, ...]] = {
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
}
TEXT_ONLY = ("text",)
PART_KEYS: dict[str, frozenset[str]] = {
    "text": frozenset({"type", "text"}),
    "refusal": frozenset({"type", "refusal"}),
    "image_url": frozenset({"type", "image_url"}),
    "input_audio": frozenset({"type", "input_audio"}),
    "file": frozenset({"type", "file"}),
}
IMAGE_DETAILS = ("auto", "low", "high")
TOOL_CHOICES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
ENCODING_FORMATS = ("float", "base64")
FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# `scheme://`, a scheme-relative `//host` (either slash direction, as browsers read them), or
# a web scheme without slashes (WHATWG parsers turn `https:host` into `https://host`).
_URL_LIKE = re.compile(
    r"\s*(?:[a-z][a-z0-9+.\-]*:[/\\]{2}|[/\\]{2}|(?:https?|wss?|ftps?|file|gopher):)",
    re.IGNORECASE,
)

Path = tuple[str | int, ...]
Check = Callable[[Any, str], None]


class GuardError(Exception):
    """A request the gateway refuses; `message` is written for the client."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str = "invalid_request",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat completion: the upstream payload and Switchboard's own metadata."""

    model: str
    stream: bool
    include_usage: bool
    payload: dict[str, Any]
    metadata: dict[str, Any]
    user: str | None


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    """A validated embeddings call (never streamed; the flags keep one shape with chat)."""

    model: str
    stream: bool
    include_usage: bool
    payload: dict[str, Any]
    metadata: dict[str, Any]
    user: str | None


# --- body ------------------------------------------------------------------------------------


def parse_json_body(raw: bytes, *, max_bytes: int) -> dict[str, Any]:
    """Decode a request body into a JSON object, refusing oversize, non-UTF-8 and non-objects."""
    if len(raw) > max_bytes:
        raise GuardError(
            413,
            f"The request body is {len(raw)} bytes; the limit is {max_bytes} bytes.",
            code="too_large",
        )
    if not raw.strip():
        raise GuardError(400, "The request body is empty; send a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GuardError(
            400, f"The request body is not valid UTF-8 (bad byte at offset {exc.start})."
        ) from None
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise GuardError(
            400, f"The request body is nested too deeply (the limit is {MAX_DEPTH} levels)."
        ) from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, over-long integer literals
        raise GuardError(400, f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise GuardError(400, f"The request body must be a JSON object, not {_json_type(body)}.")
    return body


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and they would slip past ranges.
    raise ValueError(f"{name} is not a JSON value")


# --- the security walk -----------------------------------------------------------------------


def _inspect(body: dict[str, Any]) -> None:
    """Refuse forbidden keys anywhere, URLs in metadata, and nesting deeper than MAX_DEPTH."""
    stack: list[tuple[Any, Path]] = [(body, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            raise GuardError(
                400,
                f"The request is nested more than {MAX_DEPTH} levels deep (at {_dotted(path)}).",
                param=_dotted(path),
            )
        if isinstance(node, dict):
            content_part = _is_content_part(path)
            schema = _in_json_schema(path)
            for key, value in node.items():
                if not schema:
                    _check_key(key, path, content_part)
                elif not isinstance(key, str):
                    raise GuardError(400, f"Object keys must be strings (at {_dotted(path)}).")
                _visit(stack, value, path, key)
        else:
            for index, value in enumerate(node):
                _visit(stack, value, path, index)


def _visit(stack: list[tuple[Any, Path]], value: Any, path: Path, key: str | int) -> None:
    # Paths are built only for containers and metadata leaves: most leaves are plain strings.
    if isinstance(value, dict | list):
        stack.append((value, (*path, key)))
    elif (path[0] if path else key) == "metadata":
        _check_metadata_leaf(value, (*path, key))


def _check_key(key: Any, path: Path, content_part: bool) -> None:
    if not isinstance(key, str):
        raise GuardError(400, f"Object keys must be strings (at {_dotted(path)}).")
    if _is_forbidden(key, content_part):
        where = _dotted((*path, key))
        raise GuardError(
            400,
            f"{where} is not accepted: endpoints, credentials and provider settings come from "
            "the deployment configuration, never from the request.",
            param=where,
            code="forbidden_parameter",
        )


def _is_forbidden(key: str, content_part: bool) -> bool:
    name = normalise_key(key)
    if name in FORBIDDEN_KEYS:
        return True
    if name.endswith(FORBIDDEN_SUFFIXES):
        # The one legitimate `*_url` key: an image content part (its inner key is plain `url`).
        return not (content_part and name == "image_url")
    return False


def normalise_key(key: str) -> str:
    """`API-Base`, `api_base`, `apiBase` → `api_base` (camelCase too: JS SDKs say `baseURL`)."""
    if not key.islower():
        key = _CAMEL_BOUNDARY.sub("_", key)
    return key.lower().replace("-", "_")


def _in_json_schema(path: Path) -> bool:
    """Inside a tool's parameters or a response JSON schema, keys are the caller's property
    names (`host`, `page_token`, `callback_url` are ordinary fields of a schema), not settings:
    they reach the model as data and cannot change where or how the call is made."""
    if len(path) >= 4 and path[0] == "tools" and path[2] == "function" and path[3] == "parameters":
        return isinstance(path[1], int)
    return len(path) >= 2 and path[0] == "response_format" and path[1] == "json_schema"


def _is_content_part(path: Path) -> bool:
    # messages[i].content[j]: the only place an `image_url` key may appear.
    return (
        len(path) == 4
        and path[0] == "messages"
        and path[2] == "content"
        and isinstance(path[1], int)
        and isinstance(path[3], int)
    )


def _check_metadata_leaf(value: Any, path: Path) -> None:
    if isinstance(value, str):
        if _URL_LIKE.match(value):
            where = _dotted(path)
            raise GuardError(
                400,
                f"URL-valued settings are not accepted in metadata ({where}).",
                param=where,
                code="forbidden_parameter",
            )
    elif value is not None and not isinstance(value, bool | int | float):
        raise GuardError(400, f"{_dotted(path)} must be a JSON value.", param=_dotted(path))


def _dotted(path: Path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out or "body"


# --- small checks ----------------------------------------------------------------------------


def _fail(path: str, problem: str) -> GuardError:
    return GuardError(400, f"{path} {problem}.", param=path)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if _is_json(value) else repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _is_json(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(low: float, high: float) -> Check:
    def check(value: Any, path: str) -> None:
        if not _is_number(value) or not low <= value <= high:
            raise _fail(path, f"must be a number between {low:g} and {high:g}, got {_show(value)}")

    return check


def _integer(low: int, high: int | None = None) -> Check:
    def check(value: Any, path: str) -> None:
        if not _is_int(value):
            raise _fail(path, f"must be an integer, got {_show(value)}")
        if high is None and value < low:
            raise _fail(path, f"must be at least {low}, got {value}")
        if high is not None and not low <= value <= high:
            raise _fail(path, f"must be between {low} and {high}, got {value}")

    return check


def _boolean(value: Any, path: str) -> None:
    if not isinstance(value, bool):
        raise _fail(path, f"must be true or false, got {_show(value)}")


def _string(*, max_length: int | None = None, non_empty: bool = False) -> Check:
    def check(value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise _fail(path, f"must be a string, got {_json_type(value)}")
        if non_empty and not value:
            raise _fail(path, "must not be empty")
        if max_length is not None and len(value) > max_length:
            raise _fail(path, f"must be at most {max_length} characters, got {len(value)}")

    return check


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any, path: str) -> None:
        if value not in choices or not isinstance(value, str):
            allowed = ", ".join(repr(c) for c in choices)
            raise _fail(path, f"must be one of {allowed}, got {_show(value)}")

    return check


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"must be an object, got {_json_type(value)}")
    return value


def _array(value: Any, path: str, *, max_items: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"must be an array, got {_json_type(value)}")
    if max_items is not None and len(value) > max_items:
        raise _fail(path, f"must have at most {max_items} items, got {len(value)}")
    return value


def _only_keys(value: dict[str, Any], allowed: frozenset[str], path: str) -> None:
    for key in value:
        if key not in allowed:
            raise _fail(f"{path}.{key}", "is not a recognized field")


def _require(value: dict[str, Any], key: str, path: str) -> Any:
    if value.get(key) is None:
        raise _fail(f"{path}.{key}" if path else key, "is required")
    return value[key]


_model = _string(max_length=MAX_MODEL_NAME, non_empty=True)
_user = _string(max_length=MAX_USER)
_name = _string(non_empty=True)
_text = _string()


# --- messages --------------------------------------------------------------------------------


def _messages(value: Any, path: str) -> None:
    messages = _array(value, path, max_items=MAX_MESSAGES)
    if not messages:
        raise _fail(path, "must contain at least one message")
    for index, message in enumerate(messages):
        _message(message, f"{path}[{index}]")


def _message(value: Any, path: str) -> None:
    message = _object(value, path)
    _only_keys(message, MESSAGE_KEYS, path)
    role = _role(message.get("role"), f"{path}.role")
    if message.get("name") is not None:
        _name(message["name"], f"{path}.name")
    _tool_fields(message, role, path)
    _message_content(message, role, path)
    if message.get("refusal") is not None:
        _text(message["refusal"], f"{path}.refusal")
    if message.get("audio") is not None:
        _previous_audio(message["audio"], f"{path}.audio")
    if message.get("annotations") is not None:
        _array(message["annotations"], f"{path}.annotations")


def _previous_audio(value: Any, path: str) -> None:
    # An assistant turn's audio is referenced by id only, never sent back inline.
    audio = _object(value, path)
    _only_keys(audio, frozenset({"id"}), path)
    _string(non_empty=True)(_require(audio, "id", path), f"{path}.id")


def _role(value: Any, path: str) -> str:
    _one_of(ROLES)(value, path)
    return str(value)


def _tool_fields(message: dict[str, Any], role: str, path: str) -> None:
    calls, function_call = message.get("tool_calls"), message.get("function_call")
    if role != "assistant":
        for key in ("tool_calls", "function_call"):
            if message.get(key) is not None:
                raise _fail(f"{path}.{key}", "is only allowed on assistant messages")
    if calls is not None:
        calls = _array(calls, f"{path}.tool_calls", max_items=MAX_TOOLS)
        if not calls:
            raise _fail(f"{path}.tool_calls", "must not be empty (omit it instead)")
        for index, call in enumerate(calls):
            _tool_call(call, f"{path}.tool_calls[{index}]")
    if function_call is not None:
        _function_call(function_call, f"{path}.function_call")
    if role == "tool":
        _string(non_empty=True)(_require(message, "tool_call_id", path), f"{path}.tool_call_id")
    elif message.get("tool_call_id") is not None:
        raise _fail(f"{path}.tool_call_id", "is only allowed on tool messages")
    if role == "function":
        _require(message, "name", path)


def _tool_call(value: Any, path: str) -> None:
    call = _object(value, path)
    _only_keys(call, frozenset({"id", "type", "function"}), path)
    _string(non_empty=True)(_require(call, "id", path), f"{path}.id")
    _one_of(("function",))(_require(call, "type", path), f"{path}.type")
    _function_call(_require(call, "function", path), f"{path}.function")


def _function_call(value: Any, path: str) -> None:
    call = _object(value, path)
    _only_keys(call, frozenset({"name", "arguments"}), path)
    _name(_require(call, "name", path), f"{path}.name")
    # Arguments are a JSON *string* in the wire format; an object here is a client bug.
    _text(_require(call, "arguments", path), f"{path}.arguments")


def _message_content(message: dict[str, Any], role: str, path: str) -> None:
    content = message.get("content")
    where = f"{path}.content"
    if content is None:
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return
        raise _fail(
            where, "is required (it may be null only on an assistant message with tool_calls)"
        )
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _fail(
            where, f"must be a string or an array of content parts, got {_json_type(content)}"
        )
    if not content:
        raise _fail(where, "must not be an empty array")
    allowed = PART_TYPES_BY_ROLE.get(role, TEXT_ONLY)
    for index, part in enumerate(content):
        _content_part(part, allowed, f"{where}[{index}]", role)


def _content_part(value: Any, allowed: tuple[str, ...], path: str, role: str) -> None:
    part = _object(value, path)
    kind = part.get("type")
    if kind not in allowed or not isinstance(kind, str):
        names = ", ".join(repr(a) for a in allowed)
        raise _fail(
            f"{path}.type", f"must be one of {names} in a {role} message, got {_show(kind)}"
        )
    _only_keys(part, PART_KEYS[kind], path)
    inner = _require(part, kind, path)
    if kind in ("text", "refusal"):
        _text(inner, f"{path}.{kind}")
    elif kind == "image_url":
        _image_url(inner, f"{path}.image_url")
    elif kind == "input_audio":
        _input_audio(inner, f"{path}.input_audio")
    else:
        _file(inner, f"{path}.file")


def _image_url(value: Any, path: str) -> None:
    image = _object(value, path)
    _only_keys(image, frozenset({"url", "detail"}), path)
    url = _require(image, "url", path)
    _text(url, f"{path}.url")
    # Some provider SDKs fetch image URLs server-side: plain http and other schemes stay out.
    if not url[:8].lower().startswith(("https://", "data:")):
        raise _fail(f"{path}.url", "must be an https:// URL or a data: URL")
    if image.get("detail") is not None:
        _one_of(IMAGE_DETAILS)(image["detail"], f"{path}.detail")


def _input_audio(value: Any, path: str) -> None:
    audio = _object(value, path)
    _only_keys(audio, frozenset({"data", "format"}), path)
    _string(non_empty=True)(_require(audio, "data", path), f"{path}.data")
    _string(non_empty=True)(_require(audio, "format", path), f"{path}.format")


def _file(value: Any, path: str) -> None:
    file = _object(value, path)
    _only_keys(file, frozenset({"file_id", "file_data", "filename"}), path)
    if file.get("file_id") is None and file.get("file_data") is None:
        raise _fail(path, "needs file_id or file_data")
    for key in ("file_id", "file_data", "filename"):
        if file.get(key) is not None:
            _string(non_empty=True)(file[key], f"{path}.{key}")


# --- other chat parameters -------------------------------------------------------------------


def _stream_options(value: Any, path: str) -> None:
    options = _object(value, path)
    _only_keys(options, frozenset({"include_usage"}), path)
    if options.get("include_usage") is not None:
        _boolean(options["include_usage"], f"{path}.include_usage")


def _stop(value: Any, path: str) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _fail(path, f"must be a string or an array of strings, got {_json_type(value)}")
    _array(value, path, max_items=MAX_STOP_SEQUENCES)
    for index, item in enumerate(value):
        _text(item, f"{path}[{index}]")


def _logit_bias(value: Any, path: str) -> None:
    for token, bias in _object(value, path).items():
        if not token.isdigit():
            raise _fail(f"{path}.{token}", "is not a token id (keys must be integer strings)")
        _number(-100, 100)(bias, f"{path}.{token}")


def _tools(value: Any, path: str) -> None:
    tools = _array(value, path, max_items=MAX_TOOLS)
    if not tools:
        raise _fail(path, "must not be empty (omit it instead)")
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        name = _tool(tool, f"{path}[{index}]")
        if name in seen:
            raise _fail(f"{path}[{index}].function.name", f"{name!r} is used by another tool")
        seen.add(name)


def _tool(value: Any, path: str) -> str:
    tool = _object(value, path)
    _only_keys(tool, frozenset({"type", "function"}), path)
    _one_of(("function",))(_require(tool, "type", path), f"{path}.type")
    where = f"{path}.function"
    function = _object(_require(tool, "function", path), where)
    _only_keys(function, frozenset({"name", "description", "parameters", "strict"}), where)
    name = _require(function, "name", where)
    _function_name(name, f"{where}.name")
    if function.get("description") is not None:
        _text(function["description"], f"{where}.description")
    if function.get("parameters") is not None:
        _object(function["parameters"], f"{where}.parameters")
    if function.get("strict") is not None:
        _boolean(function["strict"], f"{where}.strict")
    return name


def _function_name(value: Any, path: str) -> None:
    if not isinstance(value, str) or not FUNCTION_NAME.fullmatch(value):
        raise _fail(path, f"must match ^[a-zA-Z0-9_-]{{1,64}}$, got {_show(value)}")


def _tool_choice(value: Any, path: str) -> None:
    if isinstance(value, str):
        _one_of(TOOL_CHOICES)(value, path)
        return
    choice = _object(value, path)
    _only_keys(choice, frozenset({"type", "function"}), path)
    _one_of(("function",))(_require(choice, "type", path), f"{path}.type")
    function = _object(_require(choice, "function", path), f"{path}.function")
    _only_keys(function, frozenset({"name"}), f"{path}.function")
    _name(_require(function, "name", f"{path}.function"), f"{path}.function.name")


def _response_format(value: Any, path: str) -> None:
    response_format = _object(value, path)
    _only_keys(response_format, frozenset({"type", "json_schema"}), path)
    kind = _require(response_format, "type", path)
    _one_of(RESPONSE_FORMATS)(kind, f"{path}.type")
    schema = response_format.get("json_schema")
    if kind != "json_schema":
        if schema is not None:
            raise _fail(f"{path}.json_schema", "is only allowed when type is 'json_schema'")
        return
    schema = _object(_require(response_format, "json_schema", path), f"{path}.json_schema")
    _function_name(_require(schema, "name", f"{path}.json_schema"), f"{path}.json_schema.name")


def _metadata(value: Any, path: str) -> None:
    # Value types and URL-valued strings are checked by the walk (at every depth).
    metadata = _object(value, path)
    if len(metadata) > MAX_METADATA_KEYS:
        raise _fail(path, f"must have at most {MAX_METADATA_KEYS} keys, got {len(metadata)}")


def _modalities(value: Any, path: str) -> None:
    for index, item in enumerate(_array(value, path)):
        _string(non_empty=True)(item, f"{path}[{index}]")


def _prediction(value: Any, path: str) -> None:
    _object(value, path)


CHAT_PARAMETERS: dict[str, Check] = {
    "model": _model,
    "messages": _messages,
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "n": _integer(1, 8),
    "max_tokens": _integer(1),
    "max_completion_tokens": _integer(1),
    "stream": _boolean,
    "stream_options": _stream_options,
    "stop": _stop,
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "logit_bias": _logit_bias,
    "logprobs": _boolean,
    "top_logprobs": _integer(0, 20),
    "seed": _integer(-INT64_MAX - 1, INT64_MAX),
    "user": _user,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _boolean,
    "response_format": _response_format,
    "metadata": _metadata,
    "reasoning_effort": _string(non_empty=True, max_length=32),
    "service_tier": _string(non_empty=True, max_length=32),
    "modalities": _modalities,
    "prediction": _prediction,
}


def _embedding_input(value: Any, path: str) -> None:
    if isinstance(value, str):
        if not value:
            raise _fail(path, "must not be empty")
        return
    items = _array(value, path)
    if not items:
        raise _fail(path, "must not be empty")
    first = items[0]
    if isinstance(first, str):
        _array(items, path, max_items=MAX_EMBEDDING_INPUTS)
        for index, item in enumerate(items):
            _string(non_empty=True)(item, f"{path}[{index}]")
    elif _is_int(first):
        _token_ids(items, path)
    elif isinstance(first, list):
        _array(items, path, max_items=MAX_EMBEDDING_INPUTS)
        for index, item in enumerate(items):
            if not isinstance(item, list) or not item:
                raise _fail(f"{path}[{index}]", "must be a non-empty array of token ids")
            _token_ids(item, f"{path}[{index}]")
    else:
        raise _fail(
            path,
            "must be a string, an array of strings, an array of token ids "
            "or an array of arrays of token ids",
        )


def _token_ids(items: list[Any], path: str) -> None:
    for index, item in enumerate(items):
        if not _is_int(item) or item < 0:
            raise _fail(f"{path}[{index}]", f"must be a token id (integer ≥ 0), got {_show(item)}")


EMBEDDINGS_PARAMETERS: dict[str, Check] = {
    "model": _model,
    "input": _embedding_input,
    "encoding_format": _one_of(ENCODING_FORMATS),
    "dimensions": _integer(1),
    "user": _user,
    # Not a provider parameter: Switchboard's own, like chat's, and never sent upstream.
    "metadata": _metadata,
}


# --- entry points ----------------------------------------------------------------------------


def _validate(body: Any, parameters: dict[str, Check], required: tuple[str, ...]) -> dict[str, Any]:
    """Walk for forbidden keys first (they must never read as merely "unrecognized"), then the
    allow-list; returns the body with nulls dropped (OpenAI treats null as "not given")."""
    if not isinstance(body, dict):
        raise GuardError(400, f"The request body must be a JSON object, not {_json_type(body)}.")
    _inspect(body)
    for name in body:
        if name not in parameters:
            raise GuardError(400, f"Unrecognized request argument supplied: {name}", param=name)
    for name in required:
        _require(body, name, "")
    given = {name: value for name, value in body.items() if value is not None}
    for name, value in given.items():
        parameters[name](value, name)
    return given


def guard_chat_request(body: dict[str, Any]) -> ChatRequest:
    """Validate an OpenAI chat completion request; raise GuardError (400) with the reason."""
    given = _validate(body, CHAT_PARAMETERS, ("model", "messages"))
    _chat_cross_checks(given)
    metadata = given.pop("metadata", {})
    stream = bool(given.get("stream", False))
    options = given.get("stream_options") or {}
    return ChatRequest(
        model=given["model"],
        stream=stream,
        include_usage=bool(options.get("include_usage", False)),
        payload=given,
        metadata=metadata,
        user=given.get("user"),
    )


def _chat_cross_checks(given: dict[str, Any]) -> None:
    if "stream_options" in given and not given.get("stream"):
        raise _fail("stream_options", "is only allowed when stream is true")
    if "top_logprobs" in given and not given.get("logprobs"):
        raise _fail("top_logprobs", "needs logprobs set to true")
    choice = given.get("tool_choice")
    if isinstance(choice, dict):
        wanted = choice["function"]["name"]
        names = {tool["function"]["name"] for tool in given.get("tools", [])}
        if wanted not in names:
            raise _fail("tool_choice.function.name", f"{wanted!r} is not one of the given tools")
    elif choice == "required" and not given.get("tools"):
        raise _fail("tool_choice", "'required' needs tools")


def guard_embeddings_request(body: dict[str, Any]) -> EmbeddingsRequest:
    """Validate an OpenAI embeddings request; raise GuardError (400) with the reason."""
    given = _validate(body, EMBEDDINGS_PARAMETERS, ("model", "input"))
    metadata = given.pop("metadata", {})
    return EmbeddingsRequest(
        model=given["model"],
        stream=False,
        include_usage=False,
        payload=given,
        metadata=metadata,
        user=given.get("user"),
    )


# --- token arithmetic ------------------------------------------------------------------------


def apply_token_cap(payload: dict[str, Any], *, max_output_tokens: int) -> int:
    """Cap the requested output tokens at the deployment's maximum, in place.

    Both spellings are capped when present; when neither is, `max_tokens` is injected so that
    a budget reservation always has a bound. Returns the effective cap.
    """
    caps = []
    for key in ("max_tokens", "max_completion_tokens"):
        requested = payload.get(key)
        if requested is not None:
            payload[key] = min(int(requested), max_output_tokens)
            caps.append(payload[key])
    if not caps:
        payload["max_tokens"] = max_output_tokens
        return max_output_tokens
    return min(caps)


def estimate_prompt_tokens(
    messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None
) -> int:
    """A cheap, deliberately generous prompt-token estimate (no tokenizer on the hot path).

    ceil(characters / 4) over all text, names, tool-call arguments and tool definitions, plus
    4 per message and 3 for the reply primer (OpenAI's chat framing), plus a flat 85 per image.
    Audio and file parts are not counted: their cost depends on the provider.
    """
    chars = 0
    images = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        message_chars, message_images = _message_size(message)
        chars += message_chars
        images += message_images
    if tools:
        chars += len(json.dumps(tools, ensure_ascii=False, separators=(",", ":")))
    return math.ceil(chars / 4) + 4 * len(messages) + 3 + IMAGE_TOKENS * images


def _message_size(message: dict[str, Any]) -> tuple[int, int]:
    chars = _str_len(message.get("name"))
    images = 0
    content = message.get("content")
    if isinstance(content, str):
        chars += len(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "image_url":
                images += 1
            else:
                chars += _str_len(part.get("text")) + _str_len(part.get("refusal"))
    calls = message.get("tool_calls")
    functions = [message.get("function_call")]
    if isinstance(calls, list):
        functions += [call.get("function") for call in calls if isinstance(call, dict)]
    for function in functions:
        if isinstance(function, dict):
            chars += _str_len(function.get("name")) + _str_len(function.get("arguments"))
    return chars, images


def _str_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0
