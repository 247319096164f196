"""The official Anthropic SDK against /v1/messages, with OpenAI and Anthropic upstreams."""

import anthropic
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def sdk(world):  # type: ignore[no-untyped-def]
    return anthropic.Anthropic(base_url=world.url, api_key=world.key, max_retries=0)


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        ("claude-haiku", {"provider": "anthropic", "litellm_model": "anthropic/claude-3-5-haiku"}),
        ("gpt-4o-mini", {}),
    ],
)
def test_messages_plain_and_streamed(world, model, fields) -> None:
    world.deploy(model, **fields)
    world.wait_for_model(model)
    client = sdk(world)
    message = client.messages.create(
        model=model,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Tell me about switchboards"}],
    )
    assert message.content[0].text.startswith("Fake reply to: Tell me about")
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0

    with client.messages.stream(
        model=model,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Tell me about switchboards"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == message.content[0].text
    assert final.usage.output_tokens == message.usage.output_tokens


def test_messages_tools_and_errors(world) -> None:
    world.deploy("gpt-4o-mini")
    world.wait_for_model("gpt-4o-mini")
    client = sdk(world)
    message = client.messages.create(
        model="gpt-4o-mini",
        max_tokens=64,
        tools=[{"name": "lookup", "description": "Look up", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "find the manual"}],
    )
    assert message.stop_reason == "tool_use"
    tool_use = message.content[-1]
    assert tool_use.name == "lookup"
    assert tool_use.input == {"query": "find the manual"}

    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(
            model="nope", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=world.url, api_key="bad", max_retries=0).messages.create(
            model="gpt-4o-mini", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
