"""A/B experiments through the management API and the in-process gateway (real fake upstream,
real Redis stream, real PostgreSQL): assignment, results, feedback, promotion."""

from decimal import Decimal
from typing import Any

import pytest

from analytics.models import UsageRecord
from analytics.usage import usage_stream_drain
from gateway.experiments.services import (
    experiment_create,
    experiment_promote,
    experiment_start,
    experiments_auto_promote,
)
from gateway.models import Experiment, ExperimentStatus
from gateway.runtime.snapshot import snapshot_holder
from gateway.services import deployment_create, routing_rule_create, task_profile_create
from tenants.audit import AuditContext
from tenants.services import api_key_create

CTX = AuditContext.system("test")
# The usage drain commits for real (it refuses to run inside a test's transaction).
DRAINS = pytest.mark.django_db(transaction=True)
EXPERIMENTS = "/api/v1/tenants/acme/experiments/"


@pytest.fixture
def lab(cast, fake_llm):  # type: ignore[no-untyped-def]
    def deploy(name: str, tenant: Any = cast.acme, **fields: Any) -> Any:
        base = {
            "name": name,
            "provider": "openai",
            "litellm_model": f"openai/{name}",
            "api_base": f"{fake_llm.url}/v1",
            "input_price_per_mtok": Decimal("1"),
            "output_price_per_mtok": Decimal("2"),
        }
        return deployment_create(context=CTX, tenant=tenant, fields={**base, **fields})

    deploy("model-a")
    deploy("model-b", input_price_per_mtok=Decimal("5"), output_price_per_mtok=Decimal("15"))
    deploy("globex-only", tenant=cast.globex)
    task_profile_create(context=CTX, tenant=cast.acme,
                        fields={"name": "chat", "candidates": [{"model": "model-a"}]})  # fmt: skip
    snapshot_holder.invalidate()
    return deploy


def _experiment(cast, **overrides: Any) -> Experiment:  # type: ignore[no-untyped-def]
    fields = {"name": "ab", "task_type": "chat", "primary_metric": "latency_mean",
              "min_samples": 5, **overrides}  # fmt: skip
    variants = overrides.pop("variants", None) or [
        {"key": "control", "model": "model-a", "weight": 1},
        {"key": "treatment", "model": "model-b", "weight": 1, "params": {"temperature": 0.1}},
    ]
    fields.pop("variants", None)
    experiment = experiment_create(context=CTX, tenant=cast.acme, fields=fields,
                                   variants=variants)  # fmt: skip
    return experiment


