"""The Azure Key Vault backend with the real SDK (azure-keyvault-secrets, azure-identity, MSAL)
against the local HTTPS stand-in: bearer challenge, token endpoint and secrets REST included."""

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets._shared.http_challenge import HttpChallenge

from keyvault.backends.azure import (
    CHECK_SECRET_NAME,
    RETRY_TOTAL,
    AzureKeyVaultBackend,
    validate_settings,
)
from keyvault.backends.base import FetchErrorKind, SecretFetchError
from tests.keyvault.azure_standin import AzureStandin
from tests.keyvault.fixtures_azure import azure_vault  # noqa: F401 - a fixture

CANARY = "sk-canary-7f3e9b1c0d"


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail a test if the SDK tries to resolve any host but loopback (login.microsoftonline.com,
    IMDS at 169.254.169.254, a real vault)."""
    resolve = socket.getaddrinfo
    refused: list[str] = []

    def loopback_only(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host not in ("127.0.0.1", "localhost", "::1"):
            refused.append(str(host))
            raise OSError(f"test network guard: {host} is not loopback")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield refused
    assert not refused


@pytest.fixture
def vault(azure_vault: AzureStandin) -> Iterator[AzureStandin]:  # noqa: F811
    """The session's stand-in; faults a test left behind do not reach the next one."""
    yield azure_vault
    azure_vault.clear_faults()


@pytest.fixture
def backend(vault: AzureStandin) -> Iterator[AzureKeyVaultBackend]:
    instance = AzureKeyVaultBackend(vault.connection_settings)
    yield instance
    instance.close()


def fetch(backend: AzureKeyVaultBackend, name: str, version: str | None = None,
          field: str | None = None) -> str:  # fmt: skip
    return backend.fetch(name=name, version=version, field=field).reveal()


def fetch_error(backend: AzureKeyVaultBackend, name: str, version: str | None = None,
                field: str | None = None) -> SecretFetchError:  # fmt: skip
    with pytest.raises(SecretFetchError) as caught:
        backend.fetch(name=name, version=version, field=field)
    return caught.value


def raw_get(standin: AzureStandin, path: str, token: str | None = None) -> tuple[int, dict]:
    """A plain HTTPS request to the stand-in, outside the SDK."""
    context = ssl.create_default_context(cafile=standin.ca_file)
    request = urllib.request.Request(standin.url + path)  # noqa: S310 - https only
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as response:  # noqa: S310
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- reading secrets --------------------------------------------------------------------------


def test_latest_and_pinned_versions(vault: AzureStandin, backend: AzureKeyVaultBackend):
    first = vault.set_secret("pinned", "value-one")
    second = vault.set_secret("pinned", "value-two")
    assert first != second
    assert fetch(backend, "pinned") == "value-two"
    assert fetch(backend, "pinned", "latest") == "value-two"
    assert fetch(backend, "pinned", first) == "value-one"
    assert fetch(backend, "pinned", second) == "value-two"


def test_rotation_is_seen_on_the_next_fetch(vault: AzureStandin, backend):
    vault.set_secret("rotating", "before")
    assert fetch(backend, "rotating") == "before"
    vault.set_secret("rotating", "after")
    assert fetch(backend, "rotating") == "after"
    assert vault.requests.secret_gets["rotating"] == 2  # the backend itself caches nothing


def test_json_field(vault: AzureStandin, backend):
    vault.set_secret("structured", json.dumps({"api_key": "k-1", "org": "o-1"}))
    vault.set_secret("single", json.dumps({"api_key": "k-2"}))
    assert fetch(backend, "structured", field="api_key") == "k-1"
    assert fetch(backend, "single") == '{"api_key": "k-2"}'  # no field: the plain string
    assert fetch_error(backend, "structured", field="missing").kind is FetchErrorKind.NOT_FOUND
    vault.set_secret("plain", "not json")
    assert fetch_error(backend, "plain", field="api_key").kind is FetchErrorKind.INVALID


def test_not_found(vault: AzureStandin, backend):
    error = fetch_error(backend, "never-set")
    assert error.kind is FetchErrorKind.NOT_FOUND
    assert "never-set" in error.message
    assert vault.vault_url in error.message
    vault.set_secret("has-versions", "x")
    assert fetch_error(backend, "has-versions", "0" * 32).kind is FetchErrorKind.NOT_FOUND
    assert vault.requests.secret_gets["never-set"] == 1  # a 404 is not retried


@pytest.mark.parametrize(
    ("name", "version"), [("bad/name", None), ("a" * 128, None), ("ok", "../x"), ("", None)]
)
def test_invalid_reference_is_refused_before_any_request(vault, backend, name, version):
    before = len(vault.log)
    assert fetch_error(backend, name, version).kind is FetchErrorKind.INVALID
    assert len(vault.log) == before


# -- errors and retries -----------------------------------------------------------------------


def test_forbidden_is_auth_and_not_retried(vault: AzureStandin, backend):
    vault.set_secret("forbidden", "x")
    vault.fail_next(403, name="forbidden")
    error = fetch_error(backend, "forbidden")
    assert error.kind is FetchErrorKind.AUTH
    assert "403" in error.message
    assert vault.requests.secret_gets["forbidden"] == 1


