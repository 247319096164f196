"""Fixtures for budget tests: a deployment whose cost per call is exact (no input price,
fixed reply length) so that "headroom for exactly N calls" is exact too."""

from decimal import Decimal
from typing import Any

import pytest

from gateway.runtime.snapshot import snapshot_holder
from gateway.services import deployment_create
from tenants.audit import AuditContext

CTX = AuditContext.system("test")
# 10 output tokens at $1 per 1M: every call costs and reserves exactly $0.00001.
PER_CALL = Decimal("0.00001")


@pytest.fixture
def metered(cast, fake_llm) -> Any:  # type: ignore[no-untyped-def]
    deployment = deployment_create(context=CTX, tenant=cast.acme, fields={
        "name": "metered", "provider": "openai", "litellm_model": "openai/metered@tokens=10",
        "api_base": f"{fake_llm.url}/v1", "input_price_per_mtok": Decimal(0),
        "output_price_per_mtok": Decimal(1), "max_output_tokens": 10,
    })  # fmt: skip
    snapshot_holder.invalidate()
    return deployment


def chat(client, key: str, *, user: str | None = None, model: str = "metered", **extra: Any):  # type: ignore[no-untyped-def]
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}],
                            **extra}  # fmt: skip
    if user:
        body["user"] = user
    return client.post("/v1/chat/completions", body, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {key}")  # fmt: skip
