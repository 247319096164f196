"""Request guard: the allow-list, forbidden keys at any depth, body limits and token caps."""

import dataclasses
import json
import time
from typing import Any

import pytest

from gateway.runtime.guard import (
    MAX_DEPTH,
    ChatRequest,
    GuardError,
    apply_token_cap,
    estimate_prompt_tokens,
    guard_chat_request,
    guard_embeddings_request,
    parse_json_body,
)

# The list from the design review, spelled out here so a shrinking module list fails a test.
FORBIDDEN = [
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
]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
IMAGE_DATA = "data:image/png;base64,iVBORw0KGgo="


def chat(**params: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **params}


def refused(body: dict[str, Any]) -> GuardError:
    with pytest.raises(GuardError) as info:
        guard_chat_request(body)
    assert info.value.status == 400
    return info.value


# --- the allow-list ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 0},
        {"temperature": 2},
        {"temperature": 0.7},
        {"top_p": 0},
        {"top_p": 1},
        {"n": 1},
        {"n": 8},
        {"max_tokens": 1},
        {"max_tokens": 4096},
        {"max_completion_tokens": 1},
        {"stream": True},
        {"stream": False},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"stop": "END"},
        {"stop": ["a", "b", "c", "d"]},
        {"presence_penalty": -2},
        {"presence_penalty": 2},
        {"frequency_penalty": 0.5},
        {"logit_bias": {"50256": -100, "11": 100, "7": 0.5}},
        {"logprobs": True},
        {"logprobs": True, "top_logprobs": 0},
        {"logprobs": True, "top_logprobs": 20},
        {"seed": 42},
        {"seed": -1},
        {"user": "end-user-1"},
        {"user": "u" * 256},
        {"tools": [TOOL]},
        {"tools": [{"type": "function", "function": {"name": "a-b_C9"}}]},
        {"tools": [TOOL], "tool_choice": "none"},
        {"tools": [TOOL], "tool_choice": "auto"},
        {"tools": [TOOL], "tool_choice": "required"},
        {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        {"tools": [TOOL], "parallel_tool_calls": False},
        {"response_format": {"type": "text"}},
        {"response_format": {"type": "json_object"}},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
            }
        },
        {"metadata": {"task_type": "summarise", "tags": ["a", 1, True, None], "n": {"x": 1.5}}},
        {"reasoning_effort": "low"},
        {"service_tier": "auto"},
        {"modalities": ["text"]},
        {"prediction": {"type": "content", "content": "draft"}},
        {"temperature": None, "tools": None, "stop": None},  # null means "not given"
    ],
)
def test_allowed_parameters_pass(params: dict[str, Any]) -> None:
    request = guard_chat_request(chat(**params))
    expected = {k: v for k, v in params.items() if v is not None and k != "metadata"}
    for key, value in expected.items():
        assert request.payload[key] == value
    assert set(request.payload) == {"model", "messages", *expected}


