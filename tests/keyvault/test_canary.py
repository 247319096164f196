"""A known provider key goes through every path that exists; it must appear nowhere."""

import asyncio
import json
import logging

import pytest
from django.core import mail
from django.test import AsyncClient

from analytics.models import UsageRecord
from analytics.usage import usage_stream_drain
from gateway.runtime.snapshot import snapshot_holder
from gateway.services import deployment_create
from keyvault.resolver import secret_resolver
from keyvault.services import secret_reference_create, vault_connection_create
from switchboard.fakellm.testing import FakeLLM
from switchboard.redis_client import redis_sync
from tenants.audit import AuditContext
from tenants.models import AuditEvent

CANARY = "sk-canary-5d2f8a61-never-print-me"
CTX = AuditContext.system("canary")
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.django_db(transaction=True)
def test_the_provider_key_never_leaks(cast, client, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SB_CANARY_KEY", CANARY)
    responses = []
    with FakeLLM(require_key=CANARY) as fake:
        connection = vault_connection_create(context=CTX, tenant=cast.acme,
                                             fields={"name": "dev", "backend": "env"})  # fmt: skip
        reference = secret_reference_create(context=CTX, tenant=cast.acme, fields={
            "name": "canary", "connection": connection,
            "secret_name": "SB_CANARY_KEY"})  # fmt: skip
        for name, model in (("ok", "gpt-4o-mini"), ("broken", "gpt-4o-mini@status=500")):
            deployment_create(context=CTX, tenant=cast.acme, fields={
                "name": name, "provider": "openai", "litellm_model": f"openai/{model}",
                "api_base": f"{fake.url}/v1", "secret_reference": reference,
                "input_price_per_mtok": "0.15", "output_price_per_mtok": "0.6"})  # fmt: skip
        from tenants.services import api_key_create

        _, key = api_key_create(context=CTX, tenant=cast.acme, name="canary")
        secret_resolver.clear()
        snapshot_holder.invalidate()
        auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}

        def call(model: str) -> None:
            response = client.post("/v1/chat/completions", {**BODY, "model": model},
                                   content_type="application/json", **auth)  # fmt: skip
            responses.append((response.status_code, dict(response.items()), response.content))

        async def stream_call() -> None:
            # One event loop for the whole stream (the upstream connection belongs to it).
            response = await AsyncClient().post(
                "/v1/chat/completions", {**BODY, "model": "ok", "stream": True},
                content_type="application/json", headers={"authorization": f"Bearer {key}"},
            )  # fmt: skip
            content = b"".join([part async for part in response.streaming_content])
            responses.append((response.status_code, dict(response.items()), content))

        call("ok")  # success
        asyncio.run(stream_call())  # success, streamed
        call("broken")  # provider error
        fake.require("another-key")
        call("ok")  # provider refuses the key: refetch + retry, then error
        monkeypatch.delenv("SB_CANARY_KEY")
        secret_resolver.clear()
        call("ok")  # vault error
        alice = cast.client(cast.alice)
        test_action = alice.post(f"/api/v1/tenants/acme/secret-references/{reference.pk}/test/")
        responses.append((test_action.status_code, dict(test_action.items()), test_action.content))
        listing = alice.get("/api/v1/tenants/acme/secret-references/")
        responses.append((listing.status_code, dict(listing.items()), listing.content))

    assert [status for status, _, _ in responses[:5]] == [200, 200, 502, 502, 503]
    usage_stream_drain()
    haystacks = {
        "logs": caplog.text,
        "responses": repr(responses),
        "usage rows": json.dumps(list(UsageRecord.objects.values()), default=str),
        "audit rows": json.dumps(list(AuditEvent.objects.values()), default=str),
        "emails": repr([m.message().as_string() for m in mail.outbox]),
        "redis usage streams": repr(
            [redis_sync().xrange(k) for k in redis_sync().scan_iter(match="sb:{t:*}:usage*")]
        ),
    }
    request_ids = {headers["x-request-id"] for _, headers, _ in responses[:5]}
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) >= request_ids
    for where, text in haystacks.items():
        assert CANARY not in text, f"the provider key leaked into {where}"
        assert CANARY[:20] not in text, f"part of the provider key leaked into {where}"
