"""The HashiCorp Vault backend against a real OpenBao dev server (no mocks)."""

import base64
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from keyvault.backends.base import FetchErrorKind, SecretFetchError
from keyvault.backends.hashicorp import DEFAULT_JWT_FILE, HashiCorpBackend, validate_settings
from tests.keyvault.fixtures_openbao import (
    READ_POLICY,
    AppRoleCredentials,
    OpenBao,
    openbao_fixture,  # noqa: F401  (registers the session fixture `openbao`)
    running_openbao,
)

CANARY = "sk-canary-hashicorp-7f3e9b2a-never-print-me"


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text + "\n", encoding="utf-8")
    return str(path)


def token_settings(openbao: OpenBao, tmp_path: Path, token: str, **extra: Any) -> dict[str, Any]:
    return {"address": openbao.address, "token_file": write(tmp_path, "token", token), **extra}


def approle_settings(
    openbao: OpenBao, tmp_path: Path, credentials: AppRoleCredentials, **extra: Any
) -> dict[str, Any]:
    return {
        "address": openbao.address,
        "auth_method": "approle",
        "role_id_file": write(tmp_path, "role_id", credentials.role_id),
        "secret_id_file": write(tmp_path, "secret_id", credentials.secret_id),
        **extra,
    }


def put(openbao: OpenBao, path: str, data: dict[str, Any]) -> int:
    response = openbao.client().secrets.kv.v2.create_or_update_secret(path=path, secret=data)
    return int(response["data"]["version"])


def role_accessors(openbao: OpenBao, role_name: str) -> set[str]:
    """Accessors of the live tokens an AppRole role has issued."""
    tokens = openbao.client().auth.token
    found = set()
    for accessor in tokens.list_accessors()["data"]["keys"]:
        meta = tokens.lookup_accessor(accessor)["data"].get("meta") or {}
        if meta.get("role_name") == role_name:
            found.add(accessor)
    return found


def fetch_error(backend: HashiCorpBackend, name: str, **kwargs: Any) -> SecretFetchError:
    with pytest.raises(SecretFetchError) as caught:
        backend.fetch(name=name, version=kwargs.get("version"), field=kwargs.get("field"))
    return caught.value


@pytest.fixture
def reader(openbao: OpenBao, tmp_path: Path) -> HashiCorpBackend:
    """A backend logged in with a non-root token holding the read policy."""
    return HashiCorpBackend(token_settings(openbao, tmp_path, openbao.create_token()))


# --- reading ---


def test_kv2_latest_and_pinned_versions(openbao: OpenBao, reader: HashiCorpBackend) -> None:
    first = put(openbao, "t/versions", {"api_key": "sk-old"})
    put(openbao, "t/versions", {"api_key": "sk-new"})

    assert reader.fetch(name="t/versions", version=None, field=None).reveal() == "sk-new"
    assert reader.fetch(name="/t/versions", version="latest", field=None).reveal() == "sk-new"
    pinned = reader.fetch(name="t/versions", version=str(first), field=None)
    assert pinned.reveal() == "sk-old"

    missing = fetch_error(reader, "t/versions", version="99")
    assert missing.kind == FetchErrorKind.NOT_FOUND
    assert "version 99" in missing.message
    assert fetch_error(reader, "t/versions", version="v2").kind == FetchErrorKind.INVALID


def test_deleted_latest_version_is_not_found(openbao: OpenBao, reader: HashiCorpBackend) -> None:
    put(openbao, "t/deleted", {"api_key": "sk-gone"})
    openbao.client().secrets.kv.v2.delete_latest_version_of_secret(path="t/deleted")

    assert fetch_error(reader, "t/deleted").kind == FetchErrorKind.NOT_FOUND


def test_kv1_mount(openbao: OpenBao, tmp_path: Path) -> None:
    openbao.client().secrets.kv.v1.create_or_update_secret(
        path="t/plain", secret={"api_key": "sk-kv1"}, mount_point=openbao.kv1_mount
    )
    settings = token_settings(
        openbao, tmp_path, openbao.create_token(), mount="kv1/", kv_version="1"
    )
    backend = HashiCorpBackend(settings)

    assert backend.fetch(name="t/plain", version=None, field="api_key").reveal() == "sk-kv1"
    assert backend.fetch(name="t/plain", version="latest", field=None).reveal() == "sk-kv1"
    pinned = fetch_error(backend, "t/plain", version="2")
    assert pinned.kind == FetchErrorKind.INVALID
    assert "KV v1" in pinned.message
    backend.check()