@pytest.mark.parametrize(
    ("params", "param", "fragment"),
    [
        ({"temperature": 2.1}, "temperature", "temperature must be a number between 0 and 2"),
        ({"temperature": -0.1}, "temperature", "between 0 and 2, got -0.1"),
        ({"temperature": "hot"}, "temperature", "must be a number"),
        ({"temperature": True}, "temperature", "must be a number"),
        ({"temperature": float("inf")}, "temperature", "must be a number"),
        ({"top_p": 1.5}, "top_p", "top_p must be a number between 0 and 1"),
        ({"n": 0}, "n", "n must be between 1 and 8, got 0"),
        ({"n": 9}, "n", "n must be between 1 and 8"),
        ({"n": 1.5}, "n", "n must be an integer"),
        ({"max_tokens": 0}, "max_tokens", "max_tokens must be at least 1, got 0"),
        ({"max_tokens": "100"}, "max_tokens", "max_tokens must be an integer"),
        ({"max_tokens": 100.0}, "max_tokens", "must be an integer"),
        ({"max_completion_tokens": -5}, "max_completion_tokens", "must be at least 1"),
        ({"stream": "yes"}, "stream", "stream must be true or false"),
        ({"stream": 1}, "stream", "stream must be true or false"),
        (
            {"stream": True, "stream_options": {"include_usage": "yes"}},
            "stream_options.include_usage",
            "must be true or false",
        ),
        (
            {"stream": True, "stream_options": {"chunk_size": 1}},
            "stream_options.chunk_size",
            "is not a recognized field",
        ),
        ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed when stream"),
        ({"stop": 5}, "stop", "stop must be a string or an array of strings"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4 items, got 5"),
        ({"stop": ["a", 1]}, "stop[1]", "stop[1] must be a string"),
        ({"presence_penalty": 3}, "presence_penalty", "between -2 and 2"),
        ({"frequency_penalty": -2.5}, "frequency_penalty", "between -2 and 2"),
        ({"logit_bias": {"abc": 1}}, "logit_bias.abc", "is not a token id"),
        ({"logit_bias": {"1": 101}}, "logit_bias.1", "between -100 and 100"),
        ({"logit_bias": [1]}, "logit_bias", "logit_bias must be an object"),
        ({"logprobs": "true"}, "logprobs", "logprobs must be true or false"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "between 0 and 20"),
        ({"top_logprobs": 5}, "top_logprobs", "needs logprobs set to true"),
        ({"seed": 1.5}, "seed", "seed must be an integer"),
        ({"seed": 2**63}, "seed", "seed must be between"),
        ({"user": 5}, "user", "user must be a string"),
        ({"user": "u" * 257}, "user", "at most 256 characters"),
        ({"tools": []}, "tools", "must not be empty"),
        ({"tools": {"a": 1}}, "tools", "tools must be an array"),
        ({"tools": [TOOL] * 129}, "tools", "at most 128 items"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type", "must be one of 'function'"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "tools[0].function.name",
            "must match",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "x" * 65}}]},
            "tools[0].function.name",
            "must match",
        ),
        ({"tools": [TOOL, TOOL]}, "tools[1].function.name", "is used by another tool"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
            "tools[0].function.parameters",
            "must be an object",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]},
            "tools[0].function.strict",
            "must be true or false",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "examples": []}}]},
            "tools[0].function.examples",
            "is not a recognized field",
        ),
        ({"tool_choice": "sometimes"}, "tool_choice", "tool_choice must be one of 'none'"),
        ({"tool_choice": "required"}, "tool_choice", "'required' needs tools"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}},
            "tool_choice.function.name",
            "'other' is not one of the given tools",
        ),
        ({"parallel_tool_calls": "true"}, "parallel_tool_calls", "must be true or false"),
        ({"response_format": {"type": "xml"}}, "response_format.type", "must be one of 'text'"),
        ({"response_format": "json"}, "response_format", "must be an object"),
        (
            {"response_format": {"type": "json_schema"}},
            "response_format.json_schema",
            "response_format.json_schema is required",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
            "is required",
        ),
        (
            {"response_format": {"type": "text", "json_schema": {"name": "x"}}},
            "response_format.json_schema",
            "only allowed when type is 'json_schema'",
        ),
        ({"metadata": ["a"]}, "metadata", "metadata must be an object"),
        (
            {"metadata": {f"k{i}": i for i in range(65)}},
            "metadata",
            "at most 64 keys, got 65",
        ),
        ({"reasoning_effort": 5}, "reasoning_effort", "must be a string"),
        ({"reasoning_effort": ""}, "reasoning_effort", "must not be empty"),
        ({"service_tier": ["auto"]}, "service_tier", "must be a string"),
        ({"modalities": "text"}, "modalities", "must be an array"),
        ({"modalities": [1]}, "modalities[0]", "must be a string"),
        ({"prediction": "draft"}, "prediction", "must be an object"),
        ({"model": ""}, "model", "model must not be empty"),
        ({"model": 5}, "model", "model must be a string"),
        ({"model": "m" * 201}, "model", "at most 200 characters"),
        ({"model": None}, "model", "model is required"),
        ({"messages": []}, "messages", "must contain at least one message"),
        ({"messages": "hi"}, "messages", "messages must be an array"),
        (
            {"messages": [{"role": "user", "content": "x"}] * 2049},
            "messages",
            "at most 2048 items",
        ),
    ],
)
def test_bad_values_are_refused_with_a_specific_message(
    params: dict[str, Any], param: str, fragment: str
) -> None:
    error = refused(chat(**params))
    assert error.param == param
    assert fragment in error.message
    assert error.code == "invalid_request"


