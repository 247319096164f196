"""Routing rules and task profiles through the gateway (in process, real fake upstream)."""

from decimal import Decimal

import pytest

from gateway.runtime.snapshot import snapshot_holder
from gateway.services import deployment_create, routing_rule_create, task_profile_create
from tenants.audit import AuditContext

CTX = AuditContext.system("test")
RULES = "/api/v1/tenants/acme/routing-rules/"


@pytest.fixture
def fleet(cast, fake_llm):  # type: ignore[no-untyped-def]
    def deploy(name: str, **fields):  # type: ignore[no-untyped-def]
        base = {
            "name": name,
            "provider": "openai",
            "litellm_model": f"openai/{name}",
            "api_base": f"{fake_llm.url}/v1",
            "input_price_per_mtok": Decimal("1"),
            "output_price_per_mtok": Decimal("2"),
        }
        return deployment_create(context=CTX, tenant=cast.acme, fields={**base, **fields})

    deployments = {
        "small": deploy("small", context_window=8_000, max_output_tokens=1000),
        "long": deploy("long", context_window=400_000, max_output_tokens=1000),
        "coder": deploy("coder"),
        "pricey": deploy(
            "pricey", input_price_per_mtok=Decimal("10"), output_price_per_mtok=Decimal("30")
        ),
        "cheap": deploy(
            "cheap", input_price_per_mtok=Decimal("0.1"), output_price_per_mtok=Decimal("0.2")
        ),
    }
    task_profile_create(
        context=CTX,
        tenant=cast.acme,
        fields={"name": "code", "candidates": [{"model": "coder", "weight": 1}]},
    )
    task_profile_create(
        context=CTX,
        tenant=cast.acme,
        fields={
            "name": "economy",
            "strategy": "lowest_cost",
            "candidates": [{"model": "pricey", "weight": 1}, {"model": "cheap", "weight": 1}],
        },
    )
    routing_rule_create(
        context=CTX,
        tenant=cast.acme,
        fields={
            "name": "long-context",
            "priority": 10,
            "condition": {"field": "prompt_tokens", "op": "gt", "value": 32000},
            "action": {"models": ["long"]},
        },
    )
    routing_rule_create(
        context=CTX,
        tenant=cast.acme,
        fields={
            "name": "code",
            "priority": 20,
            "condition": {"field": "task_type", "op": "eq", "value": "code"},
            "action": {"task_profile": "code"},
        },
    )
    routing_rule_create(
        context=CTX,
        tenant=cast.acme,
        fields={
            "name": "economy",
            "priority": 30,
            "condition": {"field": "cost_tier", "op": "eq", "value": "economy"},
            "action": {"task_profile": "economy"},
        },
    )
    snapshot_holder.invalidate()
    return deployments


