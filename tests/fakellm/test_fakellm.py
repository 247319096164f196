"""Tests for the fake LLM upstream, run against the real HTTP server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from switchboard.fakellm import faults, replies
from switchboard.fakellm.testing import FakeLLM

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "test-key-123"
HELLO = [{"role": "user", "content": "Hello there, how are you doing today my friend?"}]
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "x"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture(scope="module")
def secured() -> Iterator[FakeLLM]:
    with FakeLLM(require_key=KEY) as server:
        yield server


@pytest.fixture
def http(fake: FakeLLM) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=5) as client:
        yield client


@pytest.fixture
def sdk(fake: FakeLLM) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url + "/v1", api_key="x", max_retries=0)


@pytest.fixture
def azure(fake: FakeLLM) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=fake.url, api_version="2024-06-01", api_key="x", max_retries=0
    )


def chat_body(model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": HELLO, **extra}


def sse_data(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def read_stream_lines(response: httpx.Response) -> tuple[list[str], bool]:
    """All lines received, and whether the body ended cleanly."""
    lines: list[str] = []
    try:
        lines.extend(response.iter_lines())
    except httpx.RemoteProtocolError:
        return lines, False
    return lines, True


def anthropic_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


# --------------------------------------------------------------------------- OpenAI


def test_chat_non_stream_parses_with_sdk(sdk: openai.OpenAI) -> None:
    messages: Any = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello there, world!"},
    ]
    result = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert result.id.startswith("chatcmpl-")
    assert result.object == "chat.completion"
    assert result.model == "gpt-4o-mini"
    choice = result.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    text = choice.message.content or ""
    assert text.startswith("Fake reply to: Hello there, world!")
    usage = result.usage
    assert usage is not None
    assert usage.completion_tokens == replies.DEFAULT_TOKENS == replies.count_tokens(text)
    # system "You are terse." = 4 tokens, user = 5 tokens; +4 per message, +2 per prompt.
    assert usage.prompt_tokens == (4 + 4) + (5 + 4) + 2
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0


def test_stream_with_usage_matches_non_stream(sdk: openai.OpenAI) -> None:
    plain = sdk.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=HELLO,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == plain.choices[0].message.content
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == ["stop"]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == len(pieces) == replies.DEFAULT_TOKENS
    assert plain.usage is not None
    assert usage_chunk.usage.prompt_tokens == plain.usage.prompt_tokens
    assert {c.id for c in chunks} == {chunks[0].id}


def test_stream_without_usage_ends_with_done(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=chat_body(stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    data = sse_data(response.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert all(chunk["choices"] for chunk in chunks)  # no usage chunk unless asked for
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_replies_are_deterministic(http: httpx.Client) -> None:
    def text(body: dict[str, Any]) -> str:
        content: str = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"][
            "content"
        ]
        return content

    first = text(chat_body())
    assert text(chat_body()) == first
    other_messages = chat_body(messages=[{"role": "user", "content": "Something else"}])
    assert text(other_messages) != first
    assert text(chat_body(model="gpt-4o")) != first  # filler depends on the model too


def test_max_tokens_cuts_with_finish_reason_length(http: httpx.Client) -> None:
    natural = http.post("/v1/chat/completions", json=chat_body()).json()
    cut = http.post("/v1/chat/completions", json=chat_body(max_tokens=5)).json()
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 5
    assert natural["choices"][0]["message"]["content"].startswith(
        cut["choices"][0]["message"]["content"]
    )
    newer = http.post("/v1/chat/completions", json=chat_body(max_completion_tokens=3)).json()
    assert newer["usage"]["completion_tokens"] == 3
    roomy = http.post("/v1/chat/completions", json=chat_body(max_tokens=500)).json()
    assert roomy["choices"][0]["finish_reason"] == "stop"
    assert roomy["usage"]["completion_tokens"] == replies.DEFAULT_TOKENS


def test_max_tokens_in_stream(http: httpx.Client) -> None:
    body = chat_body(max_tokens=4, stream=True, stream_options={"include_usage": True})
    chunks = [
        json.loads(d) for d in sse_data(http.post("/v1/chat/completions", json=body).text)[:-1]
    ]
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) == 4
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 4


def test_tokens_directive_sets_natural_length(http: httpx.Client) -> None:
    long = http.post("/v1/chat/completions", json=chat_body("gpt-4o-mini@tokens=40")).json()
    assert long["usage"]["completion_tokens"] == 40
    assert long["choices"][0]["finish_reason"] == "stop"
    assert long["model"] == "gpt-4o-mini@tokens=40"  # the full requested string is echoed
    capped = http.post(
        "/v1/chat/completions", json=chat_body("gpt-4o-mini@tokens=40", max_tokens=10)
    ).json()
    assert capped["usage"]["completion_tokens"] == 10
    assert capped["choices"][0]["finish_reason"] == "length"


def test_embeddings_shape_and_determinism(sdk: openai.OpenAI, http: httpx.Client) -> None:
    # The SDK asks for base64 by default, so this also checks that encoding.
    result = sdk.embeddings.create(model="text-embedding-3-small", input=["alpha beta", "gamma"])
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) == replies.DEFAULT_DIMENSIONS for item in result.data)
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens == 3
    raw = http.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "alpha beta"}
    ).json()
    assert raw["data"][0]["embedding"] == result.data[0].embedding
    sized = sdk.embeddings.create(model="e", input="alpha beta", dimensions=16)
    assert len(sized.data[0].embedding) == 16
    norm = sum(v * v for v in sized.data[0].embedding)
    assert norm == pytest.approx(1.0, abs=1e-5)
    tokens = http.post("/v1/embeddings", json={"model": "e", "input": [1, 2, 3]}).json()
    assert tokens["usage"]["prompt_tokens"] == 3


def test_models_list(sdk: openai.OpenAI) -> None:
    ids = [model.id for model in sdk.models.list()]
    assert "gpt-4o-mini" in ids


# --------------------------------------------------------------------------- Azure


def test_azure_chat_and_embeddings(azure: openai.AzureOpenAI, sdk: openai.OpenAI) -> None:
    result = azure.chat.completions.create(model="my-deployment", messages=HELLO)  # type: ignore[arg-type]
    assert result.model == "my-deployment"
    assert (result.choices[0].message.content or "").startswith("Fake reply to: Hello")
    stream = azure.chat.completions.create(
        model="my-deployment",
        messages=HELLO,  # type: ignore[arg-type]
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == result.choices[0].message.content
    vectors = azure.embeddings.create(model="embed-deployment", input="alpha beta")
    assert (
        vectors.data[0].embedding
        == sdk.embeddings.create(model="x", input="alpha beta").data[0].embedding
    )


def test_azure_requires_api_version(http: httpx.Client) -> None:
    response = http.post("/openai/deployments/d/chat/completions", json={"messages": HELLO})
    assert response.status_code == 400
    assert "api-version" in response.json()["error"]["message"]
    ok = http.post(
        "/openai/deployments/d/chat/completions?api-version=2024-06-01", json={"messages": HELLO}
    )
    assert ok.status_code == 200
    assert ok.json()["model"] == "d"  # no model in the body: the deployment is echoed


def test_azure_deployment_carries_directives(azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        azure.chat.completions.create(model="dep@status=503", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == 503


# --------------------------------------------------------------------------- Anthropic


def anthropic_body(**extra: Any) -> dict[str, Any]:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi, Claude"}]}],
    }
    return {**body, **extra}


def test_anthropic_non_stream(http: httpx.Client) -> None:
    response = http.post("/v1/messages", json=anthropic_body(), headers=ANTHROPIC_HEADERS)
    assert response.status_code == 200
    message = response.json()
    assert message["id"].startswith("msg_")
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["model"] == "claude-sonnet-4-5"
    assert message["stop_reason"] == "end_turn"
    assert message["stop_sequence"] is None
    text = message["content"][0]["text"]
    assert message["content"][0]["type"] == "text"
    assert text.startswith("Fake reply to: Hi, Claude")
    # system "Be brief." = 3 tokens, user "Hi, Claude" = 3 tokens.
    assert message["usage"] == {"input_tokens": (3 + 4) + (3 + 4) + 2, "output_tokens": 16}
    cut = http.post("/v1/messages", json=anthropic_body(max_tokens=3), headers=ANTHROPIC_HEADERS)
    assert cut.json()["stop_reason"] == "max_tokens"
    assert cut.json()["usage"]["output_tokens"] == 3


def test_anthropic_stream(http: httpx.Client) -> None:
    plain = http.post("/v1/messages", json=anthropic_body(), headers=ANTHROPIC_HEADERS).json()
    response = http.post(
        "/v1/messages",
        json=anthropic_body(stream=True, system="Be brief."),
        headers=ANTHROPIC_HEADERS,
    )
    events = anthropic_events(response.text)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    deltas = [data["delta"]["text"] for name, data in events if name == "content_block_delta"]
    # A string system prompt and a list-of-blocks one are the same prompt.
    assert "".join(deltas) == plain["content"][0]["text"]
    assert events[0][1]["message"]["usage"]["input_tokens"] == plain["usage"]["input_tokens"]
    message_delta = events[-2][1]
    assert message_delta["delta"]["stop_reason"] == "end_turn"
    assert message_delta["usage"]["output_tokens"] == len(deltas) == 16


def test_anthropic_requires_version_header(http: httpx.Client) -> None:
    response = http.post("/v1/messages", json=anthropic_body(), headers={"x-api-key": "x"})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in body["error"]["message"]


# --------------------------------------------------------------------------- faults


def test_status_429_with_retry_after(http: httpx.Client, sdk: openai.OpenAI) -> None:
    response = http.post("/v1/chat/completions", json=chat_body("m@status=429,retry_after=2"))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="m@status=429", messages=HELLO)  # type: ignore[arg-type]


def test_status_500_in_both_formats(http: httpx.Client) -> None:
    openai_style = http.post("/v1/chat/completions", json=chat_body("m@status=500"))
    assert openai_style.status_code == 500
    assert openai_style.json()["error"]["type"] == "server_error"
    anthropic_style = http.post(
        "/v1/messages", json=anthropic_body(model="c@status=529"), headers=ANTHROPIC_HEADERS
    )
    assert anthropic_style.status_code == 529
    assert anthropic_style.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "fake fault: status 529"},
    }


def test_fault_header_overrides_model(http: httpx.Client) -> None:
    both = http.post(
        "/v1/chat/completions",
        json=chat_body("m@status=500"),
        headers={"x-fake-fault": "status=429"},
    )
    assert both.status_code == 429
    header_only = http.post(
        "/v1/chat/completions", json=chat_body(), headers={"x-fake-fault": "status=418"}
    )
    assert header_only.status_code == 418


def test_fail_first_then_success(fake: FakeLLM, http: httpx.Client) -> None:
    model = "retry-me@status=503,fail_first=2"
    statuses = [
        http.post("/v1/chat/completions", json=chat_body(model)).status_code for _ in range(4)
    ]
    assert statuses == [503, 503, 200, 200]
    fake.reset()  # reset starts the count again
    assert http.post("/v1/chat/completions", json=chat_body(model)).status_code == 503


def test_fail_every_gives_a_steady_error_rate(fake: FakeLLM, http: httpx.Client) -> None:
    model = "flaky@status=500,fail_every=3"
    statuses = [
        http.post("/v1/chat/completions", json=chat_body(model)).status_code for _ in range(6)
    ]
    assert statuses == [200, 200, 500, 200, 200, 500]


def test_require_key(secured: FakeLLM) -> None:
    with httpx.Client(base_url=secured.url, timeout=5) as client:
        good = {"Authorization": f"Bearer {KEY}"}
        assert (
            client.post("/v1/chat/completions", json=chat_body(), headers=good).status_code == 200
        )
        wrong = client.post(
            "/v1/chat/completions", json=chat_body(), headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        assert client.get("/v1/models").status_code == 401
        azure_ok = client.post(
            "/openai/deployments/d/chat/completions?api-version=1",
            json={"messages": HELLO},
            headers={"api-key": KEY},
        )
        assert azure_ok.status_code == 200
        anthropic_wrong = client.post(
            "/v1/messages",
            json=anthropic_body(),
            headers={**ANTHROPIC_HEADERS, "x-api-key": "nope"},
        )
        assert anthropic_wrong.status_code == 401
        assert anthropic_wrong.json()["error"]["type"] == "authentication_error"
        anthropic_ok = client.post(
            "/v1/messages", json=anthropic_body(), headers={**ANTHROPIC_HEADERS, "x-api-key": KEY}
        )
        assert anthropic_ok.status_code == 200
    sdk = openai.OpenAI(base_url=secured.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]


def test_hang_times_out_and_server_keeps_serving(http: httpx.Client) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        http.post("/v1/chat/completions", json=chat_body("m@hang"), timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert http.get("/healthz").status_code == 200
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 200


def test_stop_releases_hanging_requests() -> None:
    outcome: list[object] = []
    server = FakeLLM().start()

    def hang() -> None:
        try:
            outcome.append(
                httpx.post(
                    server.url + "/v1/chat/completions", json=chat_body("m@hang"), timeout=10
                )
            )
        except httpx.HTTPError as error:
            outcome.append(error)

    thread = threading.Thread(target=hang)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    server.stop()
    thread.join(5)
    assert time.monotonic() - started < 3
    assert outcome, "the hanging request was not released"
    with pytest.raises(RuntimeError):
        _ = server.url


def test_truncate(http: httpx.Client) -> None:
    body = chat_body("m@truncate", stream=True, stream_options={"include_usage": True})
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        lines, clean = read_stream_lines(response)
    assert not clean  # the connection dropped mid-body
    data = [line[6:] for line in lines if line.startswith("data: ")]
    assert "[DONE]" not in data
    chunks = [json.loads(item) for item in data]
    assert not any(c["choices"] and c["choices"][0]["finish_reason"] for c in chunks)
    assert 0 < len(chunks) < replies.DEFAULT_TOKENS
    whole = http.post("/v1/chat/completions", json=chat_body("m@truncate"))
    assert whole.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(whole.text)
    anthropic = anthropic_body(model="c@truncate", stream=True)
    with http.stream("POST", "/v1/messages", json=anthropic, headers=ANTHROPIC_HEADERS) as response:
        lines, clean = read_stream_lines(response)
    assert not clean
    assert "event: content_block_delta" in lines
    assert "event: message_stop" not in lines


def test_malformed(http: httpx.Client) -> None:
    normal = sse_data(http.post("/v1/chat/completions", json=chat_body("m", stream=True)).text)
    broken = sse_data(
        http.post("/v1/chat/completions", json=chat_body("m@malformed", stream=True)).text
    )
    assert broken[-1] == "[DONE]"
    parsed, failures = [], 0
    for item in broken[:-1]:
        try:
            parsed.append(json.loads(item))
        except json.JSONDecodeError:
            failures += 1
    assert failures == 1
    assert len(parsed) == len(normal) - 1

    def text(chunks: list[dict[str, Any]]) -> str:
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)

    assert text(parsed) == text([json.loads(item) for item in normal[:-1]])
    whole = http.post("/v1/chat/completions", json=chat_body("m@malformed"))
    assert whole.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(whole.text)


def test_latency_and_chunk_delay(http: httpx.Client) -> None:
    started = time.monotonic()
    assert http.post("/v1/chat/completions", json=chat_body("m@latency=200")).status_code == 200
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    body = chat_body("m@chunk_delay=50,tokens=4", stream=True)
    data = sse_data(http.post("/v1/chat/completions", json=body).text)
    assert len(data) == 7  # role, 4 pieces, finish, [DONE]: 6 delays between them
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    ("directive", "needle"),
    [
        ("bogus=1", "unknown fault directive 'bogus'"),
        ("hang=yes", "takes no value"),
        ("status=abc", "needs an integer"),
        ("status=200", "between 400 and 599"),
        ("fail_first=2", "needs 'status=CODE'"),
        ("fail_every=2", "needs 'status=CODE'"),
        ("status=500,fail_every=0", "between 1 and"),
        ("status=500,fail_every=2,fail_first=1", "not both"),
        ("latency", "needs a value"),
    ],
)
def test_bad_directives_are_400(http: httpx.Client, directive: str, needle: str) -> None:
    response = http.post("/v1/chat/completions", json=chat_body(f"m@{directive}"))
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[1, 2]",
        b'{"model": "m"}',
        b'{"model": "m", "messages": "hi"}',
        b'{"model": "m", "messages": []}',
        b'{"model": "m", "messages": [{"content": "no role"}]}',
        b'{"model": "m", "messages": [{"role": "user", "content": 5}]}',
        b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}',
        b'{"messages": [{"role": "user", "content": "hi"}]}',
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "9"}',
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}',
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
        b"\xff\xfe",
    ],
)
def test_bad_chat_input_is_400(http: httpx.Client, content: bytes) -> None:
    response = http.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_bad_input_other_endpoints(http: httpx.Client) -> None:
    anthropic = http.post("/v1/messages", content=b"{oops", headers=ANTHROPIC_HEADERS)
    assert anthropic.status_code == 400
    assert anthropic.json()["type"] == "error"
    wrong_role = anthropic_body(messages=[{"role": "system", "content": "x"}])
    assert http.post("/v1/messages", json=wrong_role, headers=ANTHROPIC_HEADERS).status_code == 400
    for bad in ({"model": "e", "input": []}, {"model": "e", "input": 5}, {"input": "x"}):
        assert http.post("/v1/embeddings", json=bad).status_code == 400
    too_wide = {"model": "e", "input": "x", "dimensions": 10**6}
    assert http.post("/v1/embeddings", json=too_wide).status_code == 400


# --------------------------------------------------------------------------- stats and helper


def test_stats_and_reset(fake: FakeLLM, http: httpx.Client) -> None:
    assert http.post("/__fake__/reset").status_code == 200
    http.post("/v1/chat/completions", json=chat_body())
    http.post("/v1/chat/completions", json=chat_body("m@status=500"))
    secret = "sk-very-secret-value"
    http.post(
        "/v1/messages",
        json=anthropic_body(),
        headers={**ANTHROPIC_HEADERS, "x-api-key": secret},
    )
    stats = http.get("/__fake__/stats").json()
    assert stats == fake.stats()
    assert stats["requests"] == 3
    assert stats["by_path"] == {"/v1/chat/completions": 2, "/v1/messages": 1}
    assert stats["by_model"] == {"gpt-4o-mini": 1, "m@status=500": 1, "claude-sonnet-4-5": 1}
    assert stats["by_status"] == {"200": 2, "500": 1}
    headers = stats["last_headers"]
    assert "anthropic-version" in headers["names"]
    assert headers["x-api-key"] is True
    assert headers["authorization"] is False
    assert secret not in json.dumps(stats)
    fake.reset()
    assert fake.stats()["requests"] == 0
    assert fake.stats()["by_path"] == {}


def test_fakellm_start_stop_api() -> None:
    server = FakeLLM()
    with pytest.raises(RuntimeError):
        _ = server.url
    assert server.start() is server
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "/healthz").status_code == 200
        with pytest.raises(RuntimeError):
            server.start()
    finally:
        server.stop()
    server.stop()  # idempotent


# --------------------------------------------------------------------------- pure helpers


def test_token_rule() -> None:
    assert replies.count_tokens("Hello, world!") == 4
    assert replies.count_tokens("") == 0
    assert replies.prompt_tokens(["Hello, world!", "ok"]) == (4 + 4) + (1 + 4) + 2
    reply = replies.make_reply(["m", HELLO], "Don't panic", natural=30, limit=None)
    assert reply.text.startswith("Fake reply to: Don't panic")
    assert replies.count_tokens(reply.text) == reply.tokens == 30


def test_directive_parsing() -> None:
    assert faults.split_model("gpt@status=429,retry_after=2") == ("gpt", "status=429,retry_after=2")
    assert faults.resolve("", None) is faults.NO_FAULTS
    merged = faults.resolve("status=500,latency=10, hang,", "status=429")
    assert (merged.status, merged.latency, merged.hang) == (429, 10, True)
    with pytest.raises(faults.DirectiveError):
        faults.resolve("nope", None)


# --------------------------------------------------------------------------- the command


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_command_starts_and_stops(signum: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "switchboard.fakellm", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("fakellm listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1]
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
        process.send_signal(signum)
        assert process.wait(timeout=5) in (0, -signum)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