def test_missing_required_fields() -> None:
    assert refused({"messages": [{"role": "user", "content": "x"}]}).message == "model is required."
    assert refused({"model": "m"}).param == "messages"


@pytest.mark.parametrize("name", ["frobnicate", "functions", "logit-bias", "Temperature"])
def test_unknown_parameter_is_named(name: str) -> None:
    error = refused(chat(**{name: 1}))
    assert error.message == f"Unrecognized request argument supplied: {name}"
    assert error.param == name


def test_request_shape() -> None:
    request = guard_chat_request(
        chat(stream=True, stream_options={"include_usage": True}, user="u1", metadata={"a": 1})
    )
    assert isinstance(request, ChatRequest)
    assert (request.model, request.stream, request.include_usage) == ("gpt-4o-mini", True, True)
    assert request.user == "u1"
    assert request.payload["user"] == "u1"  # providers use it for abuse tracking
    assert request.metadata == {"a": 1}
    assert "metadata" not in request.payload
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.model = "other"  # type: ignore[misc]


def test_defaults_without_optional_fields() -> None:
    request = guard_chat_request(chat())
    assert (request.stream, request.include_usage, request.user) == (False, False, None)
    assert request.metadata == {}
    assert set(request.payload) == {"model", "messages"}


# --- messages ----------------------------------------------------------------------------------


def test_a_full_conversation_passes() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {
            "role": "user",
            "name": "alice",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}},
                {"type": "image_url", "image_url": {"url": IMAGE_DATA, "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-abc"}},
                {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "a.pdf"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
        # What the OpenAI SDK's message.model_dump() produces when a reply is sent back.
        {
            "role": "assistant",
            "content": "It is 18 C.",
            "refusal": None,
            "audio": None,
            "annotations": None,
            "function_call": None,
            "tool_calls": None,
        },
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "done"},
        {"role": "user", "content": ""},
    ]
    request = guard_chat_request(chat(messages=messages, tools=[TOOL]))
    assert request.payload["messages"] == messages


