"""The native request shape and the in-process guarantees of the hot path."""

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_native_request_returns_content_model_cost_and_request_id(world) -> None:
    world.deploy("gpt-4o-mini")
    world.wait_for_model("gpt-4o-mini")
    with world.client() as client:
        response = client.post(
            "/api/v1/gateway/requests",
            json={
                "prompt": "Summarise the quarter",
                "model": "gpt-4o-mini",
                "task_type": "analysis",
                "user_id": "u-42",
                "user_tier": "premium",
                "metadata": {"ticket": "T-1"},
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["content"].startswith("Fake reply to: Summarise the quarter")
        assert body["model_used"] == "gpt-4o-mini"
        assert body["provider"] == "openai"
        assert float(body["cost_usd"]) > 0
        assert body["cached"] is False
        assert body["request_id"] == response.headers["x-request-id"]
        assert body["task_type"] == "analysis"

        for bad in ({}, {"prompt": "x"}, {"prompt": "x", "messages": [], "model": "m"},
                    {"prompt": "x", "model": "gpt-4o-mini", "colour": "blue"}):  # fmt: skip
            refused = client.post("/api/v1/gateway/requests", json=bad)
            assert refused.status_code == 400, bad
            assert refused.json()["error"]["message"]
