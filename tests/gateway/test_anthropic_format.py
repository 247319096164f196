"""The Anthropic ↔ OpenAI translation layer behind `POST /v1/messages` (pure data, no I/O)."""

import json
from typing import Any

import pytest

from gateway.api.anthropic_format import (
    ANTHROPIC_ERROR_TYPES,
    AnthropicRequestError,
    AnthropicStreamTranslator,
    anthropic_error_body,
    anthropic_message_id,
    anthropic_request_to_openai,
    openai_response_to_anthropic,
    sse_encode,
)

MODEL = "claude-sonnet-4-5"
PNG = "iVBORw0KGgo="
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME_TOOL = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}


def request(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hello"}],
    }
    body.update(fields)
    return body


def rejected(body: dict[str, Any]) -> AnthropicRequestError:
    with pytest.raises(AnthropicRequestError) as caught:
        anthropic_request_to_openai(body)
    return caught.value


# --------------------------------------------------------------------------- request: content


def test_plain_text_request():
    assert anthropic_request_to_openai(request()) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 256,
        "stream": False,
    }


def test_system_string_comes_first():
    out = anthropic_request_to_openai(request(system="Be terse."))
    assert out["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hello"},
    ]


def test_system_blocks_are_joined_and_cache_control_dropped():
    system = [
        {"type": "text", "text": "You are a helper."},
        {"type": "text", "text": "Long context.", "cache_control": {"type": "ephemeral"}},
    ]
    out = anthropic_request_to_openai(request(system=system))
    assert out["messages"][0] == {"role": "system", "content": "You are a helper.\n\nLong context."}
    assert "cache_control" not in json.dumps(out)


def test_empty_system_adds_no_message():
    out = anthropic_request_to_openai(request(system=""))
    assert [m["role"] for m in out["messages"]] == ["user"]


def test_system_block_must_be_text():
    error = rejected(request(system=[{"type": "image", "source": {}}]))
    assert error.param == "system.0.type"


def test_text_blocks_become_content_parts_and_a_single_block_a_string():
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "only one"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}],
        },
    ]
    out = anthropic_request_to_openai(request(messages=messages))
    assert out["messages"] == [
        {"role": "user", "content": "only one"},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}],
        },
    ]


def test_base64_image_becomes_data_url():
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "What is this?"},
    ]
    out = anthropic_request_to_openai(request(messages=[{"role": "user", "content": content}]))
    assert out["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "text", "text": "What is this?"},
    ]


def test_url_image_passes_the_url():
    url = "https://example.com/cat.jpg"
    content = [{"type": "image", "source": {"type": "url", "url": url}}]
    out = anthropic_request_to_openai(request(messages=[{"role": "user", "content": content}]))
    assert out["messages"][0]["content"] == [{"type": "image_url", "image_url": {"url": url}}]


@pytest.mark.parametrize(
    ("source", "param"),
    [
        ({"type": "url", "url": "file:///etc/passwd"}, "messages.0.content.0.source.url"),
        (
            {"type": "base64", "media_type": "image/tiff", "data": PNG},
            "messages.0.content.0.source.media_type",
        ),
        ({"type": "file", "file_id": "f_1"}, "messages.0.content.0.source.type"),
    ],
)
def test_bad_image_sources_are_rejected(source, param):
    content = [{"type": "image", "source": source}]
    assert rejected(request(messages=[{"role": "user", "content": content}])).param == param


def test_text_document_becomes_text_with_its_title():
    content = [
        {
            "type": "document",
            "title": "Notes",
            "source": {"type": "text", "media_type": "text/plain", "data": "Buy milk."},
        },
        {"type": "text", "text": "Summarise."},
    ]
    out = anthropic_request_to_openai(request(messages=[{"role": "user", "content": content}]))
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "Notes\n\nBuy milk."},
        {"type": "text", "text": "Summarise."},
    ]


def test_pdf_document_is_not_supported():
    source = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}
    content = [{"type": "document", "source": source}]
    error = rejected(request(messages=[{"role": "user", "content": content}]))
    assert error.param == "messages.0.content.0.source.type"
    assert "not supported" in error.message


def test_thinking_blocks_are_dropped():
    assistant = [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Answer."},
    ]
    messages = [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": assistant},
        {"role": "user", "content": "Thanks"},
    ]
    out = anthropic_request_to_openai(request(messages=messages))
    assert out["messages"][1] == {"role": "assistant", "content": "Answer."}
    assert "hmm" not in json.dumps(out)