@pytest.mark.parametrize(
    ("message", "param", "fragment"),
    [
        ("hi", "messages[0]", "messages[0] must be an object"),
        ({"role": "robot", "content": "x"}, "messages[0].role", "must be one of 'system'"),
        ({"content": "x"}, "messages[0].role", "messages[0].role must be one of"),
        ({"role": "user", "content": "x", "mood": "happy"}, "messages[0].mood", "not a recog"),
        ({"role": "user", "content": 5}, "messages[0].content", "must be a string or an array"),
        ({"role": "user", "content": None}, "messages[0].content", "is required"),
        ({"role": "user"}, "messages[0].content", "is required"),
        ({"role": "assistant", "content": None}, "messages[0].content", "is required"),
        ({"role": "user", "content": []}, "messages[0].content", "must not be an empty array"),
        ({"role": "user", "content": ["hi"]}, "messages[0].content[0]", "must be an object"),
        (
            {"role": "user", "content": [{"type": "video", "video": {}}]},
            "messages[0].content[0].type",
            "must be one of 'text', 'image_url', 'input_audio', 'file' in a user message",
        ),
        (
            {
                "role": "system",
                "content": [{"type": "image_url", "image_url": {"url": IMAGE_DATA}}],
            },
            "messages[0].content[0].type",
            "must be one of 'text' in a system message",
        ),
        (
            {"role": "user", "content": [{"type": "text", "text": 5}]},
            "messages[0].content[0].text",
            "must be a string",
        ),
        (
            {"role": "user", "content": [{"type": "text", "text": "x", "extra": 1}]},
            "messages[0].content[0].extra",
            "is not a recognized field",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "http://x/a"}}],
            },
            "messages[0].content[0].image_url.url",
            "must be an https:// URL or a data: URL",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "file:///etc"}}],
            },
            "messages[0].content[0].image_url.url",
            "https://",
        ),
        (
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": IMAGE_DATA, "detail": "max"}}
                ],
            },
            "messages[0].content[0].image_url.detail",
            "must be one of 'auto', 'low', 'high'",
        ),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": IMAGE_DATA}]},
            "messages[0].content[0].image_url",
            "must be an object",
        ),
        (
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]},
            "messages[0].content[0].input_audio.format",
            "is required",
        ),
        (
            {"role": "user", "content": [{"type": "file", "file": {"filename": "a.pdf"}}]},
            "messages[0].content[0].file",
            "needs file_id or file_data",
        ),
        ({"role": "tool", "content": "x"}, "messages[0].tool_call_id", "is required"),
        (
            {"role": "user", "content": "x", "tool_call_id": "c1"},
            "messages[0].tool_call_id",
            "only allowed on tool messages",
        ),
        (
            {"role": "user", "content": "x", "tool_calls": []},
            "messages[0].tool_calls",
            "only allowed on assistant messages",
        ),
        (
            {"role": "assistant", "content": None, "tool_calls": []},
            "messages[0].tool_calls",
            "must not be empty",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "code", "function": {"name": "f"}}],
            },
            "messages[0].tool_calls[0].type",
            "must be one of 'function'",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}
                ],
            },
            "messages[0].tool_calls[0].function.arguments",
            "must be a string",
        ),
        (
            {"role": "assistant", "tool_calls": [{"type": "function", "function": {}}]},
            "messages[0].tool_calls[0].id",
            "is required",
        ),
        ({"role": "function", "content": "x"}, "messages[0].name", "is required"),
        ({"role": "user", "content": "x", "name": 5}, "messages[0].name", "must be a string"),
        ({"role": "assistant", "content": "x", "audio": {}}, "messages[0].audio.id", "required"),
    ],
)
def test_bad_messages_are_refused_with_their_path(message: Any, param: str, fragment: str) -> None:
    error = refused(chat(messages=[message]))
    assert error.param == param
    assert fragment in error.message


def test_the_failing_message_index_is_reported() -> None:
    messages = [{"role": "user", "content": "ok"}] * 2 + [{"role": "boss", "content": "x"}]
    error = refused(chat(messages=messages))
    assert error.message.startswith("messages[2].role must be one of 'system', 'developer'")


# --- forbidden keys ----------------------------------------------------------------------------


def forbidden(body: dict[str, Any], path: str) -> None:
    error = refused(body)
    assert error.code == "forbidden_parameter"
    assert error.param == path
    assert path in error.message


@pytest.mark.parametrize("key", FORBIDDEN)
def test_forbidden_key_at_top_level(key: str) -> None:
    forbidden(chat(**{key: "https://evil.example"}), key)


@pytest.mark.parametrize("key", FORBIDDEN)
def test_forbidden_key_nested_in_metadata(key: str) -> None:
    forbidden(chat(metadata={"routing": {key: "x"}}), f"metadata.routing.{key}")


@pytest.mark.parametrize("key", FORBIDDEN)
def test_forbidden_key_inside_a_message(key: str) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "user", "content": "x", key: "x"}]
    forbidden(chat(messages=messages), f"messages[1].{key}")


@pytest.mark.parametrize("key", FORBIDDEN)
def test_forbidden_key_inside_a_content_part_and_a_tool(key: str) -> None:
    part = {"type": "text", "text": "x", key: 1}
    forbidden(chat(messages=[{"role": "user", "content": [part]}]), f"messages[0].content[0].{key}")
    # In a tool definition itself (not inside its parameters schema, whose keys are data).
    tool = {"type": "function", "function": {"name": "f", key: {}}}
    forbidden(chat(tools=[tool]), f"tools[0].function.{key}")


@pytest.mark.parametrize("key", FORBIDDEN)
def test_forbidden_key_inside_extra_body(key: str) -> None:
    # `extra_body` is itself forbidden, and is reported before anything inside it.
    forbidden(chat(extra_body={key: "x"}), "extra_body")
    forbidden(chat(metadata={"x": [{"extra_body": {key: "x"}}]}), "metadata.x[0].extra_body")


