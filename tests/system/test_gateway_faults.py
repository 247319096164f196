"""Retries, fallbacks, timeouts, breakers and broken streams, through the fake upstream."""

import asyncio
import time

import aiohttp
import openai
import pytest

from analytics.models import UsageRecord
from analytics.usage import usage_stream_drain

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BODY = {"model": "", "messages": [{"role": "user", "content": "hello there"}]}


def chat(world, model: str, **extra):  # type: ignore[no-untyped-def]
    with world.client() as client:
        return client.post("/v1/chat/completions", json={**BODY, "model": model, **extra})


def test_429_then_success_honours_retry_after(world) -> None:
    world.deploy("limited", litellm_model="openai/m@status=429,retry_after=1,fail_first=1")
    world.wait_for_model("limited")
    started = time.monotonic()
    response = chat(world, "limited")
    assert response.status_code == 200, response.text
    assert response.headers["x-switchboard-attempts"] == "2"
    assert time.monotonic() - started >= 1.0  # waited for Retry-After


def test_rate_limited_everywhere_is_429_with_retry_after(world) -> None:
    world.deploy("limited", litellm_model="openai/m@status=429,retry_after=1")
    world.wait_for_model("limited")
    response = chat(world, "limited")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_500_on_primary_falls_back(world) -> None:
    world.deploy("gpt-4o-mini")
    world.deploy("primary", litellm_model="openai/p@status=500", fallbacks=["gpt-4o-mini"])
    world.wait_for_model("primary")
    response = chat(world, "primary")
    assert response.status_code == 200, response.text
    assert response.headers["x-switchboard-model"] == "gpt-4o-mini"
    assert response.headers["x-switchboard-fallbacks"] == "1"
    assert response.headers["x-switchboard-attempts"] == "3"  # 2 on the primary, 1 on the fallback


def test_bad_request_from_provider_is_not_retried(world) -> None:
    world.deploy("gpt-4o-mini")
    world.deploy("picky", litellm_model="openai/p@status=400", fallbacks=["gpt-4o-mini"])
    world.wait_for_model("picky")
    response = chat(world, "picky")
    assert response.status_code == 400
    assert world.fake.stats()["by_model"] == {"p@status=400": 1}


def test_hang_times_out_then_falls_back(world) -> None:
    world.deploy("gpt-4o-mini")
    world.deploy("stuck", litellm_model="openai/s@hang", timeout_s=0.5, fallbacks=["gpt-4o-mini"])
    world.wait_for_model("stuck")
    started = time.monotonic()
    response = chat(world, "stuck")
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.headers["x-switchboard-model"] == "gpt-4o-mini"
    assert 0.5 <= elapsed < 5


def test_breaker_opens_skips_and_recovers(world) -> None:
    world.deploy("gpt-4o-mini")
    # Fails its first 4 requests (two calls with two attempts each), then recovers.
    world.deploy(
        "shaky", litellm_model="openai/b@status=503,fail_first=4", fallbacks=["gpt-4o-mini"]
    )
    world.wait_for_model("shaky")
    for _ in range(2):
        assert chat(world, "shaky").headers["x-switchboard-attempts"] == "3"
    # Open: the shaky deployment is skipped without a request.
    skipped = chat(world, "shaky")
    assert skipped.status_code == 200
    assert skipped.headers["x-switchboard-attempts"] == "1"
    assert skipped.headers["x-switchboard-model"] == "gpt-4o-mini"
    assert world.fake.stats()["by_model"]["b@status=503,fail_first=4"] == 4
    time.sleep(1.6)  # open_s in the test server
    recovered = chat(world, "shaky")
    assert recovered.headers["x-switchboard-model"] == "shaky"
    assert chat(world, "shaky").headers["x-switchboard-model"] == "shaky"


@pytest.mark.parametrize("fault", ["truncate", "malformed"])
def test_broken_stream_ends_with_an_error_event_and_is_billed(world, fault) -> None:
    # chunk_delay: the upstream streams over time, then breaks (a real crash mid-stream).
    world.deploy("broken", litellm_model=f"openai/x@{fault},tokens=40,chunk_delay=10")
    world.wait_for_model("broken")
    client = openai.OpenAI(base_url=f"{world.url}/v1", api_key=world.key, max_retries=0)
    received: list[str] = []

    def consume() -> None:
        stream = client.chat.completions.create(
            model="broken", messages=BODY["messages"], stream=True
        )
        for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)

    with pytest.raises(openai.APIError):
        consume()
    assert "".join(received)  # the first half arrived before the break
    time.sleep(0.2)
    usage_stream_drain()
    record = UsageRecord.objects.get(tenant=world.tenant)
    assert record.status == "provider_error"
    assert record.completion_tokens > 0


def test_client_disconnect_cancels_upstream_and_bills_partial(world) -> None:
    world.deploy("slow", litellm_model="openai/s@chunk_delay=100,tokens=60")
    world.wait_for_model("slow")
    with (
        world.client() as client,
        client.stream(
            "POST", "/v1/chat/completions", json={**BODY, "model": "slow", "stream": True}
        ) as response,
    ):
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
    # Closing the connection mid-stream must cancel the upstream read and bill what was sent.
    deadline = time.monotonic() + 5
    record = None
    while time.monotonic() < deadline and record is None:
        time.sleep(0.2)
        usage_stream_drain()
        record = UsageRecord.objects.filter(tenant=world.tenant).first()
    assert record is not None
    assert record.status == "cancelled"
    assert 0 < record.completion_tokens < 60
    assert record.cost_usd > 0


def test_500_concurrent_slow_calls_finish_in_about_one_latency(world) -> None:
    world.deploy("slow", litellm_model="openai/s@latency=300", timeout_s=30)
    world.wait_for_model("slow")

    async def burst() -> list[int]:
        # aiohttp as the client: httpx's pool costs O(connections) per request at this scale.
        headers = {"authorization": f"Bearer {world.key}"}
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
            body = {**BODY, "model": "slow"}

            async def one() -> int:
                async with session.post(f"{world.url}/v1/chat/completions", json=body) as r:
                    await r.read()
                    return r.status

            return await asyncio.gather(*(one() for _ in range(500)))

    started = time.monotonic()
    statuses = asyncio.run(burst())
    elapsed = time.monotonic() - started
    assert statuses == [200] * 500
    # Serially this would take 150 s; async end to end it is about one latency plus overhead.
    assert elapsed < 6.0, f"500 calls took {elapsed:.1f}s"