# --------------------------------------------------------------------------- request: tools


def test_tool_use_and_tool_result_round_trip_keeps_order():
    messages = [
        {"role": "user", "content": "Weather in Paris and the time?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C, sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "14:05"}],
                },
                {"type": "text", "text": "Now summarise."},
            ],
        },
        {"role": "assistant", "content": "It is 18°C and 14:05."},
    ]
    out = anthropic_request_to_openai(request(messages=messages, tools=[WEATHER_TOOL, TIME_TOOL]))
    assert out["messages"] == [
        {"role": "user", "content": "Weather in Paris and the time?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C, sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "14:05"},
        {"role": "user", "content": "Now summarise."},
        {"role": "assistant", "content": "It is 18°C and 14:05."},
    ]


def test_assistant_with_only_tool_use_has_null_content():
    messages = [
        {"role": "user", "content": "time?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_9", "name": "get_time", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]},
    ]
    out = anthropic_request_to_openai(request(messages=messages, tools=[TIME_TOOL]))
    assert out["messages"][1]["content"] is None
    assert out["messages"][2] == {"role": "tool", "tool_call_id": "toolu_9", "content": ""}


def test_tool_result_error_flag_is_kept_as_a_prefix():
    content = [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": "city unknown",
            "is_error": True,
        }
    ]
    out = anthropic_request_to_openai(request(messages=[{"role": "user", "content": content}]))
    assert out["messages"] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: city unknown"}
    ]


def test_tool_result_images_follow_the_tool_messages():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    content = [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [image]},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "done"},
    ]
    out = anthropic_request_to_openai(request(messages=[{"role": "user", "content": content}]))
    roles = [m["role"] for m in out["messages"]]
    # Nothing may sit between tool messages answering one assistant turn.
    assert roles == ["tool", "tool", "user"]
    assert out["messages"][2]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
    }


def test_tools_are_translated_to_functions():
    out = anthropic_request_to_openai(request(tools=[WEATHER_TOOL, TIME_TOOL]))
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": TIME_TOOL["input_schema"]},
        },
    ]
    assert "tool_choice" not in out


def test_custom_tool_type_is_accepted():
    out = anthropic_request_to_openai(request(tools=[{**TIME_TOOL, "type": "custom"}]))
    assert out["tools"][0]["function"]["name"] == "get_time"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_each_tool_choice(choice, expected):
    out = anthropic_request_to_openai(request(tools=[WEATHER_TOOL], tool_choice=choice))
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


def test_disable_parallel_tool_use():
    choice = {"type": "auto", "disable_parallel_tool_use": True}
    out = anthropic_request_to_openai(request(tools=[WEATHER_TOOL], tool_choice=choice))
    assert out["tool_choice"] == "auto"
    assert out["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "tool"}}, "tool_choice.name"),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "tool", "name": "nope"}},
            "tool_choice.name",
        ),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        ({"tools": [WEATHER_TOOL, WEATHER_TOOL]}, "tools"),
        ({"tools": [{"name": "no schema"}]}, "tools.0.name"),
        ({"tools": [{"name": "t"}]}, "tools.0.input_schema"),
    ],
)
def test_bad_tools_and_tool_choice_are_rejected(fields, param):
    assert rejected(request(**fields)).param == param


