"""An A/B experiment run end to end: the real gateway server, the fake upstream with two
variants that differ in latency and error rate, the usage drain, the results, and
auto-promotion switching the traffic to the winner."""

import time

import pytest

from analytics.usage import usage_stream_drain
from gateway.experiments.selectors import experiment_results
from gateway.experiments.services import (
    experiment_create,
    experiment_start,
    experiments_auto_promote,
)
from gateway.services import task_profile_create
from tenants.audit import AuditContext

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SYSTEM = AuditContext.system("test")
USERS = [f"user-{i}" for i in range(120)]


def ask(client, user: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/chat/completions", json={
        "model": "support", "user": user,
        "messages": [{"role": "user", "content": "Where is my order?"}],
    })  # fmt: skip


def test_experiment_finds_the_better_variant_and_promotes_it(world) -> None:
    world.deploy("fast-model", litellm_model="openai/fast@latency=5")
    # One upstream request in four fails with 503 (retried, so callers still get answers).
    world.deploy("slow-model", litellm_model="openai/slow@latency=80,status=503,fail_every=4")
    profile = {"name": "support", "candidates": [{"model": "fast-model"}]}
    task_profile_create(context=SYSTEM, tenant=world.tenant, fields=profile)
    experiment = experiment_create(
        context=SYSTEM, tenant=world.tenant,
        fields={"name": "support-speed", "task_type": "support", "primary_metric": "error_rate",
                "min_samples": 30, "confidence_level": 0.95, "auto_promote": True},
        variants=[{"key": "fast", "model": "fast-model", "weight": 1},
                  {"key": "slow", "model": "slow-model", "weight": 1}],
    )  # fmt: skip
    experiment_start(context=SYSTEM, experiment=experiment)
    world.wait_for_model("slow-model")

    served: dict[str, str] = {}
    with world.client() as client:
        time.sleep(1.1)  # the experiment reached every worker's snapshot (≤ 1 s)
        for user in USERS:
            response = ask(client, user)
            assert response.status_code == 200, response.text
            assert "experiment=support-speed:" in response.headers["x-switchboard-route"]
            served[user] = response.headers["x-switchboard-model"]
        # Sticky: the same users get the same variant again.
        for user in USERS[:20]:
            assert ask(client, user).headers["x-switchboard-model"] == served[user]
    assert set(served.values()) == {"fast-model", "slow-model"}

    usage_stream_drain()
    results = experiment_results(experiment)
    rows = {row["key"]: row for row in results["variants"]}
    assert rows["fast"]["requests"] + rows["slow"]["requests"] == len(USERS) + 20
    assert rows["fast"]["errors"] == 0
    assert rows["slow"]["error_rate"] > 0.1
    assert rows["slow"]["latency_ms"]["p50"] > rows["fast"]["latency_ms"]["p50"] + 50
    comparisons = {c["metric"]: c for c in results["comparisons"]}
    for metric in ("error_rate", "latency_mean"):
        assert comparisons[metric]["significant"], comparisons[metric]
        assert comparisons[metric]["better"] == "fast"
        assert comparisons[metric]["p_value"] < 0.05
    assert results["verdict"] == "significant"
    assert results["winner"] == "fast"

    assert experiments_auto_promote() == [(experiment.pk, "fast")]
    time.sleep(1.1)
    slow_users = [user for user, model in served.items() if model == "slow-model"]
    with world.client() as client:
        for user in slow_users[:20]:
            response = ask(client, user)
            assert response.status_code == 200
            assert response.headers["x-switchboard-model"] == "fast-model"
            assert "experiment=support-speed:fast" in response.headers["x-switchboard-route"]