def _chat(client, key: str, user: str | None = None, **metadata: Any):  # type: ignore[no-untyped-def]
    body: dict[str, Any] = {
        "model": "model-a",
        "messages": [{"role": "user", "content": "hello"}],
        "metadata": {"task_type": "chat", **metadata},
    }
    if user:
        body["user"] = user
    return client.post("/v1/chat/completions", body, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {key}")  # fmt: skip


# --- management API ---------------------------------------------------------------------


def test_create_start_stop_promote_through_the_api(cast, lab) -> None:
    api = cast.client(cast.alice)
    created = api.post(EXPERIMENTS, {
        "name": "speed", "task_type": "chat", "primary_metric": "error_rate",
        "variants": [{"key": "a", "model": "model-a", "weight": 3},
                     {"key": "b", "model": "model-b", "weight": 1}],
    }, format="json")  # fmt: skip
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "draft"
    assert [v["key"] for v in body["variants"]] == ["a", "b"]
    url = f"{EXPERIMENTS}{body['id']}/"
    assert api.post(f"{url}stop/").status_code == 400  # a draft is not running
    started = api.post(f"{url}start/")
    assert started.status_code == 200
    assert started.json()["status"] == "running"
    assert started.json()["started_at"]
    frozen = api.patch(
        url,
        {"variants": [{"key": "a", "model": "model-a"}, {"key": "c", "model": "model-b"}]},
        format="json",
    )
    assert frozen.status_code == 400
    assert "cannot change" in frozen.content.decode()
    assert api.patch(url, {"min_samples": 50}, format="json").status_code == 200
    assert api.delete(url).status_code == 400  # running: stop first
    assert api.post(f"{url}promote/", {"variant": "zz"}, format="json").status_code == 400
    promoted = api.post(f"{url}promote/", {"variant": "b"}, format="json")
    assert promoted.status_code == 200
    assert promoted.json()["status"] == "completed"
    assert promoted.json()["winner"] == "b"
    assert promoted.json()["promoted_by"] == "manual"
    results = api.get(f"{url}results/")
    assert results.status_code == 200
    assert results.json()["promoted"] == "b"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"variants": [{"key": "a", "model": "model-a"}]}, "2 to 10 variants"),
        ({"variants": [{"key": "a", "model": "model-a"}, {"key": "a", "model": "model-b"}]},
         "unique"),
        ({"variants": [{"key": "a", "model": "model-a"}, {"key": "b", "model": "nope"}]},
         "No deployment named nope"),
        ({"variants": [{"key": "a", "model": "model-a"}, {"key": "b", "model": "globex-only"}]},
         "No deployment named globex-only"),
        ({"variants": [{"key": "a", "model": "model-a", "weight": 0},
                       {"key": "b", "model": "model-b", "weight": 0}]}, "positive weight"),
        ({"variants": [{"key": "a", "model": "model-a", "params": {"api_base": "http://x"}},
                       {"key": "b", "model": "model-b"}]}, "Overrides may set"),
        ({"variants": [{"key": "a", "model": "model-a", "params": {"temperature": 9}},
                       {"key": "b", "model": "model-b"}]}, "temperature"),
        ({"variants": [{"key": "Bad Key", "model": "model-a"}, {"key": "b", "model": "model-b"}]},
         "lowercase"),
        ({"task_type": ""}, "exactly one task type or one rule"),
        ({"confidence_level": 1.5}, "less than or equal to 0.999"),
        ({"min_samples": 1}, "greater than or equal to 2"),
        ({"primary_metric": "vibes"}, "not a valid choice"),
        ({"variants": None}, "variants"),
    ],
)  # fmt: skip
def test_invalid_experiments_are_400(cast, lab, payload, needle) -> None:
    valid = [{"key": "a", "model": "model-a"}, {"key": "b", "model": "model-b"}]
    body = {"name": "bad", "task_type": "chat", "variants": valid, **payload}
    if body["variants"] is None:
        del body["variants"]
    response = cast.client(cast.alice).post(EXPERIMENTS, body, format="json")
    assert response.status_code == 400, response.content
    assert needle in response.content.decode()


def test_another_tenants_rule_cannot_be_targeted(cast, lab) -> None:
    rule = routing_rule_create(context=CTX, tenant=cast.globex, fields={
        "name": "theirs", "condition": {"field": "task_type", "op": "eq", "value": "x"},
        "action": {"models": ["globex-only"]}})  # fmt: skip
    response = cast.client(cast.alice).post(EXPERIMENTS, {
        "name": "sneaky", "rule": rule.pk,
        "variants": [{"key": "a", "model": "model-a"}, {"key": "b", "model": "model-b"}],
    }, format="json")  # fmt: skip
    assert response.status_code == 400
    assert "No such routing rule" in response.content.decode()


def test_viewer_reads_but_cannot_start_and_globex_sees_nothing(cast, lab) -> None:
    experiment = _experiment(cast)
    bob = cast.client(cast.bob)
    assert bob.get(f"{EXPERIMENTS}{experiment.pk}/results/").status_code == 200
    assert bob.post(f"{EXPERIMENTS}{experiment.pk}/start/").status_code == 403
    charlie = cast.client(cast.charlie)
    assert charlie.get(f"{EXPERIMENTS}{experiment.pk}/").status_code == 404
    theirs = f"/api/v1/tenants/globex/experiments/{experiment.pk}/results/"
    assert charlie.get(theirs).status_code == 404


