"""Console sign-in is throttled per username (and per address) across processes (Redis)."""

import pytest

from switchboard.redis_client import redis_sync
from tests.tenants.factories import UserFactory


@pytest.fixture(autouse=True)
def _clean() -> None:
    client = redis_sync()
    keys = list(client.scan_iter(match="sb:{login}:*"))
    if keys:
        client.delete(*keys)


def _login(client, username: str, password: str, address: str = "10.0.0.1"):  # type: ignore[no-untyped-def]
    return client.post("/console/login/", {"username": username, "password": password},
                       REMOTE_ADDR=address)  # fmt: skip


def test_five_failures_lock_the_username_even_with_the_right_password(client, db) -> None:
    user = UserFactory(username="dana")
    user.set_password("right")
    user.save()
    for _ in range(5):
        response = _login(client, "dana", "wrong")
        assert response.status_code == 200
        assert "didn't match" in response.content.decode()
    locked = _login(client, "dana", "right", address="10.0.0.2")  # another address too
    assert locked.status_code == 200
    assert "Too many failed sign-ins" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # Others are not affected.
    other = UserFactory(username="erin")
    other.set_password("pw")
    other.save()
    assert _login(client, "erin", "pw").status_code == 302


def test_a_success_clears_the_count(client, db) -> None:
    user = UserFactory(username="fay")
    user.set_password("right")
    user.save()
    for _ in range(4):
        _login(client, "fay", "wrong")
    assert _login(client, "fay", "right").status_code == 302
    client.logout()
    for _ in range(4):
        _login(client, "fay", "wrong")
    assert _login(client, "fay", "right").status_code == 302


def test_one_address_guessing_many_usernames_is_locked(client, db) -> None:
    for index in range(20):
        _login(client, f"nobody{index}", "guess", address="203.0.113.9")
    blocked = _login(client, "someone-else", "guess", address="203.0.113.9")
    assert "Too many failed sign-ins" in blocked.content.decode()