@pytest.mark.parametrize("key", FORBIDDEN)
def test_forbidden_key_in_other_spellings(key: str) -> None:
    dashed = key.replace("_", "-")
    shouted = key.upper()
    camel = key.split("_")[0] + "".join(word.title() for word in key.split("_")[1:])
    for spelling in {dashed, shouted, camel, dashed.upper()}:
        forbidden(chat(**{spelling: "x"}), spelling)
        forbidden(chat(metadata={"a": {spelling: "x"}}), f"metadata.a.{spelling}")


@pytest.mark.parametrize(
    "key",
    [
        "openai_base",
        "my_url",
        "image_url",  # anywhere but a content part
        "custom_endpoint",
        "openai_api_key",
        "refresh_token",
        "session_token",
        "baseURL",  # the JS SDK spelling
        "apiKey",
        "Base-Url",
    ],
)
def test_forbidden_suffixes(key: str) -> None:
    forbidden(chat(**{key: "x"}), key)
    forbidden(chat(metadata={"deep": [{"deeper": {key: 1}}]}), f"metadata.deep[0].deeper.{key}")
    forbidden(chat(messages=[{"role": "user", "content": "x", key: 1}]), f"messages[0].{key}")


@pytest.mark.parametrize(
    "key",
    ["max_tokens", "prompt_tokens", "tokens", "token_budget", "url_count", "baseline", "hosts"],
)
def test_lookalike_keys_in_metadata_are_fine(key: str) -> None:
    assert guard_chat_request(chat(metadata={key: 1})).metadata == {key: 1}


def test_forbidden_keys_win_over_unrecognized() -> None:
    # An attacker must see "forbidden", and the log must say so: never just "unrecognized".
    assert refused(chat(api_base="x")).code == "forbidden_parameter"


@pytest.mark.parametrize(
    "value",
    [
        "https://evil.example/v1",
        "http://169.254.169.254/",
        "HTTP://EVIL",
        "  https://evil.example",
        "//evil.example/v1",
        "\\\\evil.example\\share",
        "ftp://files.example",
        "gopher://127.0.0.1:70/",
        "redis://10.0.0.1:6379",
        "https:evil.example",
    ],
)
def test_url_values_in_metadata_are_refused(value: str) -> None:
    for metadata, path in [
        ({"target": value}, "metadata.target"),
        ({"a": {"b": [1, value]}}, "metadata.a.b[1]"),
    ]:
        error = refused(chat(metadata=metadata))
        assert error.message.startswith("URL-valued settings are not accepted in metadata")
        assert error.param == path


@pytest.mark.parametrize(
    "value", ["team-a", "see docs: https is fine mid-sentence", "a/b//c", "mailto-ish", ""]
)
def test_ordinary_metadata_strings_pass(value: str) -> None:
    assert guard_chat_request(chat(metadata={"note": value})).metadata == {"note": value}


def test_urls_outside_metadata_are_not_metadata_errors() -> None:
    # A prompt may of course mention URLs; only metadata is ours.
    message = {"role": "user", "content": "Summarise https://example.com/a"}
    assert guard_chat_request(chat(messages=[message]))


def test_image_url_parts_are_allowed_but_only_as_parts() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}}
    request = guard_chat_request(chat(messages=[{"role": "user", "content": [part]}]))
    assert request.payload["messages"][0]["content"][0] == part
    nested = {"type": "text", "text": "x", "extra": {"image_url": "https://x"}}
    forbidden(
        chat(messages=[{"role": "user", "content": [nested]}]),
        "messages[0].content[0].extra.image_url",
    )


# --- depth -------------------------------------------------------------------------------------


def nested_metadata(levels: int) -> dict[str, Any]:
    """Metadata whose innermost object sits `levels` objects below the metadata object."""
    inner: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        inner = {"n": inner}
    return inner


def test_nesting_up_to_the_limit_passes() -> None:
    # body (1) → metadata (2) → ... → depth MAX_DEPTH exactly.
    assert guard_chat_request(chat(metadata=nested_metadata(MAX_DEPTH - 2)))
    error = refused(chat(metadata=nested_metadata(MAX_DEPTH - 1)))
    assert "nested more than 32 levels" in error.message