def test_two_running_experiments_cannot_split_the_same_traffic(cast, lab) -> None:
    experiment_start(context=CTX, experiment=_experiment(cast))
    second = _experiment(cast, name="again")
    with pytest.raises(Exception, match="already running"):
        experiment_start(context=CTX, experiment=second)


# --- routing ----------------------------------------------------------------------------


@DRAINS
def test_assignment_is_sticky_explained_and_tagged_in_usage(cast, lab, acme_key, client) -> None:
    experiment = _experiment(cast)
    experiment_start(context=CTX, experiment=experiment)
    snapshot_holder.invalidate()
    key = acme_key[1]
    seen: dict[str, set[str]] = {}
    for user in [f"user-{i}" for i in range(12)]:
        for _ in range(3):
            response = _chat(client, key, user)
            assert response.status_code == 200, response.content
            route = response["x-switchboard-route"]
            assert "experiment=ab:" in route
            seen.setdefault(user, set()).add(response["x-switchboard-model"])
        explained = client.post("/api/v1/route/explain", {
            "model": "model-a", "user": user, "task_type": "chat",
            "messages": [{"role": "user", "content": "hello"}],
        }, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")  # fmt: skip
        plan = explained.json()
        assert plan["route"]["experiment"] == "ab"
        assert {plan["candidates"][0]["model"]} == seen[user]  # explain == what the gateway did
    assert all(len(models) == 1 for models in seen.values())  # sticky per user
    assert {m for models in seen.values() for m in models} == {"model-a", "model-b"}
    usage_stream_drain()
    records = UsageRecord.objects.filter(experiment_id=experiment.pk)
    assert records.count() == 36
    by_variant = {r.variant for r in records}
    assert by_variant == {"control", "treatment"}
    for record in records:
        expected = "model-a" if record.variant == "control" else "model-b"
        assert seen[record.end_user] == {expected}


def test_variant_parameters_replace_the_clients(cast, lab, acme_key, client, fake_llm) -> None:
    experiment = _experiment(cast, variants=[
        {"key": "short", "model": "model-a", "weight": 1, "params": {"max_tokens": 3}},
        {"key": "none", "model": "model-b", "weight": 0},
    ])  # fmt: skip
    experiment_start(context=CTX, experiment=experiment)
    snapshot_holder.invalidate()
    response = _chat(client, acme_key[1], "someone")
    assert response.status_code == 200
    # The fake upstream honours max_tokens: three tokens of reply, whatever the client asked.
    assert response.json()["usage"]["completion_tokens"] <= 3


def test_without_a_user_each_request_is_assigned_on_its_own(cast, lab, acme_key, client) -> None:
    experiment_start(context=CTX, experiment=_experiment(cast))
    snapshot_holder.invalidate()
    models = {_chat(client, acme_key[1])["x-switchboard-model"] for _ in range(40)}
    assert models == {"model-a", "model-b"}


@DRAINS
def test_promotion_sends_everyone_to_the_winner_and_stops_tagging(
    cast, lab, acme_key, client
) -> None:
    experiment = _experiment(cast)
    experiment_start(context=CTX, experiment=experiment)
    experiment_promote(context=CTX, experiment=experiment, variant="treatment")
    snapshot_holder.invalidate()
    for i in range(10):
        response = _chat(client, acme_key[1], f"u{i}")
        assert response["x-switchboard-model"] == "model-b"
        assert "experiment=ab:treatment" in response["x-switchboard-route"]
    usage_stream_drain()
    assert not UsageRecord.objects.filter(experiment_id=experiment.pk).exists()


def test_stopped_experiment_routes_as_before(cast, lab, acme_key, client) -> None:
    from gateway.experiments.services import experiment_stop

    experiment = _experiment(cast)
    experiment_start(context=CTX, experiment=experiment)
    experiment_stop(context=CTX, experiment=experiment)
    snapshot_holder.invalidate()
    for i in range(10):
        response = _chat(client, acme_key[1], f"u{i}")
        assert response["x-switchboard-model"] == "model-a"  # the profile's only candidate
        assert "experiment" not in response["x-switchboard-route"]


def test_experiment_on_a_rule(cast, lab, acme_key, client) -> None:
    rule = routing_rule_create(context=CTX, tenant=cast.acme, fields={
        "name": "vip", "condition": {"field": "metadata.tier", "op": "eq", "value": "vip"},
        "action": {"models": ["model-a"]}})  # fmt: skip
    experiment = _experiment(cast, task_type="", rule=rule, variants=[
        {"key": "a", "model": "model-a", "weight": 0},
        {"key": "b", "model": "model-b", "weight": 1},
    ])  # fmt: skip
    experiment_start(context=CTX, experiment=experiment)
    snapshot_holder.invalidate()
    vip = _chat(client, acme_key[1], "x", tier="vip")
    assert vip["x-switchboard-model"] == "model-b"
    assert "rule=vip" in vip["x-switchboard-route"]
    assert _chat(client, acme_key[1], "x")["x-switchboard-model"] == "model-a"


# --- feedback and results ---------------------------------------------------------------


def _feedback(client, key: str, **body: Any):  # type: ignore[no-untyped-def]
    return client.post("/v1/feedback", body, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {key}")  # fmt: skip


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"request_id": "r1"}, "exactly one of 'score'"),
        ({"request_id": "r1", "score": 0.5, "thumbs": "up"}, "exactly one of 'score'"),
        ({"request_id": "r1", "score": 1.5}, "from 0 to 1"),
        ({"request_id": "r1", "score": True}, "from 0 to 1"),
        ({"request_id": "r1", "thumbs": "sideways"}, "'up' or 'down'"),
        ({"request_id": "", "score": 1}, "request_id"),
        ({"request_id": "x" * 65, "score": 1}, "request_id"),
        ({"request_id": "r1", "score": 1, "comment": "x" * 2001}, "comment"),
        ({"request_id": "r1", "score": 1, "api_base": "http://evil"}, "Unrecognized field"),
    ],
)
def test_bad_feedback_is_400(cast, acme_key, client, body, needle) -> None:
    response = _feedback(client, acme_key[1], **body)
    assert response.status_code == 400, response.content
    assert needle in response.json()["error"]["message"]