def test_json_field_selection(openbao: OpenBao, reader: HashiCorpBackend) -> None:
    put(openbao, "t/json", {"api_key": CANARY, "org": "org-42"})
    put(openbao, "t/single", {"api_key": "sk-only"})

    assert reader.fetch(name="t/json", version=None, field="org").reveal() == "org-42"
    assert reader.fetch(name="t/json", version=None, field="api_key").reveal() == CANARY
    assert reader.fetch(name="t/single", version=None, field=None).reveal() == "sk-only"

    missing = fetch_error(reader, "t/json", field="password")
    assert missing.kind == FetchErrorKind.NOT_FOUND
    assert "'password'" in missing.message
    assert "secret/t/json" in missing.message
    assert CANARY not in missing.message
    several = fetch_error(reader, "t/json")  # two fields and none named
    assert several.kind == FetchErrorKind.INVALID
    assert CANARY not in several.message


def test_missing_path_is_not_found(openbao: OpenBao, reader: HashiCorpBackend) -> None:
    error = fetch_error(reader, "t/does-not-exist")

    assert error.kind == FetchErrorKind.NOT_FOUND
    assert "secret/t/does-not-exist" in error.message
    assert openbao.address in error.message
    assert fetch_error(reader, "t/../x").kind == FetchErrorKind.INVALID


def test_namespace(openbao: OpenBao, tmp_path: Path) -> None:
    root = openbao.client()
    root.adapter.post("/v1/sys/namespaces/team-a")
    scoped = openbao.client()
    scoped.adapter.namespace = "team-a"
    scoped.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    scoped.secrets.kv.v2.create_or_update_secret(path="t/ns", secret={"api_key": "sk-team-a"})
    put(openbao, "t/ns", {"api_key": "sk-root-namespace"})

    backend = HashiCorpBackend(
        token_settings(openbao, tmp_path, openbao.root_token, namespace="team-a")
    )

    assert backend.fetch(name="t/ns", version=None, field=None).reveal() == "sk-team-a"


# --- authentication ---


def test_wrong_token_is_auth_and_never_echoed(openbao: OpenBao, tmp_path: Path) -> None:
    put(openbao, "t/auth", {"api_key": "sk-x"})
    backend = HashiCorpBackend(token_settings(openbao, tmp_path, CANARY))

    error = fetch_error(backend, "t/auth")

    assert error.kind == FetchErrorKind.AUTH
    assert "token" in error.message
    assert CANARY not in error.message
    with pytest.raises(SecretFetchError) as checked:
        backend.check()
    assert checked.value.kind == FetchErrorKind.AUTH


def test_policy_denial_is_auth_without_new_logins(openbao: OpenBao, tmp_path: Path) -> None:
    put(openbao, "t/denied", {"api_key": "sk-x"})
    credentials = openbao.create_approle("denied", policies=["default"])  # may not read secret/
    backend = HashiCorpBackend(approle_settings(openbao, tmp_path, credentials))

    errors = [fetch_error(backend, "t/denied") for _ in range(3)]

    assert {error.kind for error in errors} == {FetchErrorKind.AUTH}
    assert "permission denied" in errors[0].message
    assert len(role_accessors(openbao, "denied")) == 1  # the token was fine: no login storm


def test_missing_credential_file_is_auth(openbao: OpenBao, tmp_path: Path) -> None:
    settings = {"address": openbao.address, "token_file": str(tmp_path / "absent")}
    error = fetch_error(HashiCorpBackend(settings), "t/anything")

    assert error.kind == FetchErrorKind.AUTH
    assert str(tmp_path / "absent") in error.message