def test_a_depth_bomb_is_refused_quickly() -> None:
    bomb = nested_metadata(200_000)
    started = time.perf_counter()
    error = refused(chat(metadata=bomb))
    assert time.perf_counter() - started < 0.5
    assert "nested" in error.message


def test_a_raw_depth_bomb_is_refused_at_parse_time() -> None:
    raw = b'{"metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    started = time.perf_counter()
    with pytest.raises(GuardError) as info:
        parse_json_body(raw, max_bytes=10**6)
    assert time.perf_counter() - started < 0.5
    assert info.value.status == 400
    assert "nested too deeply" in info.value.message


# --- body parsing ------------------------------------------------------------------------------


def test_body_parses() -> None:
    raw = json.dumps(chat(metadata={"city": "Zürich"}), ensure_ascii=False).encode()
    assert parse_json_body(raw, max_bytes=len(raw)) == chat(metadata={"city": "Zürich"})


def test_body_too_large_is_413() -> None:
    raw = json.dumps(chat()).encode()
    with pytest.raises(GuardError) as info:
        parse_json_body(raw, max_bytes=len(raw) - 1)
    assert info.value.status == 413
    assert str(len(raw) - 1) in info.value.message


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b'{"model": "\xff"}', "not valid UTF-8"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),  # a BOM is not JSON
        (b'{"model": ', "not valid JSON"),
        (b"{'model': 'x'}", "not valid JSON"),
        (b'{"temperature": NaN}', "not valid JSON"),
        (b'{"temperature": Infinity}', "not valid JSON"),
        (b'{"seed": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"[]", "must be a JSON object, not an array"),
        (b'"hello"', "must be a JSON object, not a string"),
        (b"null", "must be a JSON object, not null"),
        (b"42", "must be a JSON object, not a number"),
    ],
)
def test_bad_bodies_are_400(raw: bytes, fragment: str) -> None:
    with pytest.raises(GuardError) as info:
        parse_json_body(raw, max_bytes=1_000_000)
    assert info.value.status == 400
    assert fragment in info.value.message


def test_guard_refuses_a_non_object() -> None:
    with pytest.raises(GuardError, match="must be a JSON object"):
        guard_chat_request([])  # type: ignore[arg-type]


# --- embeddings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"input": "hello"},
        {"input": ["a", "b"]},
        {"input": ["x"] * 2048},
        {"input": [1, 2, 3]},
        {"input": [[1, 2], [3]]},
        {"input": "x", "encoding_format": "float"},
        {"input": "x", "encoding_format": "base64"},
        {"input": "x", "dimensions": 256},
        {"input": "x", "user": "u1"},
    ],
)
def test_embeddings_allowed(params: dict[str, Any]) -> None:
    request = guard_embeddings_request({"model": "text-embedding-3-small", **params})
    assert request.payload == {"model": "text-embedding-3-small", **params}
    assert (request.stream, request.include_usage) == (False, False)
    assert request.user == params.get("user")