def test_server_tool_is_not_supported():
    tools = [WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    error = rejected(request(tools=tools))
    assert error.param == "tools.1.type"
    assert "web_search_20250305" in error.message
    assert "not supported" in error.message


# --------------------------------------------------------------------------- request: parameters


def test_sampling_parameters_and_stop_sequences():
    body = request(stop_sequences=["\n\nHuman:", "END"], temperature=0.2, top_p=0.9, top_k=40)
    out = anthropic_request_to_openai(body)
    assert out["stop"] == ["\n\nHuman:", "END"]
    assert out["temperature"] == 0.2
    assert out["top_p"] == 0.9
    assert "top_k" not in out


def test_too_many_stop_sequences():
    assert rejected(request(stop_sequences=["a", "b", "c", "d", "e"])).param == "stop_sequences"


def test_metadata_user_id_becomes_user_and_metadata_is_not_forwarded():
    out = anthropic_request_to_openai(request(metadata={"user_id": "u-42"}))
    assert out["user"] == "u-42"
    assert "metadata" not in out


def test_metadata_without_user_id_adds_nothing():
    out = anthropic_request_to_openai(request(metadata={}))
    assert "user" not in out


def test_stream_asks_for_usage():
    out = anthropic_request_to_openai(request(stream=True))
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


def test_dropped_fields_are_accepted_but_not_forwarded():
    body = request(
        service_tier="auto",
        thinking={"type": "enabled", "budget_tokens": 1024},
        top_k=5,
    )
    out = anthropic_request_to_openai(body)
    assert set(out) == {"model", "messages", "max_tokens", "stream"}


# --------------------------------------------------------------------------- request: validation


def without(key: str) -> dict[str, Any]:
    body = request()
    del body[key]
    return body


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (without("max_tokens"), "max_tokens", "required"),
        (without("model"), "model", "required"),
        (without("messages"), "messages", "required"),
        (request(max_tokens=0), "max_tokens", "at least 1"),
        (request(max_tokens="100"), "max_tokens", "integer"),
        (request(max_tokens=True), "max_tokens", "integer"),
        (request(messages=[]), "messages", "at least one"),
        (
            request(messages=[{"role": "system", "content": "x"}]),
            "messages.0.role",
            "'user' or 'assistant'",
        ),
        (
            request(messages=[{"role": "user", "content": "x", "name": "bob"}]),
            "messages.0.name",
            "extra",
        ),
        (request(messages=[{"role": "user"}]), "messages.0.content", "required"),
        (request(messages=[{"role": "user", "content": []}]), "messages.0.content", "empty"),
        (request(frequency_penalty=0.5), "frequency_penalty", "not permitted"),
        (request(temperature=1.5), "temperature", "between 0 and 1"),
        (request(top_p=-0.1), "top_p", "between 0 and 1"),
        (request(stream="yes"), "stream", "boolean"),
        (request(metadata={"user_id": "u", "team": "x"}), "metadata.team", "extra"),
        (request(metadata={"user_id": 7}), "metadata.user_id", "string"),
        (request(stop_sequences="END"), "stop_sequences", "array"),
        (request(system=42), "system", "array"),
    ],
)
def test_validation_errors_name_the_field(body, param, words):
    error = rejected(body)
    assert error.param == param
    assert error.message.startswith(f"{param}: ")
    assert words in error.message


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "user", "content": [{"type": "video", "url": "x"}]}, "messages.0.content.0.type"),
        ({"role": "user", "content": [{"text": "no type"}]}, "messages.0.content.0.type"),
        ({"role": "user", "content": ["bare string"]}, "messages.0.content.0"),
        (
            {
                "role": "user",
                "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}],
            },
            "messages.0.content.0.type",
        ),
        (
            {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
            "messages.0.content.0.type",
        ),
        (
            {"role": "assistant", "content": [{"type": "image", "source": {}}]},
            "messages.0.content.0.type",
        ),
        (
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n"}]},
            "messages.0.content.0.input",
        ),
        (
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "n", "input": "{}"}],
            },
            "messages.0.content.0.input",
        ),
        (
            {"role": "user", "content": [{"type": "tool_result", "content": "x"}]},
            "messages.0.content.0.tool_use_id",
        ),
        (
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": [{"type": "tool_use", "id": "x"}],
                    }
                ],
            },
            "messages.0.content.0.content.0.type",
        ),
    ],
)
def test_bad_blocks_name_the_block(message, param):
    assert rejected(request(messages=[message])).param == param


def test_request_error_is_an_exception_with_a_message():
    error = AnthropicRequestError("max_tokens: field required", param="max_tokens")
    assert str(error) == "max_tokens: field required"
    assert AnthropicRequestError("whole body").param is None


# --------------------------------------------------------------------------- response


def completion(message: dict[str, Any], finish_reason: str | None = "stop", **extra: Any) -> dict:
    response: dict[str, Any] = {
        "id": "chatcmpl-AbC123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27},
    }
    response.update(extra)
    return response


def test_text_response():
    response = completion({"role": "assistant", "content": "Hi there!"})
    assert openai_response_to_anthropic(response, model=MODEL) == {
        "id": "msg_AbC123",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hi there!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "output_tokens": 7,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        },
    }


def test_message_id_is_stable_and_prefixed():
    first = openai_response_to_anthropic(completion({"content": "a"}), model=MODEL)["id"]
    second = openai_response_to_anthropic(completion({"content": "b"}), model=MODEL)["id"]
    assert first == second == "msg_AbC123"
    assert anthropic_message_id("chatcmpl-x_y-z") == "msg_xyz"
    assert anthropic_message_id("---") == anthropic_message_id("---")
    assert anthropic_message_id("---").startswith("msg_")


