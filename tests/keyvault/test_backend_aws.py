"""The AWS Secrets Manager backend against a real moto server over HTTP (no mocks of boto3)."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from keyvault.backends.aws import AwsSecretsBackend, validate_settings
from keyvault.backends.base import FetchErrorKind, SecretFetchError
from tests.keyvault.fixtures_moto import MotoServer, moto_server  # noqa: F401 - a fixture

CANARY = "canary-7f3e-do-not-print"
ROLE_ARN = "arn:aws:iam::123456789012:role/reader"

# Every test, even one that never talks to moto, runs with the fixture's dummy credentials and
# without the host's AWS configuration, so nothing can reach real AWS.
pytestmark = pytest.mark.usefixtures("moto_server")


@pytest.fixture
def aws(moto_server: MotoServer) -> Iterator[MotoServer]:  # noqa: F811
    moto_server.reset()
    yield moto_server
    moto_server.reset()


def backend(server: MotoServer, **settings: Any) -> AwsSecretsBackend:
    return AwsSecretsBackend(
        {"region": server.region, "endpoint_url": server.endpoint_url, **settings}
    )


def fetch_error(backend: AwsSecretsBackend, name: str, **kwargs: Any) -> SecretFetchError:
    with pytest.raises(SecretFetchError) as caught:
        backend.fetch(name=name, version=kwargs.get("version"), field=kwargs.get("field"))
    assert CANARY not in str(caught.value)
    assert CANARY not in repr(caught.value)
    return caught.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- fetching -------------------------------------------------------------------------------


def test_plain_string_secret(aws: MotoServer) -> None:
    aws.client().create_secret(Name="prod/openai", SecretString=CANARY)

    secret = backend(aws).fetch(name="prod/openai", version=None, field=None)

    assert secret.reveal() == CANARY
    assert CANARY not in repr(secret)


def test_secret_by_arn(aws: MotoServer) -> None:
    arn = aws.client().create_secret(Name="by-arn", SecretString="sk-1")["ARN"]

    assert backend(aws).fetch(name=arn, version=None, field=None).reveal() == "sk-1"


def test_json_secret_field(aws: MotoServer) -> None:
    aws.client().create_secret(
        Name="providers", SecretString=json.dumps({"openai": CANARY, "anthropic": "sk-ant"})
    )
    vault = backend(aws)

    assert vault.fetch(name="providers", version=None, field="openai").reveal() == CANARY
    assert vault.fetch(name="providers", version=None, field="anthropic").reveal() == "sk-ant"


def test_missing_field_is_not_found_and_names_the_field(aws: MotoServer) -> None:
    aws.client().create_secret(Name="providers", SecretString=json.dumps({"openai": CANARY}))

    error = fetch_error(backend(aws), "providers", field="mistral")

    assert error.kind == FetchErrorKind.NOT_FOUND
    assert "'mistral'" in error.message
    assert "providers" in error.message


def test_versions_by_id_stage_and_latest(aws: MotoServer) -> None:
    client = aws.client()
    first = client.create_secret(Name="rotating", SecretString="v1")["VersionId"]
    second = client.put_secret_value(SecretId="rotating", SecretString="v2")["VersionId"]
    token = "deploy-2026-11-22-" + "x" * 20  # a version id that is not a UUID
    client.put_secret_value(
        SecretId="rotating", SecretString="v3", ClientRequestToken=token, VersionStages=["blue"]
    )
    vault = backend(aws)

    def value(version: str | None) -> str:
        return vault.fetch(name="rotating", version=version, field=None).reveal()

    assert value(None) == "v2"
    assert value("latest") == "v2"
    assert value("AWSCURRENT") == "v2"
    assert value("AWSPREVIOUS") == "v1"
    assert value(first) == "v1"
    assert value(second) == "v2"
    assert value("blue") == "v3"  # a custom staging label
    assert value("stage:blue") == "v3"
    assert value(f"id:{token}") == "v3"


def test_unknown_version_is_not_found(aws: MotoServer) -> None:
    aws.client().create_secret(Name="rotating", SecretString="v1")
    vault = backend(aws)

    by_id = fetch_error(vault, "rotating", version="0f0f0f0f-0000-4000-8000-000000000000")
    by_stage = fetch_error(vault, "rotating", version="AWSPREVIOUS")

    assert by_id.kind == by_stage.kind == FetchErrorKind.NOT_FOUND
    assert "rotating" in by_stage.message
    assert "AWSPREVIOUS" in by_stage.message


def test_binary_secret(aws: MotoServer) -> None:
    client = aws.client()
    client.create_secret(Name="bin-json", SecretBinary=json.dumps({"key": CANARY}).encode())
    client.create_secret(Name="bin-raw", SecretBinary=b"\xff\xfe" + CANARY.encode())
    vault = backend(aws)

    assert vault.fetch(name="bin-json", version=None, field="key").reveal() == CANARY
    error = fetch_error(vault, "bin-raw")
    assert error.kind == FetchErrorKind.INVALID
    assert "UTF-8" in error.message


def test_secret_not_found(aws: MotoServer) -> None:
    error = fetch_error(backend(aws), "no/such/secret")

    assert error.kind == FetchErrorKind.NOT_FOUND
    assert "no/such/secret" in error.message
    assert aws.endpoint_url in error.message
    assert "ResourceNotFoundException" in error.message


def test_deleted_secret_is_invalid(aws: MotoServer) -> None:
    client = aws.client()
    client.create_secret(Name="retired", SecretString=CANARY)
    client.delete_secret(SecretId="retired", RecoveryWindowInDays=7)

    error = fetch_error(backend(aws), "retired")

    assert error.kind == FetchErrorKind.INVALID
    assert "InvalidRequestException" in error.message


def test_canary_never_in_repr_or_errors(aws: MotoServer) -> None:
    client = aws.client()
    client.create_secret(Name="plain", SecretString=CANARY)
    client.create_secret(Name="nested", SecretString=json.dumps({"a": {"b": CANARY}, "c": 1}))
    vault = backend(aws)

    assert CANARY not in repr(vault)
    assert CANARY not in repr(vault.fetch(name="plain", version=None, field=None))
    assert fetch_error(vault, "plain", field="key").kind == FetchErrorKind.INVALID  # not JSON
    assert fetch_error(vault, "nested", field="a").kind == FetchErrorKind.INVALID  # not a string
    assert fetch_error(vault, "").kind == FetchErrorKind.INVALID


def test_check_passes_against_a_reachable_vault(aws: MotoServer) -> None:
    backend(aws).check()


# --- assume role ----------------------------------------------------------------------------


def assumed_roles(server: MotoServer) -> list[dict[str, Any]]:
    return list(server.data().get("sts", {}).get("AssumedRole", []))


def test_assume_role_fetches_with_role_credentials_and_refreshes_before_expiry(
    aws: MotoServer,
) -> None:
    aws.client().create_secret(Name="prod/openai", SecretString=CANARY)
    offset = timedelta(0)
    vault = AwsSecretsBackend(
        {"region": aws.region, "endpoint_url": aws.endpoint_url, "role_arn": ROLE_ARN},
        clock=lambda: datetime.now(UTC) + offset,
    )

    assert vault.fetch(name="prod/openai", version=None, field=None).reveal() == CANARY
    assert vault.fetch(name="prod/openai", version=None, field=None).reveal() == CANARY
    (role,) = assumed_roles(aws)  # the role credentials are reused, not re-assumed per call
    assert role["role_arn"] == ROLE_ARN
    assert role["session_name"] == "switchboard"

    offset = timedelta(minutes=55)  # moto's credentials last an hour: 5 minutes left
    assert vault.fetch(name="prod/openai", version=None, field=None).reveal() == CANARY
    assert len(assumed_roles(aws)) == 2


def test_one_backend_serves_many_threads(aws: MotoServer) -> None:
    aws.client().create_secret(Name="shared", SecretString=json.dumps({"key": CANARY}))
    vault = backend(aws, role_arn=ROLE_ARN)

    with ThreadPoolExecutor(max_workers=8) as pool:
        values = list(
            pool.map(lambda _: vault.fetch(name="shared", version=None, field="key"), range(32))
        )

    assert {value.reveal() for value in values} == {CANARY}
    assert len(assumed_roles(aws)) == 1  # concurrent first use assumes the role once


def _policy(action: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
        }
    )


def test_assume_role_is_what_grants_access_when_iam_is_enforced(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    iam = aws.client("iam")
    iam.create_user(UserName="gateway")
    iam.put_user_policy(UserName="gateway", PolicyName="assume", PolicyDocument=_policy("sts:*"))
    key = iam.create_access_key(UserName="gateway")["AccessKey"]
    iam.create_role(RoleName="reader", AssumeRolePolicyDocument=_policy("sts:AssumeRole"))
    iam.put_role_policy(
        RoleName="reader", PolicyName="read", PolicyDocument=_policy("secretsmanager:*")
    )
    aws.client().create_secret(Name="prod/openai", SecretString=CANARY)
    aws.enforce_auth()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])

    direct = fetch_error(backend(aws), "prod/openai")
    via_role = backend(aws, role_arn=ROLE_ARN).fetch(name="prod/openai", version=None, field=None)

    assert direct.kind == FetchErrorKind.AUTH
    assert via_role.reveal() == CANARY

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong" + key["SecretAccessKey"][5:])
    bad_signature = fetch_error(backend(aws), "prod/openai")
    assert bad_signature.kind == FetchErrorKind.AUTH
    assert key["SecretAccessKey"][5:] not in bad_signature.message


def test_failed_assume_role_is_auth_and_names_the_role(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    iam = aws.client("iam")
    iam.create_user(UserName="nobody")
    key = iam.create_access_key(UserName="nobody")["AccessKey"]
    aws.enforce_auth()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    vault = backend(aws, role_arn=ROLE_ARN)

    error = fetch_error(vault, "prod/openai")
    with pytest.raises(SecretFetchError) as check_error:
        vault.check()

    assert error.kind == check_error.value.kind == FetchErrorKind.AUTH
    assert ROLE_ARN in error.message


# --- network failures and error codes -------------------------------------------------------


def test_unreachable_endpoint_is_unavailable_quickly() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    vault = AwsSecretsBackend(
        {"region": "eu-west-1", "endpoint_url": url, "timeout_s": 1, "max_attempts": 2}
    )

    started = time.monotonic()
    error = fetch_error(vault, "prod/openai")
    with pytest.raises(SecretFetchError) as check_error:
        vault.check()

    assert time.monotonic() - started < 8
    assert error.kind == check_error.value.kind == FetchErrorKind.UNAVAILABLE
    assert url in error.message
    assert "EndpointConnectionError" in error.message


def test_silent_endpoint_times_out_as_unavailable() -> None:
    with socket.socket() as listener:  # accepts connections (kernel backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        vault = AwsSecretsBackend(
            {
                "region": "eu-west-1",
                "endpoint_url": f"http://127.0.0.1:{port}",
                "timeout_s": 0.5,
                "max_attempts": 1,
            }
        )

        started = time.monotonic()
        error = fetch_error(vault, "prod/openai")
        elapsed = time.monotonic() - started

    assert error.kind == FetchErrorKind.UNAVAILABLE
    assert "ReadTimeout" in error.message
    assert 0.4 < elapsed < 3


class _ErrorHandler(BaseHTTPRequestHandler):
    """Answers every call with the AWS JSON error set on the server (`server.error`)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, code = self.server.error  # type: ignore[attr-defined]
        body = json.dumps({"__type": code, "message": f"details: {CANARY}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def error_server() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ErrorHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "ResourceNotFoundException", FetchErrorKind.NOT_FOUND),
        (400, "AccessDeniedException", FetchErrorKind.AUTH),
        (400, "UnrecognizedClientException", FetchErrorKind.AUTH),
        (403, "InvalidSignatureException", FetchErrorKind.AUTH),
        (403, "ExpiredTokenException", FetchErrorKind.AUTH),
        (400, "ThrottlingException", FetchErrorKind.THROTTLED),
        (429, "TooManyRequestsException", FetchErrorKind.THROTTLED),
        (400, "DecryptionFailure", FetchErrorKind.UNAVAILABLE),
        (500, "InternalServiceError", FetchErrorKind.UNAVAILABLE),
        (400, "InvalidRequestException", FetchErrorKind.INVALID),
        (400, "InvalidParameterException", FetchErrorKind.INVALID),
        (503, "SomethingNew", FetchErrorKind.UNAVAILABLE),
    ],
)
def test_error_codes_map_to_kinds_without_the_vendor_message(
    error_server: Any, status: int, code: str, kind: FetchErrorKind
) -> None:
    error_server.error = (status, code)
    host, port = error_server.server_address[:2]
    vault = AwsSecretsBackend(
        {"region": "eu-west-1", "endpoint_url": f"http://{host}:{port}", "max_attempts": 1}
    )

    error = fetch_error(vault, "prod/openai")

    assert error.kind == kind
    assert code in error.message
    assert "details" not in error.message