@pytest.mark.parametrize(
    ("params", "param", "fragment"),
    [
        ({"input": ""}, "input", "must not be empty"),
        ({"input": []}, "input", "must not be empty"),
        ({"input": ["x"] * 2049}, "input", "at most 2048 items"),
        ({"input": ["a", ""]}, "input[1]", "must not be empty"),
        ({"input": ["a", 1]}, "input[1]", "must be a string"),
        ({"input": [1, "a"]}, "input[1]", "must be a token id"),
        ({"input": [1, -1]}, "input[1]", "must be a token id"),
        ({"input": [[1], []]}, "input[1]", "non-empty array of token ids"),
        ({"input": [[1], ["a"]]}, "input[1][0]", "must be a token id"),
        ({"input": [{"text": "x"}]}, "input", "must be a string, an array of strings"),
        ({"input": 5}, "input", "must be an array"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", "'float', 'base64'"),
        ({"input": "x", "dimensions": 0}, "dimensions", "at least 1"),
        ({"input": "x", "user": "u" * 257}, "user", "at most 256"),
        ({"input": "x", "temperature": 1}, "temperature", "Unrecognized request argument"),
        ({}, "input", "input is required"),
    ],
)
def test_embeddings_refused(params: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(GuardError) as info:
        guard_embeddings_request({"model": "text-embedding-3-small", **params})
    assert info.value.param == param
    assert fragment in info.value.message


def test_embeddings_metadata_stays_out_of_the_payload_and_is_guarded() -> None:
    request = guard_embeddings_request({"model": "e", "input": "x", "metadata": {"team": "a"}})
    assert request.metadata == {"team": "a"}
    assert "metadata" not in request.payload
    for body, code in [
        ({"model": "e", "input": "x", "api_key": "sk"}, "forbidden_parameter"),
        ({"model": "e", "input": "x", "metadata": {"u": "https://x"}}, "forbidden_parameter"),
    ]:
        with pytest.raises(GuardError) as info:
            guard_embeddings_request(body)
        assert info.value.code == code


# --- token cap and estimate --------------------------------------------------------------------


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize(("requested", "expected"), [(100, 100), (4096, 4096), (50_000, 4096)])
def test_token_cap_keeps_or_caps(key: str, requested: int, expected: int) -> None:
    payload = {"model": "m", key: requested}
    assert apply_token_cap(payload, max_output_tokens=4096) == expected
    assert payload[key] == expected
    other = "max_tokens" if key == "max_completion_tokens" else "max_completion_tokens"
    assert other not in payload


def test_token_cap_is_injected_when_absent() -> None:
    payload: dict[str, Any] = {"model": "m"}
    assert apply_token_cap(payload, max_output_tokens=2048) == 2048
    assert payload["max_tokens"] == 2048


def test_token_cap_with_both_spellings_caps_both() -> None:
    payload = {"max_tokens": 9000, "max_completion_tokens": 300}
    assert apply_token_cap(payload, max_output_tokens=1000) == 300
    assert payload == {"max_tokens": 1000, "max_completion_tokens": 300}


def test_estimate_formula() -> None:
    # ceil(40 / 4) + 4 per message + 3
    assert estimate_prompt_tokens([{"role": "user", "content": "abcd" * 10}]) == 17
    assert estimate_prompt_tokens([{"role": "user", "content": "a"}]) == 1 + 4 + 3


def test_estimate_grows_with_content_images_tools_and_calls() -> None:
    small = [{"role": "user", "content": "hello"}]
    base = estimate_prompt_tokens(small)
    assert estimate_prompt_tokens([{"role": "user", "content": "hello " * 400}]) > base + 400
    assert estimate_prompt_tokens(small * 3) > base
    image = {"type": "image_url", "image_url": {"url": IMAGE_DATA}}
    with_images = [{"role": "user", "content": [{"type": "text", "text": "hello"}, image, image]}]
    assert estimate_prompt_tokens(with_images) == base + 2 * 85
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "x" * 400}}
    assert estimate_prompt_tokens([*small, {"role": "assistant", "tool_calls": [call]}]) > (
        base + 100
    )
    assert estimate_prompt_tokens(small, tools=[TOOL]) > base + 20


def test_estimate_tolerates_odd_shapes() -> None:
    odd: list[Any] = ["x", {"content": 5}, {"content": [None, {"type": "text"}]}]
    assert estimate_prompt_tokens(odd) == 3 * 4 + 3


def test_schema_property_names_are_data_not_settings() -> None:
    """A tool or response schema may have properties named like settings (host, page_token)."""
    from gateway.runtime.guard import guard_chat_request

    schema = {
        "type": "object",
        "properties": {"host": {"type": "string"}, "page_token": {"type": "string"},
                       "callback_url": {"type": "string"}, "api_key": {"type": "string"}},
    }  # fmt: skip
    request = guard_chat_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": schema},
            },
        }
    )
    assert request.payload["tools"][0]["function"]["parameters"] == schema
    # The same names outside a schema are still refused.
    with pytest.raises(GuardError, match="host"):
        guard_chat_request(
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f", "host": "evil"}}],
            }
        )
