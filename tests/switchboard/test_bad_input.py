"""Bad input gets a 400 (or the right 4xx) with a clear message in one shape, never a 500."""

import pytest

BASE = "/api/v1/tenants/acme"


def _assert_error(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["message"]
    assert set(error) >= {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (f"{BASE}/teams/", "{not json"),
        (f"{BASE}/teams/", "[]"),
        (f"{BASE}/teams/", '"a string"'),
        (f"{BASE}/api-keys/", "null"),
        (f"{BASE}/members/", '{"user": ["alice"], "role": {}}'),
        ("/api/v1/management-tokens/", '{"name": 5, "expires_at": true}'),
        ("/api/v1/tenants/", '{"slug": "x"}'),
    ],
)
def test_malformed_bodies_are_400(cast, url, body) -> None:
    staff_or_owner = cast.alice
    if url == "/api/v1/tenants/":
        staff_or_owner.is_staff = True
        staff_or_owner.save()
    response = cast.client(staff_or_owner).post(url, body, content_type="application/json")
    _assert_error(response, 400)


def test_field_errors_name_the_field(cast) -> None:
    error = _assert_error(
        cast.client(cast.alice).post(f"{BASE}/teams/", {"slug": "Not A Slug", "name": "x"}), 400
    )
    assert error["param"] == "slug"
    assert error["message"].startswith("slug: ")
    assert "slug" in error["details"]


def test_duplicates_are_400_not_500(cast, acme_team) -> None:
    alice = cast.client(cast.alice)
    error = _assert_error(alice.post(f"{BASE}/teams/", {"slug": "research", "name": "R"}), 400)
    assert "already exists" in error["message"]
    assert alice.post(f"{BASE}/members/", {"user": "bob", "role": "viewer"}).status_code == 400
    unknown_user = alice.post(f"{BASE}/members/", {"user": "nobody", "role": "viewer"})
    assert _assert_error(unknown_user, 400)["param"] == "user"


@pytest.mark.parametrize(
    "url",
    [
        f"{BASE}/teams/abc/",
        f"{BASE}/teams/99999999999999999999999/",
        f"{BASE}/api-keys/-1/",
        "/api/v1/tenants/" + "x" * 300 + "/teams/",
        "/api/v1/tenants/%00/teams/",
        "/api/v1/nothing-here/",
        "/v1/nothing-here",
    ],
)
def test_bad_ids_and_unknown_paths_are_404_json(cast, url) -> None:
    _assert_error(cast.client(cast.alice).get(url), 404)


def test_wrong_method_is_405(cast, acme_team) -> None:
    _assert_error(cast.client(cast.alice).put(f"{BASE}/teams/{acme_team.pk}/", {}), 405)
    _assert_error(cast.client(cast.alice).post("/v1/models", {}), 405)


def test_pagination_is_bounded(cast) -> None:
    alice = cast.client(cast.alice)
    assert alice.get(f"{BASE}/members/?limit=100000").status_code == 200
    assert alice.get(f"{BASE}/members/?limit=abc&offset=-5").status_code == 200


def test_bad_filter_value_is_400(cast) -> None:
    _assert_error(cast.client(cast.alice).get(f"{BASE}/api-keys/?team=abc"), 400)


def test_bad_time_zone_is_400(cast) -> None:
    error = _assert_error(
        cast.client(cast.alice).patch(f"{BASE}/", {"time_zone": "Mars/Olympus"}, format="json"), 400
    )
    assert error["param"] == "time_zone"
