"""The OpenAPI schema generates without a single warning, and is served to signed-in users."""

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_schema_generates_without_warnings(tmp_path) -> None:
    target = tmp_path / "schema.yaml"
    err = StringIO()
    call_command("spectacular", "--fail-on-warn", "--file", str(target), stderr=err)
    assert err.getvalue() == ""
    text = target.read_text()
    assert "/api/v1/tenants/{tenant}/api-keys/{id}/rotate/" in text


def test_schema_and_docs_need_a_login(cast, client) -> None:
    assert client.get("/api/schema/").status_code in (401, 403)
    alice = cast.client(cast.alice)
    assert alice.get("/api/schema/").status_code == 200
    docs = alice.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    assert b"cdn.jsdelivr" not in docs.content  # assets are served locally