def _chat(client, key: str, **body):  # type: ignore[no-untyped-def]
    payload = {"model": "small", "messages": [{"role": "user", "content": "hello"}], **body}
    return client.post(
        "/v1/chat/completions",
        payload,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def _explain(client, key: str, **body):  # type: ignore[no-untyped-def]
    payload = {"model": "small", "messages": [{"role": "user", "content": "hello"}], **body}
    return client.post(
        "/api/v1/route/explain",
        payload,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


@pytest.mark.parametrize(
    ("body", "served", "rule"),
    [
        ({"messages": [{"role": "user", "content": "word " * 40_000}]}, "long", "long-context"),
        ({"metadata": {"task_type": "code"}}, "coder", "code"),
        ({"metadata": {"cost_tier": "economy"}}, "cheap", "economy"),
        ({}, "small", None),
    ],
)
def test_rules_route_and_explain_agrees(fleet, acme_key, client, body, served, rule) -> None:
    key = acme_key[1]
    explained = _explain(client, key, **body)
    assert explained.status_code == 200, explained.content
    plan = explained.json()
    assert plan["route"]["rule"] == rule
    response = _chat(client, key, **body)
    assert response.status_code == 200, response.content
    assert response["x-switchboard-model"] == served
    # Explain answered what the gateway then did.
    assert plan["candidates"][0]["deployment"] == int(response["x-switchboard-deployment"])
    if rule:
        assert f"rule={rule}" in response["x-switchboard-route"]


def test_task_type_header_and_profile_as_model(fleet, acme_key, client) -> None:
    key = acme_key[1]
    by_header = client.post(
        "/v1/chat/completions",
        {"model": "small", "messages": [{"role": "user", "content": "x"}]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
        HTTP_X_SWITCHBOARD_TASK_TYPE="code",
    )
    assert by_header["x-switchboard-model"] == "coder"
    as_model = _chat(client, key, model="economy")
    assert as_model.status_code == 200, as_model.content
    assert as_model["x-switchboard-model"] == "cheap"


def test_trace_says_why_candidates_were_dropped(fleet, acme_key, client) -> None:
    body = {"messages": [{"role": "user", "content": "word " * 40_000}], "model": "small"}
    # Force the plain route to the small model with a rule-free tenant view: explain the
    # long prompt against an explicit list including the small one.
    routing = client.post(
        "/api/v1/route/explain",
        {**body, "metadata": {}},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {acme_key[1]}",
    ).json()["route"]
    assert routing["rule"] == "long-context"
    assert all(c["kept"] for c in routing["candidates"])


def test_rule_validation(cast, fleet) -> None:
    alice = cast.client(cast.alice)
    bad_condition = alice.post(
        RULES,
        {
            "name": "x",
            "condition": {"field": "colour", "op": "eq", "value": "red"},
            "action": {"models": ["small"]},
        },
        format="json",
    )
    assert bad_condition.status_code == 400
    assert bad_condition.json()["error"]["param"] == "condition"
    missing_profile = alice.post(
        RULES, {"name": "x", "condition": True, "action": {"task_profile": "nope"}}, format="json"
    )
    assert missing_profile.status_code == 400
    assert missing_profile.json()["error"]["param"] == "action"
    assert cast.client(cast.charlie).get(RULES).status_code == 404
    listed = alice.get(RULES).json()
    assert [rule["name"] for rule in listed["results"]] == ["long-context", "code", "economy"]


def test_least_latency_learns_the_faster_deployment(cast, acme_key, client, fake_llm) -> None:
    common = {
        "provider": "openai",
        "api_base": f"{fake_llm.url}/v1",
        "input_price_per_mtok": Decimal("1"),
        "output_price_per_mtok": Decimal("1"),
    }
    deployment_create(
        context=CTX,
        tenant=cast.acme,
        fields={"name": "slowpoke", "litellm_model": "openai/s@latency=150", **common},
    )
    deployment_create(
        context=CTX,
        tenant=cast.acme,
        fields={"name": "quick", "litellm_model": "openai/q", **common},
    )
    task_profile_create(
        context=CTX,
        tenant=cast.acme,
        fields={
            "name": "fastest",
            "strategy": "least_latency",
            "candidates": [{"model": "slowpoke", "weight": 1}, {"model": "quick", "weight": 1}],
        },
    )
    snapshot_holder.invalidate()
    served = [_chat(client, acme_key[1], model="fastest")["x-switchboard-model"] for _ in range(5)]
    # Listed first, the slow one is tried first; the unmeasured one is tried next; from then
    # on the measured latencies decide.
    assert served[:2] == ["slowpoke", "quick"]
    assert served[2:] == ["quick", "quick", "quick"]


def test_rules_do_not_capture_embeddings(cast, acme_key, client, fake_llm) -> None:
    deployment_create(
        context=CTX,
        tenant=cast.acme,
        fields={
            "name": "embedder",
            "provider": "openai",
            "litellm_model": "openai/text-embedding-3-small",
            "api_base": f"{fake_llm.url}/v1",
            "capabilities": ["embeddings"],
        },
    )
    deployment_create(
        context=CTX,
        tenant=cast.acme,
        fields={
            "name": "chatty",
            "provider": "openai",
            "litellm_model": "openai/gpt-4o-mini",
            "api_base": f"{fake_llm.url}/v1",
        },
    )
    routing_rule_create(
        context=CTX,
        tenant=cast.acme,
        fields={
            "name": "everything",
            "priority": 1,
            "condition": True,
            "action": {"models": ["chatty"]},
        },
    )
    snapshot_holder.invalidate()
    response = client.post(
        "/v1/embeddings",
        {"model": "embedder", "input": "hi"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {acme_key[1]}",
    )
    assert response.status_code == 200, response.content
    assert response["x-switchboard-model"] == "embedder"


def test_open_breakers_are_dropped_by_routing_then_503(fleet, acme_key, client) -> None:
    """Once this process learns a breaker is open, routing drops that deployment (explain
    says why) instead of handing it to the executor; with no alternative: 503 + Retry-After."""
    from asgiref.sync import async_to_sync

    from gateway.runtime.executor import breaker, open_breakers

    small = fleet["small"]
    key = acme_key[1]
    async_to_sync(breaker.reset)(small.pk)
    for _ in range(10):
        async_to_sync(breaker.record)(small.pk, success=False, probe=False)
    try:
        first = _chat(client, key)  # the executor's admission sees the open breaker
        assert first.status_code == 503
        explained = _explain(client, key)
        assert explained.status_code == 503
        assert explained.json()["error"]["code"] == "deployments_unavailable"
        assert explained["retry-after"] == "1"
        second = _chat(client, key)
        assert second.status_code == 503
        assert second.json()["error"]["code"] == "deployments_unavailable"
        assert second["retry-after"] == "1"
    finally:
        async_to_sync(breaker.reset)(small.pk)
        open_breakers.note(small.pk, open_=False)
