"""AWS Secrets Manager through boto3.

Credentials come from the standard AWS chain of the host (environment variables, web identity,
ECS/EC2 instance role), never from settings. With `role_arn` the backend assumes that role via
STS and refreshes the temporary credentials before they expire, so a long-lived web process
keeps working (botocore renews them 15 minutes before expiry, and blocks callers only in the
last 10). `endpoint_url` points at an emulator (moto, LocalStack) or a proxy; STS is sent
there too unless `sts_endpoint_url` names another one.

A version is `None`/"latest" (the AWSCURRENT stage), a version id (a UUID, or any string given
as "id:<version id>"), or a staging label such as "AWSPREVIOUS" (or "stage:<label>").
"""

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from keyvault.backends.base import (
    FetchErrorKind,
    SecretFetchError,
    describe_kind,
    kind_for_status,
    pick_field,
)
from switchboard.secrets import Secret

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_SESSION_NAME = "switchboard"
DEFAULT_ROLE_DURATION_S = 3600
SETTINGS = frozenset(
    {
        "region",
        "endpoint_url",
        "sts_endpoint_url",
        "role_arn",
        "role_session_name",
        "role_duration_s",
        "timeout_s",
        "max_attempts",
    }
)

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_MAX_SECRET_ID = 2048

_NOT_FOUND = frozenset({"ResourceNotFoundException", "NoSuchEntity"})
_AUTH = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "RegionDisabledException",
    }
)
_THROTTLED = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    }
)
_UNAVAILABLE = frozenset(
    {
        "DecryptionFailure",
        "InternalServiceError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)
_INVALID = frozenset(
    {"InvalidRequestException", "InvalidParameterException", "ValidationException"}
)


def validate_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised settings (defaults filled in), or ValueError naming the bad key."""
    unknown = sorted(set(settings) - SETTINGS)
    if unknown:
        raise ValueError(f"Unknown AWS Secrets Manager setting '{unknown[0]}'.")
    region = settings.get("region")
    if not isinstance(region, str) or not _REGION.match(region):
        raise ValueError("'region' is required: an AWS region such as 'eu-west-1'.")
    clean: dict[str, Any] = {"region": region}
    for key in ("endpoint_url", "sts_endpoint_url"):
        if settings.get(key) is not None:
            clean[key] = _endpoint(key, settings[key])
    if settings.get("role_arn") is not None:
        role_arn = settings["role_arn"]
        if not isinstance(role_arn, str) or not _ROLE_ARN.match(role_arn):
            raise ValueError(
                "'role_arn' must be an IAM role ARN such as 'arn:aws:iam::123456789012:role/x'."
            )
        clean["role_arn"] = role_arn
        name = settings.get("role_session_name", DEFAULT_SESSION_NAME)
        if not isinstance(name, str) or not _SESSION_NAME.match(name):
            raise ValueError(
                "'role_session_name' must be 2-64 letters, digits or the characters +=,.@_-."
            )
        clean["role_session_name"] = name
        clean["role_duration_s"] = _integer(
            settings, "role_duration_s", DEFAULT_ROLE_DURATION_S, 900, 43200
        )
    else:
        for key in ("role_session_name", "role_duration_s", "sts_endpoint_url"):
            if settings.get(key) is not None:
                raise ValueError(f"'{key}' only applies with 'role_arn'.")
    timeout = settings.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
        raise ValueError("'timeout_s' must be a number of seconds above 0 and at most 60.")
    clean["timeout_s"] = float(timeout)
    clean["max_attempts"] = _integer(settings, "max_attempts", DEFAULT_MAX_ATTEMPTS, 1, 10)
    return clean


def _endpoint(key: str, value: Any) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"'{key}' must be an http(s) URL without credentials or a query.")
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError:
        raise ValueError(f"'{key}' has an invalid port.") from None
    return str(value).rstrip("/")


def _integer(settings: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"'{key}' must be a whole number from {low} to {high}.")
    return value


class _FixedProvider(CredentialProvider):
    """Hands botocore our refreshable assume-role credentials as the session's only source."""

    METHOD = "switchboard-assume-role"
    CANONICAL_NAME = "switchboard-assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AwsSecretsBackend:
    """One Secrets Manager client per connection; boto3 clients are safe to share by threads.

    `clock` is what the role credentials' expiry is compared with (tests move it forward).
    """

    def __init__(
        self, settings: Mapping[str, Any], *, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self._settings = validate_settings(settings)
        self._region = self._settings["region"]
        self._endpoint_url: str | None = self._settings.get("endpoint_url")
        self._where = f"AWS Secrets Manager ({self._endpoint_url or self._region})"
        config = Config(
            region_name=self._region,
            connect_timeout=self._settings["timeout_s"],
            read_timeout=self._settings["timeout_s"],
            retries={"mode": "standard", "max_attempts": self._settings["max_attempts"]},
            user_agent_extra="switchboard",
        )
        base = botocore.session.Session()
        session = base
        role_arn = self._settings.get("role_arn")
        if role_arn:
            self._sts = boto3.session.Session(botocore_session=base).client(
                "sts",
                region_name=self._region,
                endpoint_url=self._settings.get("sts_endpoint_url", self._endpoint_url),
                config=config,
            )
            credentials = DeferredRefreshableCredentials(
                refresh_using=self._assume_role, method="sts-assume-role", time_fetcher=clock
            )
            session = botocore.session.Session()
            session.register_component(
                "credential_provider", CredentialResolver([_FixedProvider(credentials)])
            )
        # A private session per backend: boto3's default session is not thread-safe.
        self._client = boto3.session.Session(botocore_session=session).client(
            "secretsmanager",
            region_name=self._region,
            endpoint_url=self._endpoint_url,
            config=config,
        )

    def __repr__(self) -> str:
        role = self._settings.get("role_arn")
        return f"<AwsSecretsBackend {self._where}{f' as {role}' if role else ''}>"

    def fetch(self, *, name: str, version: str | None, field: str | None) -> Secret:
        if not name or len(name) > _MAX_SECRET_ID:
            raise SecretFetchError(
                FetchErrorKind.INVALID, f"{self._where}: a secret id has 1 to 2048 characters."
            )
        where = f"Secret '{name}'" + (f" (version '{version}')" if version else "")
        try:
            response = self._client.get_secret_value(SecretId=name, **_version_args(version))
        except Exception as exc:
            raise self._error(exc, where) from None
        if response.get("SecretString") is not None:
            text = response["SecretString"]
        else:
            try:
                text = bytes(response.get("SecretBinary") or b"").decode("utf-8")
            except UnicodeDecodeError:
                raise SecretFetchError(
                    FetchErrorKind.INVALID, f"{where} is binary and not UTF-8 text."
                ) from None
        return Secret(pick_field(text, field, where=where))

    def check(self) -> None:
        try:
            self._client.list_secrets(MaxResults=1)
        except ClientError as exc:
            # Denied ListSecrets still proves the endpoint is reachable and our signature is
            # accepted; a least-privilege policy grants GetSecretValue only.
            if exc.operation_name == "ListSecrets" and _code(exc) == "AccessDeniedException":
                return
            raise self._error(exc, "The connection check") from None
        except Exception as exc:
            raise self._error(exc, "The connection check") from None

    def _assume_role(self) -> dict[str, Any]:
        response = self._sts.assume_role(
            RoleArn=self._settings["role_arn"],
            RoleSessionName=self._settings["role_session_name"],
            DurationSeconds=self._settings["role_duration_s"],
        )
        credentials = response["Credentials"]
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": credentials["Expiration"].isoformat(),
        }

    def _error(self, exc: Exception, where: str) -> SecretFetchError:
        """Only the error code or class name is kept: vendor messages may quote input."""
        if isinstance(exc, ClientError):
            code = _code(exc)
            kind = _kind_of_code(code, exc.response)
            if exc.operation_name == "AssumeRole":
                return SecretFetchError(
                    FetchErrorKind.AUTH if kind is FetchErrorKind.INVALID else kind,
                    f"{self._where}: assuming role {self._settings['role_arn']} failed ({code}).",
                )
            return SecretFetchError(
                kind, f"{where} in {self._where}: {describe_kind(kind)} ({code})."
            )
        name = type(exc).__name__
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
            return SecretFetchError(
                FetchErrorKind.AUTH,
                f"{self._where}: no usable AWS credentials on this host ({name}).",
            )
        if isinstance(exc, ParamValidationError):
            return SecretFetchError(
                FetchErrorKind.INVALID, f"{where} in {self._where}: invalid request ({name})."
            )
        if isinstance(exc, HTTPClientError | BotoCoreError):
            return SecretFetchError(
                FetchErrorKind.UNAVAILABLE, f"{self._where} is unreachable ({name})."
            )
        return SecretFetchError(
            FetchErrorKind.UNAVAILABLE, f"{where} in {self._where}: unexpected error ({name})."
        )


def _version_args(version: str | None) -> dict[str, str]:
    if version is None or version in ("", "latest"):
        return {}
    if version.startswith("id:"):
        return {"VersionId": version[3:]}
    if version.startswith("stage:"):
        return {"VersionStage": version[6:]}
    if _UUID.match(version):
        return {"VersionId": version}
    return {"VersionStage": version}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "Unknown")


def _kind_of_code(code: str, response: Mapping[str, Any]) -> FetchErrorKind:
    for codes, kind in (
        (_NOT_FOUND, FetchErrorKind.NOT_FOUND),
        (_AUTH, FetchErrorKind.AUTH),
        (_THROTTLED, FetchErrorKind.THROTTLED),
        (_UNAVAILABLE, FetchErrorKind.UNAVAILABLE),
        (_INVALID, FetchErrorKind.INVALID),
    ):
        if code in codes:
            return kind
    return kind_for_status(int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0))
