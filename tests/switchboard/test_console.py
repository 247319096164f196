"""The console answers: login page for anonymous users, the tenant list once signed in."""

from tests.tenants.factories import PASSWORD


def test_login_page_and_redirect(db, client) -> None:
    assert client.get("/").status_code == 302
    home = client.get("/console/")
    assert home.status_code == 302
    assert home["location"].startswith("/console/login/")
    login = client.get("/console/login/")
    assert login.status_code == 200
    assert b'name="password"' in login.content


def test_login_with_password_shows_own_tenants_only(cast, client) -> None:
    response = client.post("/console/login/", {"username": "charlie", "password": PASSWORD})
    assert response.status_code == 302
    page = client.get("/console/").content.decode()
    assert "globex" in page
    assert "acme" not in page


def test_wrong_password_is_refused(cast, client) -> None:
    response = client.post("/console/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"didn't match" in response.content