def test_tool_call_response():
    message = {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
        ],
    }
    out = openai_response_to_anthropic(completion(message, "tool_calls"), model=MODEL)
    assert out["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
    ]
    assert out["stop_reason"] == "tool_use"


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]", "null"])
def test_tool_call_with_invalid_or_non_object_arguments_keeps_the_raw_text(arguments):
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    out = openai_response_to_anthropic(completion(message, "tool_calls"), model=MODEL)
    assert out["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"_raw": arguments}}
    ]


def test_legacy_function_call_becomes_tool_use():
    message = {"role": "assistant", "function_call": {"name": "f", "arguments": '{"a": 1}'}}
    out = openai_response_to_anthropic(completion(message, "function_call"), model=MODEL)
    assert out["stop_reason"] == "tool_use"
    [block] = out["content"]
    assert block["name"] == "f"
    assert block["input"] == {"a": 1}
    assert block["id"].startswith("toolu_")


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_each_finish_reason(finish_reason, stop_reason):
    response = completion({"role": "assistant", "content": "x"}, finish_reason)
    out = openai_response_to_anthropic(response, model=MODEL)
    assert out["stop_reason"] == stop_reason
    assert out["stop_sequence"] is None


def test_stop_after_tool_calls_is_tool_use():
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    response = completion({"role": "assistant", "tool_calls": [call]}, "stop")
    assert openai_response_to_anthropic(response, model=MODEL)["stop_reason"] == "tool_use"


def test_matched_stop_sequence_when_upstream_reports_it():
    response = completion({"role": "assistant", "content": "one two"})
    response["choices"][0]["stop_reason"] = "END"  # vLLM reports the matched stop string
    out = openai_response_to_anthropic(response, model=MODEL)
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")


def test_usage_with_cached_tokens():
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 50,
        "total_tokens": 1250,
        "prompt_tokens_details": {"cached_tokens": 1024},
    }
    response = completion({"role": "assistant", "content": "x"}, usage=usage)
    assert openai_response_to_anthropic(response, model=MODEL)["usage"] == {
        "input_tokens": 176,
        "output_tokens": 50,
        "cache_read_input_tokens": 1024,
        "cache_creation_input_tokens": 0,
    }


def test_missing_usage_and_empty_content():
    response = completion({"role": "assistant", "content": ""}, "length", usage=None)
    out = openai_response_to_anthropic(response, model=MODEL)
    assert out["content"] == []
    assert out["stop_reason"] == "max_tokens"
    assert out["usage"]["input_tokens"] == out["usage"]["output_tokens"] == 0


def test_response_parses_with_the_anthropic_sdk():
    anthropic = pytest.importorskip("anthropic")
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    message = {"role": "assistant", "content": "Checking.", "tool_calls": [call]}
    usage = {
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 10},
    }
    out = openai_response_to_anthropic(completion(message, "tool_calls", usage=usage), model=MODEL)
    parsed = anthropic.types.Message.model_validate(out)
    assert parsed.stop_reason == "tool_use"
    assert parsed.content[1].input == {"city": "Paris"}
    assert parsed.usage.cache_read_input_tokens == 10


# --------------------------------------------------------------------------- stream


def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict:
    data: dict[str, Any] = {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    data.update(extra)
    return data


def usage_chunk(prompt: int, completion: int, cached: int = 0) -> dict:
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    return {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "choices": [], "usage": usage}


def run(chunks: list[dict[str, Any]], *, finish: bool = True) -> list[tuple[str, dict[str, Any]]]:
    translator = AnthropicStreamTranslator(model=MODEL, message_id="msg_s1")
    events = [event for c in chunks for event in translator.feed(c)]
    return events + (translator.finish() if finish else [])


MESSAGE_START = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_s1",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
            },
        },
    },
)


def test_text_stream_produces_exactly_the_anthropic_events():
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo!"}),
        chunk({}, "stop"),
        usage_chunk(prompt=12, completion=3, cached=4),
    ]
    assert run(chunks) == [
        MESSAGE_START,
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hel"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "lo!"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {
                    "input_tokens": 8,
                    "output_tokens": 3,
                    "cache_read_input_tokens": 4,
                    "cache_creation_input_tokens": 0,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_usage_chunk_closes_the_message_and_finish_is_then_a_no_op():
    translator = AnthropicStreamTranslator(model=MODEL, message_id="msg_s1")
    translator.feed(chunk({"content": "Hi"}))
    assert [name for name, _ in translator.feed(chunk({}, "stop"))] == ["content_block_stop"]
    closing = translator.feed(usage_chunk(prompt=5, completion=1))
    assert [name for name, _ in closing] == ["message_delta", "message_stop"]
    assert translator.finish() == []
    assert translator.feed(chunk({"content": "late"})) == []


def test_finish_without_usage_closes_with_zero_output_tokens():
    events = run([chunk({"content": "cut"}), chunk({}, "length")])
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2][1]["usage"] == {"output_tokens": 0}