def test_token_from_environment(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    put(openbao, "t/env", {"api_key": "sk-env"})
    monkeypatch.setenv("SB_TEST_VAULT_TOKEN", openbao.create_token())
    settings = {
        "address": openbao.address,
        "token_env": "SB_TEST_VAULT_TOKEN",
        "token_file": str(tmp_path / "absent"),  # the variable wins
    }

    assert HashiCorpBackend(settings).fetch(name="t/env", version=None, field=None).reveal() == (
        "sk-env"
    )


def test_approle_login_and_relogin_after_revocation(
    openbao: OpenBao, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    put(openbao, "t/approle", {"api_key": CANARY})
    credentials = openbao.create_approle("relogin")
    backend = HashiCorpBackend(approle_settings(openbao, tmp_path, credentials))

    assert backend.fetch(name="t/approle", version=None, field=None).reveal() == CANARY
    (first,) = role_accessors(openbao, "relogin")
    openbao.client().auth.token.revoke_accessor(first)
    assert role_accessors(openbao, "relogin") == set()

    assert backend.fetch(name="t/approle", version=None, field=None).reveal() == CANARY
    (second,) = role_accessors(openbao, "relogin")
    assert second != first
    assert credentials.secret_id not in caplog.text
    assert CANARY not in caplog.text


def test_bad_approle_secret_id_is_auth(openbao: OpenBao, tmp_path: Path) -> None:
    credentials = openbao.create_approle("bad-secret-id")
    wrong = AppRoleCredentials(credentials.role_name, credentials.role_id, CANARY)
    backend = HashiCorpBackend(approle_settings(openbao, tmp_path, wrong))

    error = fetch_error(backend, "t/anything")

    assert error.kind == FetchErrorKind.AUTH
    assert "approle" in error.message
    assert CANARY not in error.message


def test_concurrent_first_fetches_log_in_once(openbao: OpenBao, tmp_path: Path) -> None:
    put(openbao, "t/concurrent", {"api_key": "sk-shared"})
    credentials = openbao.create_approle("concurrent")
    backend = HashiCorpBackend(approle_settings(openbao, tmp_path, credentials))
    results: list[str] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(5):
            results.append(backend.fetch(name="t/concurrent", version=None, field=None).reveal())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert results == ["sk-shared"] * 40
    assert len(role_accessors(openbao, "concurrent")) == 1


@pytest.mark.slow
def test_short_lived_token_is_renewed_then_replaced(openbao: OpenBao, tmp_path: Path) -> None:
    put(openbao, "t/renewal", {"api_key": "sk-renewed"})
    credentials = openbao.create_approle("short-lived", ttl="2s", max_ttl="4s")
    backend = HashiCorpBackend(approle_settings(openbao, tmp_path, credentials))
    started = time.monotonic()
    backend.fetch(name="t/renewal", version=None, field=None)
    (first,) = role_accessors(openbao, "short-lived")
    outlived_ttl = False

    while time.monotonic() - started < 5.5:
        time.sleep(0.25)
        assert backend.fetch(name="t/renewal", version=None, field=None).reveal() == "sk-renewed"
        if 2.8 < time.monotonic() - started < 3.3 and not outlived_ttl:
            # Past its 2 s TTL, the first token lives only because the backend renewed it.
            assert first in role_accessors(openbao, "short-lived")
            outlived_ttl = True

    assert outlived_ttl
    # Past its 4 s max TTL, the first token is gone; the backend logged in again in time.
    assert first not in role_accessors(openbao, "short-lived")
    assert len(role_accessors(openbao, "short-lived")) == 1


def test_kubernetes_login(openbao: OpenBao, tmp_path: Path) -> None:
    put(openbao, "t/kubernetes", {"api_key": "sk-from-k8s"})
    with kubernetes_api() as (host, valid_jwt):
        client = openbao.client()
        client.sys.enable_auth_method("kubernetes", path="k8s-test")
        client.auth.kubernetes.configure(
            kubernetes_host=host,
            kubernetes_ca_cert=trustme.CA().cert_pem.bytes().decode(),
            disable_local_ca_jwt=True,
            mount_point="k8s-test",
        )
        client.auth.kubernetes.create_role(
            "gateway",
            bound_service_account_names=["switchboard"],
            bound_service_account_namespaces=["llm"],
            policies=[READ_POLICY],
            mount_point="k8s-test",
        )
        settings = {
            "address": openbao.address,
            "auth_method": "kubernetes",
            "kubernetes_role": "gateway",
            "kubernetes_mount": "k8s-test",
            "jwt_file": write(tmp_path, "jwt", valid_jwt),
        }
        backend = HashiCorpBackend(settings)
        assert backend.fetch(name="t/kubernetes", version=None, field=None).reveal() == (
            "sk-from-k8s"
        )
        backend.check()

        impostor = service_account_jwt(name="switchboard", namespace="llm", uid="other")
        settings["jwt_file"] = write(tmp_path, "jwt", impostor)
        refused = fetch_error(HashiCorpBackend(settings), "t/kubernetes")
        assert refused.kind == FetchErrorKind.AUTH


# --- availability ---


def test_stopped_server_is_unavailable_quickly(tmp_path: Path) -> None:
    with running_openbao(tmp_path / "private", configure=False) as private:
        put(private, "t/down", {"api_key": "sk-before"})
        backend = HashiCorpBackend(token_settings(private, tmp_path, private.root_token))
        assert backend.fetch(name="t/down", version=None, field=None).reveal() == "sk-before"
    assert private.process.returncode is not None

    began = time.monotonic()
    error = fetch_error(backend, "t/down")

    assert error.kind == FetchErrorKind.UNAVAILABLE
    assert private.address in error.message
    assert time.monotonic() - began < 2


def test_silent_server_honours_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings = {"address": address, "token_file": write(tmp_path, "t", "x"), "timeout_s": 0.5}
        backend = HashiCorpBackend(settings)

        began = time.monotonic()
        error = fetch_error(backend, "t/slow")
        elapsed = time.monotonic() - began

    assert error.kind == FetchErrorKind.UNAVAILABLE
    assert "0.5s" in error.message
    assert 0.4 < elapsed < 2


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_verification(tmp_path: Path) -> None:
    with running_openbao(tmp_path / "tls", configure=False, tls=True) as private:
        assert private.address.startswith("https://")
        put(private, "t/tls", {"api_key": "sk-over-tls"})
        base = token_settings(private, tmp_path, private.root_token)
        trusted = HashiCorpBackend({**base, "ca_cert_file": str(private.ca_cert_file)})
        assert trusted.fetch(name="t/tls", version=None, field=None).reveal() == "sk-over-tls"
        unverified = HashiCorpBackend({**base, "verify": False})
        assert unverified.fetch(name="t/tls", version=None, field=None).reveal() == "sk-over-tls"

        error = fetch_error(HashiCorpBackend(base), "t/tls")  # the dev CA is not trusted

    assert error.kind == FetchErrorKind.UNAVAILABLE
    assert "TLS verification failed" in error.message


def test_check(openbao: OpenBao, reader: HashiCorpBackend, tmp_path: Path) -> None:
    reader.check()

    wrong_version = HashiCorpBackend(
        token_settings(openbao, tmp_path, openbao.create_token(), kv_version=1)
    )
    with pytest.raises(SecretFetchError) as mismatch:
        wrong_version.check()
    assert mismatch.value.kind == FetchErrorKind.INVALID
    assert "KV v1" in mismatch.value.message

    no_mount = HashiCorpBackend(
        token_settings(openbao, tmp_path, openbao.create_token(), mount="nowhere")
    )
    with pytest.raises(SecretFetchError) as missing:
        no_mount.check()
    assert missing.value.kind == FetchErrorKind.INVALID
    assert "'nowhere'" in missing.value.message


# --- secrecy ---


def test_canary_never_appears_in_repr_or_errors(openbao: OpenBao, reader: HashiCorpBackend) -> None:
    put(openbao, "t/canary", {"api_key": CANARY, "note": "x"})
    put(openbao, "t/canary-text", {"value": CANARY})
    secret = reader.fetch(name="t/canary", version=None, field="api_key")

    assert secret.reveal() == CANARY
    assert CANARY not in repr(secret)
    assert CANARY not in str(secret)
    assert CANARY not in repr({"key": secret})
    errors = [
        fetch_error(reader, "t/canary"),  # several fields, none named
        fetch_error(reader, "t/canary", field="missing"),
        fetch_error(reader, "t/canary-text", field="api_key"),  # one field, another name
        fetch_error(reader, "t/canary", version="7"),
    ]
    for error in errors:
        assert CANARY not in str(error)
        assert CANARY not in repr(error)
        assert error.__cause__ is None


# --- settings ---


def test_validate_settings_fills_defaults() -> None:
    settings = validate_settings(
        {"address": "https://vault.example.com:8200/", "token_env": "VAULT_TOKEN", "namespace": ""}
    )

    assert settings == {
        "address": "https://vault.example.com:8200",
        "namespace": None,
        "mount": "secret",
        "kv_version": 2,
        "auth_method": "token",
        "verify": True,
        "ca_cert_file": None,
        "timeout_s": 5.0,
        "token_env": "VAULT_TOKEN",
        "token_file": None,
    }


def test_validate_settings_for_approle_and_kubernetes() -> None:
    approle = validate_settings(
        {
            "address": "http://127.0.0.1:8200",
            "auth_method": "approle",
            "role_id_env": "ROLE_ID",
            "secret_id_file": "/run/secrets/secret_id",
            "kv_version": "1",
            "mount": "/kv/",
            "ca_cert_file": "/etc/ssl/vault-ca.pem",
            "timeout_s": 2,
        }
    )
    assert approle["approle_mount"] == "approle"
    assert approle["kv_version"] == 1
    assert approle["mount"] == "kv"
    assert (approle["role_id_env"], approle["role_id_file"]) == ("ROLE_ID", None)

    kubernetes = validate_settings(
        {"address": "https://vault", "auth_method": "kubernetes", "kubernetes_role": "gateway"}
    )
    assert kubernetes["jwt_file"] == DEFAULT_JWT_FILE
    assert kubernetes["kubernetes_mount"] == "kubernetes"


GOOD = {"address": "https://vault.example.com", "token_env": "VAULT_TOKEN"}
APPROLE = {
    "address": "https://vault.example.com",
    "auth_method": "approle",
    "role_id_env": "ROLE_ID",
    "secret_id_env": "SECRET_ID",
}
K8S = {"address": "https://vault.example.com", "auth_method": "kubernetes"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"token_env": "VAULT_TOKEN"}, "address: required"),
        ({**GOOD, "address": "ftp://vault.example.com"}, "address: must be an http(s) URL"),
        ({**GOOD, "address": "vault.example.com:8200"}, "address: must be an http(s) URL"),
        ({**GOOD, "address": "https://user@vault"}, "address: must be an http(s) URL"),
        ({**GOOD, "address": 8200}, "address: must be an http(s) URL"),
        ({**GOOD, "namespace": "team/../root"}, "namespace: must be a Vault path"),
        ({**GOOD, "mount": "a//b"}, "mount: must be a Vault path"),
        ({**GOOD, "kv_version": 3}, "kv_version: must be 1 or 2"),
        ({**GOOD, "kv_version": True}, "kv_version: must be 1 or 2"),
        ({**GOOD, "auth_method": "ldap"}, "auth_method must be one of token, approle, kubernetes"),
        ({"address": "https://vault"}, "token_env / token_file: auth_method 'token' needs"),
        ({**GOOD, "token_env": "not-a-name"}, "token_env: must be an environment variable"),
        ({**GOOD, "token_file": "relative/token"}, "token_file: must be an absolute file path"),
        ({**GOOD, "role_id_env": "ROLE_ID"}, "role_id_env: not used with auth_method 'token'"),
        ({**APPROLE, "secret_id_env": None}, "secret_id_env / secret_id_file: auth_method"),
        ({**APPROLE, "role_id_env": ""}, "role_id_env / role_id_file: auth_method"),
        ({**APPROLE, "approle_mount": "bad mount"}, "approle_mount: must be a Vault path"),
        (K8S, "kubernetes_role: required"),
        ({**K8S, "kubernetes_role": "r", "jwt_file": "token"}, "jwt_file: must be an absolute"),
        ({**K8S, "kubernetes_role": "r", "kubernetes_mount": "../k"}, "kubernetes_mount: must"),
        ({**GOOD, "verify": "yes"}, "verify: must be true or false"),
        ({**GOOD, "ca_cert_file": "ca.pem"}, "ca_cert_file: must be an absolute file path"),
        ({**GOOD, "ca_cert_file": "/ca.pem", "verify": False}, "ca_cert_file: pointless"),
        ({**GOOD, "timeout_s": 0}, "timeout_s: must be seconds"),
        ({**GOOD, "timeout_s": 61}, "timeout_s: must be seconds"),
        ({**GOOD, "timeout_s": "5"}, "timeout_s: must be seconds"),
        ({**GOOD, "colour": "blue"}, "Unknown setting(s): colour"),
        ({**GOOD, "token": CANARY}, "token: settings never hold credentials"),
        ({**APPROLE, "secret_id": CANARY}, "secret_id: settings never hold credentials"),
    ],
)
def test_validate_settings_rejects(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        validate_settings(settings)

    assert CANARY not in str(caught.value)


# --- a stand-in for the Kubernetes TokenReview API ---


def service_account_jwt(*, name: str, namespace: str, uid: str) -> str:
    """A service-account token shaped like Kubernetes' (OpenBao asks the API to verify it)."""

    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {
        "iss": "kubernetes/serviceaccount",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
    }
    signature = base64.urlsafe_b64encode(b"not-verified-locally" * 4).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{signature}"


class _TokenReviewHandler(BaseHTTPRequestHandler):
    valid_jwt = ""

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        authenticated = review["spec"]["token"] == self.valid_jwt
        user = {"username": "system:serviceaccount:llm:switchboard", "uid": "uid-1"}
        body = json.dumps(
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "status": {"authenticated": authenticated, "user": user if authenticated else {}},
            }
        ).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def kubernetes_api() -> Iterator[tuple[str, str]]:
    """A TokenReview endpoint on 127.0.0.1 accepting one service-account token."""
    valid_jwt = service_account_jwt(name="switchboard", namespace="llm", uid="uid-1")
    handler = type("Handler", (_TokenReviewHandler,), {"valid_jwt": valid_jwt})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", valid_jwt
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