def test_feedback_needs_a_key(client, db) -> None:
    response = client.post("/v1/feedback", {"request_id": "r", "score": 1},
                           content_type="application/json")  # fmt: skip
    assert response.status_code == 401


@DRAINS
def test_results_count_feedback_of_the_tenants_own_calls_only(cast, lab, acme_key, client) -> None:
    experiment = _experiment(cast)
    experiment_start(context=CTX, experiment=experiment)
    snapshot_holder.invalidate()
    key = acme_key[1]
    _, globex_key = api_key_create(context=CTX, tenant=cast.globex, name="globex app")
    request_ids: dict[str, list[str]] = {"model-a": [], "model-b": []}
    for i in range(30):
        response = _chat(client, key, f"user-{i}")
        request_ids[response["x-switchboard-model"]].append(response["x-request-id"])
    for request_id in request_ids["model-a"]:
        assert _feedback(client, key, request_id=request_id, thumbs="up").status_code == 201
        # Globex scoring acme's calls must not count.
        assert _feedback(client, globex_key, request_id=request_id, score=0).status_code == 201
    for request_id in request_ids["model-b"]:
        _feedback(client, key, request_id=request_id, score=0.9)  # replaced just below
        assert _feedback(client, key, request_id=request_id, thumbs="down").status_code == 201
    usage_stream_drain()
    response = cast.client(cast.alice).get(f"{EXPERIMENTS}{experiment.pk}/results/")
    assert response.status_code == 200
    results = response.json()
    rows = {row["key"]: row for row in results["variants"]}
    assert rows["control"]["requests"] == len(request_ids["model-a"])
    assert rows["control"]["score"]["mean"] == 1.0
    assert rows["treatment"]["score"]["mean"] == 0.0
    assert rows["control"]["errors"] == 0
    assert rows["control"]["error_rate"] == 0.0
    assert rows["treatment"]["cost_usd"]["mean"] > rows["control"]["cost_usd"]["mean"]
    assert rows["control"]["latency_ms"]["p95"] >= rows["control"]["latency_ms"]["p50"] >= 0
    low, high = rows["control"]["error_rate_ci"]
    assert low == 0.0
    assert 0 < high < 0.5
    by_metric = {c["metric"]: c for c in results["comparisons"]}
    assert by_metric["cost_mean"]["significant"]
    assert by_metric["cost_mean"]["better"] == "control"
    assert by_metric["score_mean"]["significant"]
    assert by_metric["score_mean"]["better"] == "control"