def test_throttled_once_then_success_honours_retry_after(vault: AzureStandin, backend):
    vault.set_secret("busy", "value")
    vault.fail_next(429, retry_after=1, name="busy")
    assert fetch(backend, "busy") == "value"
    first, second = vault.times_of("GET", "/secrets/busy/")
    assert second - first >= 0.9  # the SDK waited as told
    assert vault.requests.secret_gets["busy"] == 2


def test_persistent_throttling_is_throttled(vault: AzureStandin, backend):
    vault.set_secret("hot", "value")
    vault.fail_next(429, retry_after=0.2, count=10, name="hot")
    error = fetch_error(backend, "hot")
    assert error.kind is FetchErrorKind.THROTTLED
    assert "429" in error.message
    assert vault.requests.secret_gets["hot"] == RETRY_TOTAL + 1


def test_long_retry_after_is_reported_at_once(vault: AzureStandin, backend):
    vault.set_secret("very-hot", "value")
    vault.fail_next(429, retry_after=120, count=10, name="very-hot")
    started = time.monotonic()
    assert fetch_error(backend, "very-hot").kind is FetchErrorKind.THROTTLED
    assert time.monotonic() - started < 3
    assert vault.requests.secret_gets["very-hot"] == 1


def test_server_errors(vault: AzureStandin, backend):
    vault.set_secret("flaky", "value")
    vault.fail_next(500, name="flaky")
    assert fetch(backend, "flaky") == "value"  # one 500 is retried by the SDK
    vault.fail_next(503, count=10, name="flaky")
    error = fetch_error(backend, "flaky")
    assert error.kind is FetchErrorKind.UNAVAILABLE
    assert "503" in error.message
    assert vault.requests.secret_gets["flaky"] == 2 + RETRY_TOTAL + 1


def test_unreachable_vault_is_unavailable(vault: AzureStandin):
    backend = AzureKeyVaultBackend(
        {"vault_url": f"https://127.0.0.1:{closed_port()}", "timeout_s": 1,
         "disable_instance_discovery": True}
    )  # fmt: skip
    error = fetch_error(backend, "anything")
    assert error.kind is FetchErrorKind.UNAVAILABLE
    with pytest.raises(SecretFetchError) as caught:
        backend.check()
    assert caught.value.kind is FetchErrorKind.UNAVAILABLE
    backend.close()


# -- the identity side ------------------------------------------------------------------------


def test_vault_requires_a_bearer_token_it_issued(vault: AzureStandin):
    status, headers = raw_get(vault, "/secrets/x?api-version=7.6")
    assert status == 401
    challenge = HttpChallenge(vault.url + "/secrets/x", headers["WWW-Authenticate"])
    assert challenge.tenant_id == vault.tenant_id
    assert challenge.get_authorization_server() == f"{vault.url}/{vault.tenant_id}"
    assert raw_get(vault, "/secrets/x?api-version=7.6", token="forged")[0] == 401


def test_challenge_and_token_flow(vault: AzureStandin):
    vault.set_secret("flow", "value")
    tokens_before = vault.requests.tokens_issued
    backend = AzureKeyVaultBackend(vault.connection_settings)  # a new credential
    assert fetch(backend, "flow") == "value"
    assert fetch(backend, "flow") == "value"
    backend.close()
    assert vault.requests.tokens_issued == tokens_before + 1  # then cached by MSAL
    assert vault.requests.openid_configs >= 1  # MSAL discovered the tenant here
    # The SDK's first request to this vault (in this process) went without a token.
    assert vault.requests.challenges >= 1


def test_challenge_for_a_foreign_resource_is_refused(vault: AzureStandin):
    # Reached as "localhost", the stand-in names https://vault.azure.net, which is not a parent
    # domain of the vault host: the SDK must refuse before any token is requested or sent.
    tokens = vault.requests.token_requests
    backend = AzureKeyVaultBackend(
        {"vault_url": f"https://localhost:{vault.port}", "disable_instance_discovery": True}
    )
    assert fetch_error(backend, "anything").kind is FetchErrorKind.INVALID
    backend.close()
    assert vault.requests.token_requests == tokens


def test_revoked_token_is_auth(vault: AzureStandin):
    vault.set_secret("revoked", "value")
    backend = AzureKeyVaultBackend(vault.connection_settings)
    assert fetch(backend, "revoked") == "value"
    vault.revoke_tokens()
    error = fetch_error(backend, "revoked")
    assert error.kind is FetchErrorKind.AUTH
    assert "401" in error.message
    assert not any(token in repr(error) for token in vault.issued_tokens)
    backend.close()
    fresh = AzureKeyVaultBackend(vault.connection_settings)
    assert fetch(fresh, "revoked") == "value"  # a new credential gets a new token
    fresh.close()