# --- settings -------------------------------------------------------------------------------


def test_validate_settings_fills_defaults_and_is_idempotent() -> None:
    minimal = validate_settings({"region": "eu-west-1"})
    full = validate_settings(
        {
            "region": "us-gov-west-1",
            "endpoint_url": "https://secretsmanager.internal:4566/",
            "role_arn": "arn:aws-us-gov:iam::123456789012:role/path/reader",
            "timeout_s": 2.5,
            "max_attempts": 5,
        }
    )

    assert minimal == {"region": "eu-west-1", "timeout_s": 5.0, "max_attempts": 3}
    assert full == {
        "region": "us-gov-west-1",
        "endpoint_url": "https://secretsmanager.internal:4566",
        "role_arn": "arn:aws-us-gov:iam::123456789012:role/path/reader",
        "role_session_name": "switchboard",
        "role_duration_s": 3600,
        "timeout_s": 2.5,
        "max_attempts": 5,
    }
    assert validate_settings(full) == full
    assert validate_settings(minimal) == minimal


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "'region' is required"),
        ({"region": "EU West"}, "'region' is required"),
        ({"region": "eu-west-1", "aws_secret_access_key": "x"}, "'aws_secret_access_key'"),
        ({"region": "eu-west-1", "endpoint_url": "ftp://host"}, "'endpoint_url' must be"),
        ({"region": "eu-west-1", "endpoint_url": "http://"}, "'endpoint_url' must be"),
        ({"region": "eu-west-1", "endpoint_url": "http://h:99999"}, "'endpoint_url' has an"),
        ({"region": "eu-west-1", "role_arn": "arn:aws:iam::1:user/x"}, "'role_arn' must be"),
        (
            {"region": "eu-west-1", "role_arn": ROLE_ARN, "role_session_name": "a"},
            "'role_session_name' must be",
        ),
        (
            {"region": "eu-west-1", "role_arn": ROLE_ARN, "role_duration_s": 60},
            "'role_duration_s' must be a whole number from 900 to 43200",
        ),
        ({"region": "eu-west-1", "role_session_name": "app"}, "only applies with 'role_arn'"),
        ({"region": "eu-west-1", "timeout_s": 0}, "'timeout_s' must be"),
        ({"region": "eu-west-1", "timeout_s": "5"}, "'timeout_s' must be"),
        ({"region": "eu-west-1", "timeout_s": True}, "'timeout_s' must be"),
        ({"region": "eu-west-1", "max_attempts": 0}, "'max_attempts' must be"),
        ({"region": "eu-west-1", "max_attempts": 2.5}, "'max_attempts' must be"),
    ],
)
def test_validate_settings_rejects(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        validate_settings(settings)


def test_endpoint_with_credentials_is_rejected_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="without credentials") as caught:
        validate_settings({"region": "eu-west-1", "endpoint_url": f"https://u:{CANARY}@h"})

    assert CANARY not in str(caught.value)