def test_finish_is_idempotent():
    translator = AnthropicStreamTranslator(model=MODEL, message_id="msg_s1")
    translator.feed(chunk({"content": "Hi"}))
    first = translator.finish()
    assert [name for name, _ in first][-2:] == ["message_delta", "message_stop"]
    assert translator.finish() == []
    assert translator.finish() == []


def test_empty_stream_still_produces_a_valid_message():
    names = [name for name, _ in run([])]
    assert names == ["message_start", "message_delta", "message_stop"]


def test_usage_in_the_first_chunk_fills_message_start():
    first = usage_chunk(prompt=9, completion=0)
    first["choices"] = [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]
    events = run([first])
    assert events[0][1]["message"]["usage"]["input_tokens"] == 9


TOOL_CHUNKS = [
    chunk({"role": "assistant", "content": None}),
    chunk({"content": "Checking both."}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Pa'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": '},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": '"UTC"}'}}]}),
    chunk({}, "tool_calls"),
    usage_chunk(prompt=40, completion=25),
]


def test_tool_call_stream_opens_one_block_per_call():
    events = run(TOOL_CHUNKS)
    starts = [data for name, data in events if name == "content_block_start"]
    assert starts == [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "call_a",
                "name": "get_weather",
                "input": {},
            },
        },
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}},
        },
    ]
    # Each block is stopped before the next one starts, as the real API does.
    sequence = [(name, data.get("index")) for name, data in events if "content_block" in name]
    assert sequence == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
    ]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"]["output_tokens"] == 25
    assert events[-1] == ("message_stop", {"type": "message_stop"})


def test_tool_call_partial_json_concatenates_to_the_arguments():
    events = run(TOOL_CHUNKS)
    partial: dict[int, str] = {}
    for name, data in events:
        if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            partial[data["index"]] = partial.get(data["index"], "") + data["delta"]["partial_json"]
    assert {index: json.loads(text) for index, text in partial.items()} == {
        1: {"city": "Paris"},
        2: {"tz": "UTC"},
    }


def test_late_fragment_of_a_closed_tool_call_is_dropped():
    # A closed Anthropic block cannot be reopened, so it must not start a nameless block.
    late = chunk({"tool_calls": [{"index": 0, "function": {"arguments": "junk"}}]})
    events = run([*TOOL_CHUNKS[:8], late, *TOOL_CHUNKS[8:]])
    assert events == run(TOOL_CHUNKS)


def test_stream_tool_call_without_id_gets_a_stable_one():
    call = {"index": 0, "function": {"name": "f", "arguments": "{}"}}
    first = run([chunk({"tool_calls": [call]})])
    second = run([chunk({"tool_calls": [call]})])
    block = first[1][1]["content_block"]
    assert block["id"].startswith("toolu_")
    assert block["id"] == second[1][1]["content_block"]["id"]


def test_error_event_shape_and_nothing_after_it():
    translator = AnthropicStreamTranslator(model=MODEL, message_id="msg_s1")
    translator.feed(chunk({"content": "partial"}))
    assert translator.error("overloaded_error", "Upstream overloaded") == [
        (
            "error",
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Upstream overloaded"},
            },
        )
    ]
    assert translator.finish() == []


# --------------------------------------------------------------------------- wire helpers


def test_sse_encode_format():
    data = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "é"}}
    assert sse_encode("content_block_delta", data) == (
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"\xc3\xa9"}}\n\n'
    )


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "api_error"),
        (529, "overloaded_error"),
        (422, "invalid_request_error"),
        (599, "api_error"),
    ],
)
def test_anthropic_error_body(status, error_type):
    assert anthropic_error_body(status, "boom") == {
        "type": "error",
        "error": {"type": error_type, "message": "boom"},
    }


def test_error_type_table_covers_the_gateway_statuses():
    assert set(ANTHROPIC_ERROR_TYPES) == {400, 401, 403, 404, 413, 429, 500, 502, 503, 504, 529}
