"""The secret resolver with the env backend: cache, single-flight, stale-if-error, max age."""

import asyncio

import pytest
from django.test import override_settings

from keyvault.resolver import SecretRef, SecretResolver, SecretUnavailable

CANARY = "canary-9f3e1c-provider-key"


def env_ref(name: str, ref_id: int = 1, field: str = "") -> SecretRef:
    return SecretRef(
        id=ref_id, connection_id=1, connection_name="dev env", backend="env",
        settings_json="{}", secret_name=name, version="latest", field=field,
    )  # fmt: skip


def test_cached_until_ttl_then_refetched(monkeypatch) -> None:
    resolver = SecretResolver()
    monkeypatch.setenv("SB_TEST_KEY", CANARY)
    assert asyncio.run(resolver.get(env_ref("SB_TEST_KEY"))).reveal() == CANARY
    monkeypatch.setenv("SB_TEST_KEY", "rotated")
    assert asyncio.run(resolver.get(env_ref("SB_TEST_KEY"))).reveal() == CANARY  # cached
    assert (resolver.fetches, resolver.hits) == (1, 1)
    resolver.invalidate(env_ref("SB_TEST_KEY"))
    assert asyncio.run(resolver.get(env_ref("SB_TEST_KEY"))).reveal() == "rotated"
    assert resolver.fetches == 2


def test_concurrent_misses_share_one_fetch(monkeypatch) -> None:
    resolver = SecretResolver()
    monkeypatch.setenv("SB_TEST_KEY", CANARY)

    async def many() -> set[str]:
        values = await asyncio.gather(*(resolver.get(env_ref("SB_TEST_KEY")) for _ in range(25)))
        return {value.reveal() for value in values}

    assert asyncio.run(many()) == {CANARY}
    assert resolver.fetches == 1


def test_stale_value_served_until_max_age_then_503(monkeypatch) -> None:
    resolver = SecretResolver()
    monkeypatch.setenv("SB_TEST_KEY", CANARY)
    with override_settings(KEYVAULT_CACHE_TTL_S=0):
        asyncio.run(resolver.get(env_ref("SB_TEST_KEY")))
        monkeypatch.delenv("SB_TEST_KEY")  # the "vault" now fails
        with override_settings(KEYVAULT_MAX_STALE_S=3600):
            assert asyncio.run(resolver.get(env_ref("SB_TEST_KEY"))).reveal() == CANARY
        assert resolver.stale_served == 1
        resolver._cache[env_ref("SB_TEST_KEY")].fresh_until = 0  # the stale retry interval passed
        with override_settings(KEYVAULT_MAX_STALE_S=0), pytest.raises(SecretUnavailable) as refused:
            asyncio.run(resolver.get(env_ref("SB_TEST_KEY")))
    message = str(refused.value)
    assert "dev env" in message
    assert CANARY not in message
    assert "SB_TEST_KEY" not in message  # the vault is named, not the secret


def test_json_field_and_masked_repr(monkeypatch) -> None:
    resolver = SecretResolver()
    monkeypatch.setenv("SB_TEST_JSON", '{"api_key": "' + CANARY + '", "org": "x"}')
    secret = asyncio.run(resolver.get(env_ref("SB_TEST_JSON", ref_id=2, field="api_key")))
    assert secret.reveal() == CANARY
    assert CANARY not in repr(secret)
    assert CANARY not in str(secret)
    assert CANARY not in f"{secret}"


def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(monkeypatch) -> None:
    """One request timing out during a fetch must not fail the others waiting on it."""
    resolver = SecretResolver()
    monkeypatch.setenv("SB_TEST_KEY", CANARY)

    async def race() -> list[str]:
        async def impatient() -> str:
            try:
                # Expires before the fetch's worker thread can answer.
                async with asyncio.timeout(1e-6):
                    await resolver.get(env_ref("SB_TEST_KEY"))
            except TimeoutError:
                return "timeout"
            return "value"

        async def patient() -> str:
            return (await resolver.get(env_ref("SB_TEST_KEY"))).reveal()

        return list(await asyncio.gather(impatient(), patient()))

    assert asyncio.run(race()) == ["timeout", CANARY]
    assert resolver.fetches == 1


def test_cache_follows_the_reference_target(monkeypatch) -> None:
    resolver = SecretResolver()
    monkeypatch.setenv("SB_KEY_A", "value-a")
    monkeypatch.setenv("SB_KEY_B", "value-b")
    assert asyncio.run(resolver.get(env_ref("SB_KEY_A"))).reveal() == "value-a"
    # Same reference id, new target (another process edited it): no stale value.
    assert asyncio.run(resolver.get(env_ref("SB_KEY_B"))).reveal() == "value-b"