def test_wrong_client_secret_is_auth(vault: AzureStandin, monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "wrong-" + CANARY)
    token_requests = vault.requests.token_requests
    backend = AzureKeyVaultBackend(vault.connection_settings)
    error = fetch_error(backend, "anything")
    assert error.kind is FetchErrorKind.AUTH
    assert vault.requests.token_requests > token_requests
    assert CANARY not in "".join(traceback.format_exception(error))
    backend.close()


# -- check() ----------------------------------------------------------------------------------


def test_check(vault: AzureStandin, backend):
    backend.check()  # the probe name is missing: a 404 proves access
    assert vault.requests.secret_gets[CHECK_SECRET_NAME] >= 1
    vault.fail_next(403, name=CHECK_SECRET_NAME)
    with pytest.raises(SecretFetchError) as caught:
        backend.check()
    assert caught.value.kind is FetchErrorKind.AUTH


# -- secrets never leak -----------------------------------------------------------------------


def test_value_never_in_reprs_or_errors(vault: AzureStandin, backend):
    vault.set_secret("canary", CANARY)
    secret = backend.fetch(name="canary", version=None, field=None)
    assert secret.reveal() == CANARY
    assert CANARY not in repr(secret)
    assert CANARY not in str(secret)
    assert CANARY not in repr(backend)
    errors = []
    for status in (403, 429, 500):
        vault.fail_next(status, retry_after=120 if status == 429 else None, count=10,
                              name="canary")  # fmt: skip
        errors.append(fetch_error(backend, "canary"))
        vault.clear_faults()
    errors.append(fetch_error(backend, "canary", field="api_key"))  # not JSON
    vault.set_secret("canary-json", json.dumps({"api_key": CANARY, "org": CANARY}))
    errors.append(fetch_error(backend, "canary-json", field="missing"))
    for error in errors:
        text = "".join(traceback.format_exception(error)) + repr(error) + repr(error.__context__)
        assert CANARY not in text
        assert vault.client_secret not in text


# -- the stand-in itself, through the SDK's own client ----------------------------------------


def test_standin_lists_secrets_with_paging(vault: AzureStandin):
    for index in range(3):
        vault.set_secret(f"listed-{index}", "x")
    credential = DefaultAzureCredential(disable_instance_discovery=True)
    with SecretClient(vault.vault_url, credential) as client:
        names = {item.name for item in client.list_properties_of_secrets(max_page_size=2)}
    credential.close()
    assert {"listed-0", "listed-1", "listed-2"} <= names


# -- settings ---------------------------------------------------------------------------------


def test_validate_settings_defaults():
    assert validate_settings({"vault_url": "https://myvault.vault.azure.net/"}) == {
        "vault_url": "https://myvault.vault.azure.net",
        "timeout_s": 5.0,
    }
    client_id = "0b6c5a43-3e1a-4a8c-9c8f-1c2d3e4f5a6b"
    assert validate_settings(
        {"vault_url": "https://127.0.0.1:8443", "timeout_s": 2, "disable_instance_discovery": True,
         "managed_identity_client_id": client_id}
    ) == {
        "vault_url": "https://127.0.0.1:8443", "timeout_s": 2.0,
        "disable_instance_discovery": True, "managed_identity_client_id": client_id,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({}, "vault_url"),
        ({"vault_url": "http://myvault.vault.azure.net"}, "vault_url"),
        ({"vault_url": "https://myvault.vault.azure.net/secrets"}, "vault_url"),
        ({"vault_url": "https://user@myvault.vault.azure.net"}, "vault_url"),
        ({"vault_url": "https://myvault.vault.azure.net?x=1"}, "vault_url"),
        ({"vault_url": "https://myvault.vault.azure.net:99999"}, "vault_url"),
        ({"vault_url": 42}, "vault_url"),
        ({"vault_url": "https://v.vault.azure.net", "timeout_s": 0}, "timeout_s"),
        ({"vault_url": "https://v.vault.azure.net", "timeout_s": True}, "timeout_s"),
        ({"vault_url": "https://v.vault.azure.net", "timeout_s": "5"}, "timeout_s"),
        (
            {"vault_url": "https://v.vault.azure.net", "managed_identity_client_id": "x"},
            "client_id",
        ),
        ({"vault_url": "https://v.vault.azure.net", "disable_instance_discovery": 1}, "discovery"),
        ({"vault_url": "https://v.vault.azure.net", "client_secret": "s"}, "client_secret"),
    ],
)
def test_validate_settings_refuses(settings, named):
    with pytest.raises(ValueError, match=named):
        validate_settings(settings)


@pytest.mark.slow
def test_env_is_enough_for_a_subprocess(vault: AzureStandin):
    vault.set_secret("from-subprocess", "value-for-the-child")
    script = (
        "import json, sys\n"
        "from keyvault.backends.azure import AzureKeyVaultBackend\n"
        "backend = AzureKeyVaultBackend(json.loads(sys.argv[1]))\n"
        "print(backend.fetch(name='from-subprocess', version=None, field=None).reveal())\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("AZURE_")}
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(vault.connection_settings)],
        env={**env, **vault.env},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "value-for-the-child"