@DRAINS
def test_auto_promotion_picks_the_significant_winner(cast, lab, acme_key, client) -> None:
    experiment = _experiment(cast, primary_metric="cost_mean", auto_promote=True, min_samples=5)
    experiment_start(context=CTX, experiment=experiment)
    assert experiments_auto_promote() == []  # no data yet: nothing to promote
    snapshot_holder.invalidate()
    for i in range(30):
        assert _chat(client, acme_key[1], f"user-{i}").status_code == 200
    usage_stream_drain()
    assert experiments_auto_promote() == [(experiment.pk, "control")]
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED
    assert experiment.promoted_by == "auto"
    snapshot_holder.invalidate()
    assert {_chat(client, acme_key[1], f"user-{i}")["x-switchboard-model"]
            for i in range(30)} == {"model-a"}  # fmt: skip


# --- task-type restrictions, personas and providers ------------------------------------------


def test_keys_limited_to_task_types(cast, lab, client) -> None:
    _, key = api_key_create(context=CTX, tenant=cast.acme, name="chat only",
                            allowed_task_types=["chat"])  # fmt: skip
    snapshot_holder.invalidate()
    assert _chat(client, key).status_code == 200
    other = _chat(client, key, task_type="code")
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "task_type_not_allowed"
    plain = client.post("/v1/chat/completions", {"model": "model-a", "messages": [
        {"role": "user", "content": "x"}]}, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}")  # fmt: skip
    assert plain.status_code == 403


def test_personas_and_providers(cast, lab, acme_key, client) -> None:
    experiment_start(context=CTX, experiment=_experiment(cast))
    snapshot_holder.invalidate()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {acme_key[1]}"}
    personas = client.get("/api/v1/personas", **auth)
    assert personas.status_code == 200
    (chat,) = personas.json()["data"]
    assert chat["name"] == "chat"
    assert chat["scope"] == "tenant"
    assert chat["candidates"][0]["model"] == "model-a"
    assert chat["candidates"][0]["context_window"] == 128_000
    assert chat["candidates"][0]["cost_tier"] == "standard"
    assert chat["experiment"]["variants"] == ["control", "treatment"]
    providers = client.get("/api/v1/providers", **auth)
    assert providers.status_code == 200
    (openai,) = providers.json()["data"]
    models = {d["model"]: d for d in openai["deployments"]}
    assert set(models) == {"model-a", "model-b"}  # never globex's
    assert models["model-b"]["cost_tier"] == "premium"
    assert models["model-a"]["input_price_per_mtok"] == "1"
    assert "api_base" not in models["model-a"]
    assert "api_key_env" not in models["model-a"]
    assert client.get("/api/v1/providers").status_code == 401
    assert client.post("/api/v1/personas", **auth).status_code == 405
