"""The official SDKs against a live Switchboard (granian) in front of the fake upstream."""

import json

import openai
import pytest

from analytics.models import UsageRecord
from analytics.usage import usage_stream_drain

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MESSAGES = [{"role": "user", "content": "Tell me about switchboards"}]


def sdk(world):  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=f"{world.url}/v1", api_key=world.key, max_retries=0)


def test_chat_plain_streamed_and_usage_recorded(world) -> None:
    world.deploy("gpt-4o-mini")
    world.wait_for_model("gpt-4o-mini")
    client = sdk(world)

    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    reply = raw.parse()
    assert reply.choices[0].message.content.startswith("Fake reply to: Tell me about")
    assert reply.model == "gpt-4o-mini"
    assert reply.usage.completion_tokens > 0
    assert raw.headers["x-switchboard-provider"] == "openai"
    assert raw.headers["x-switchboard-attempts"] == "1"
    assert float(raw.headers["x-switchboard-overhead-ms"]) >= 0
    cost = float(raw.headers["x-switchboard-cost-usd"])
    expected = (reply.usage.prompt_tokens * 0.15 + reply.usage.completion_tokens * 0.60) / 1e6
    assert cost == pytest.approx(expected, rel=1e-9)

    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    pieces, usage = [], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        pieces.extend(choice.delta.content or "" for choice in chunk.choices)
    assert "".join(pieces) == reply.choices[0].message.content
    assert usage is not None
    assert usage.completion_tokens == reply.usage.completion_tokens

    usage_stream_drain()
    records = UsageRecord.objects.filter(tenant=world.tenant).order_by("created_at")
    assert [r.stream for r in records] == [False, True]
    assert {r.status for r in records} == {"success"}
    assert records[0].request_id == raw.headers["x-request-id"]
    assert records[0].cost_usd == pytest.approx(records[1].cost_usd)


def test_stream_without_include_usage_sends_no_usage_chunk(world) -> None:
    world.deploy("gpt-4o-mini")
    world.wait_for_model("gpt-4o-mini")
    chunks = list(
        sdk(world).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )
    assert chunks
    assert all(chunk.usage is None for chunk in chunks)
    usage_stream_drain()
    assert UsageRecord.objects.get(tenant=world.tenant).completion_tokens > 0


def test_tools_round_trip(world) -> None:
    world.deploy("gpt-4o-mini")
    world.wait_for_model("gpt-4o-mini")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "search_docs",
                "description": "Search the docs",
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
            },
        }
    ]
    client = sdk(world)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools)
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "search_docs"
    assert json.loads(call.function.arguments) == {"query": "Tell me about switchboards"}

    followup = client.chat.completions.create(
        model="gpt-4o-mini",
        tools=tools,
        messages=[
            *MESSAGES,
            reply.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Switchboards route calls."},
        ],
    )
    assert followup.choices[0].message.content

    streamed = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=tools, stream=True
    )
    arguments = ""
    for chunk in streamed:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                arguments += delta.function.arguments or ""
    assert json.loads(arguments) == {"query": "Tell me about switchboards"}


def test_embeddings_and_model_listing(world) -> None:
    world.deploy("text-embedding-3-small", capabilities=["embeddings"])
    world.deploy("gpt-4o-mini")
    world.wait_for_model("gpt-4o-mini")
    client = sdk(world)
    result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 8
    assert {m.id for m in client.models.list()} == {"gpt-4o-mini", "text-embedding-3-small"}
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="gpt-4o-mini", input="no embeddings capability")


def test_azure_and_anthropic_deployments_behind_the_openai_api(world) -> None:
    world.deploy(
        "azure-gpt", provider="azure", litellm_model="azure/prod-gpt4o", api_version="2024-06-01"
    )
    world.deploy("claude-haiku", provider="anthropic", litellm_model="anthropic/claude-3-5-haiku")
    world.wait_for_model("claude-haiku")
    client = sdk(world)
    for model, provider in (("azure-gpt", "azure"), ("claude-haiku", "anthropic")):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
        reply = raw.parse()
        assert reply.choices[0].message.content.startswith("Fake reply to:")
        assert raw.headers["x-switchboard-provider"] == provider
        pieces = [
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
            if chunk.choices
        ]
        assert "".join(pieces) == reply.choices[0].message.content
    assert world.fake.stats()["by_path"].get("/v1/messages", 0) == 2


def test_litellm_path_matches_direct_path(world) -> None:
    world.deploy("direct", litellm_model="openai/gpt-4o-mini", execution_path="direct")
    world.deploy("via-litellm", litellm_model="openai/gpt-4o-mini", execution_path="litellm")
    world.wait_for_model("via-litellm")
    client = sdk(world)
    direct = client.chat.completions.create(model="direct", messages=MESSAGES)
    routed = client.chat.completions.create(model="via-litellm", messages=MESSAGES)
    assert direct.choices[0].message.content == routed.choices[0].message.content
    assert direct.usage.total_tokens == routed.usage.total_tokens


def test_errors_in_openai_shape(world) -> None:
    world.deploy("gpt-4o-mini")
    world.wait_for_model("gpt-4o-mini")
    client = sdk(world)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert "no-such-model" in str(missing.value)
    with pytest.raises(openai.BadRequestError) as forbidden:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_body={"api_base": "http://evil.test"}
        )
    assert "api_base" in str(forbidden.value)
    bad = openai.OpenAI(base_url=f"{world.url}/v1", api_key="sbk_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert world.fake.stats()["requests"] == 0
