"""Azure Key Vault secrets through azure-keyvault-secrets.

Credentials come from `DefaultAzureCredential` on the host (environment service principal,
workload identity, managed identity, ...), built once per backend and never from settings;
`managed_identity_client_id` picks a user-assigned identity. `AZURE_TOKEN_CREDENTIALS`
(e.g. `ManagedIdentityCredential`, or `prod`) narrows that chain without code changes.

`disable_instance_discovery` is for an authority host (`AZURE_AUTHORITY_HOST`) that
login.microsoftonline.com does not know: Azure Stack, a private cloud, or a local stand-in.

A version is `None`/"latest" or a version id. One fetch makes at most three attempts; a
server's Retry-After is honoured up to `timeout_s`, a longer wait is reported as throttled.
"""

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient

from keyvault.backends.base import (
    FetchErrorKind,
    SecretFetchError,
    describe_kind,
    kind_for_status,
    pick_field,
)
from switchboard.secrets import Secret

DEFAULT_TIMEOUT_S = 5.0
RETRY_TOTAL = 2  # three attempts in all; the resolver adds its own throttling retries
CHECK_SECRET_NAME = "switchboard-connection-check"  # noqa: S105 - a name expected to be missing
SETTINGS = frozenset(
    {"vault_url", "timeout_s", "managed_identity_client_id", "disable_instance_discovery"}
)

_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_VERSION = re.compile(r"^[0-9A-Za-z]{1,64}$")
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def validate_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised settings (defaults filled in), or ValueError naming the bad key."""
    unknown = sorted(set(settings) - SETTINGS)
    if unknown:
        raise ValueError(f"Unknown Azure Key Vault setting '{unknown[0]}'.")
    clean: dict[str, Any] = {"vault_url": _vault_url(settings.get("vault_url"))}
    timeout = settings.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
        raise ValueError("'timeout_s' must be a number of seconds above 0 and at most 60.")
    clean["timeout_s"] = float(timeout)
    client_id = settings.get("managed_identity_client_id")
    if client_id is not None:
        if not isinstance(client_id, str) or not _GUID.match(client_id):
            raise ValueError("'managed_identity_client_id' must be a client id (a GUID).")
        clean["managed_identity_client_id"] = client_id
    no_discovery = settings.get("disable_instance_discovery", False)
    if not isinstance(no_discovery, bool):
        raise ValueError("'disable_instance_discovery' must be true or false.")
    if no_discovery:
        clean["disable_instance_discovery"] = True
    return clean


def _vault_url(value: Any) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            "'vault_url' is required: an https URL such as https://myvault.vault.azure.net."
        )
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError:
        raise ValueError("'vault_url' has an invalid port.") from None
    return str(value).rstrip("/")


class _BoundedRetryPolicy(RetryPolicy):
    """The SDK's retries, but a Retry-After longer than the cap ends them (we report throttled)."""

    def __init__(self, *, max_retry_after_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_retry_after_s = max_retry_after_s

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > self._max_retry_after_s:
            return False
        return bool(super().is_retry(settings, response))


class AzureKeyVaultBackend:
    """One SecretClient and one credential per connection; both are safe to share by threads."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self._settings = validate_settings(settings)
        self._vault_url: str = self._settings["vault_url"]
        self._where = f"Azure Key Vault {self._vault_url}"
        timeout = self._settings["timeout_s"]
        credential_options: dict[str, Any] = {}
        if "managed_identity_client_id" in self._settings:
            credential_options["managed_identity_client_id"] = self._settings[
                "managed_identity_client_id"
            ]
        if self._settings.get("disable_instance_discovery"):
            credential_options["disable_instance_discovery"] = True
        self._credential = DefaultAzureCredential(**credential_options)
        self._client = SecretClient(
            self._vault_url,
            self._credential,
            connection_timeout=timeout,
            read_timeout=timeout,
            retry_policy=_BoundedRetryPolicy(
                max_retry_after_s=timeout,
                retry_total=RETRY_TOTAL,
                retry_backoff_factor=0.5,
                retry_backoff_max=timeout,
            ),
        )

    def __repr__(self) -> str:
        return f"<AzureKeyVaultBackend {self._vault_url}>"

    def fetch(self, *, name: str, version: str | None, field: str | None) -> Secret:
        if not _SECRET_NAME.match(name):
            raise SecretFetchError(
                FetchErrorKind.INVALID,
                f"{self._where}: a secret name has 1 to 127 letters, digits or dashes.",
            )
        if version in ("", "latest"):
            version = None
        if version is not None and not _VERSION.match(version):
            raise SecretFetchError(
                FetchErrorKind.INVALID, f"{self._where}: '{version}' is not a version id."
            )
        where = f"Secret '{name}'" + (f" (version '{version}')" if version else "")
        try:
            value = self._client.get_secret(name, version).value
        except Exception as exc:
            raise self._error(exc, where) from None
        if value is None:
            raise SecretFetchError(
                FetchErrorKind.INVALID, f"{where} in {self._where} has no value."
            )
        return Secret(pick_field(value, field, where=f"{where} in {self._where}"))

    def check(self) -> None:
        # Reading a missing name needs only the "get" permission that fetching needs (listing
        # does not), and a 404 proves the vault is reachable and accepted our token.
        try:
            self._client.get_secret(CHECK_SECRET_NAME)
        except ResourceNotFoundError:
            return
        except Exception as exc:
            raise self._error(exc, "The connection check") from None

    def close(self) -> None:
        self._client.close()
        self._credential.close()

    def _error(self, exc: Exception, where: str) -> SecretFetchError:
        """Only a class name or an HTTP status is kept: vendor messages may quote input."""
        name = type(exc).__name__
        if isinstance(exc, HttpResponseError) and exc.status_code:
            status = exc.status_code
            kind = kind_for_status(status)
            return SecretFetchError(
                kind, f"{where} in {self._where}: {describe_kind(kind)} ({status})."
            )
        if isinstance(exc, ClientAuthenticationError):
            # Raised by the credential chain: no identity on this host could get a token.
            return SecretFetchError(
                FetchErrorKind.AUTH, f"{self._where}: no usable Azure credential ({name})."
            )
        if isinstance(exc, AzureError):  # ServiceRequestError, ServiceResponseError, timeouts
            return SecretFetchError(
                FetchErrorKind.UNAVAILABLE, f"{self._where} is unreachable ({name})."
            )
        if isinstance(exc, ValueError):
            # e.g. the vault's auth challenge names a resource that does not match its URL.
            return SecretFetchError(
                FetchErrorKind.INVALID, f"{where} in {self._where}: invalid request ({name})."
            )
        return SecretFetchError(
            FetchErrorKind.UNAVAILABLE, f"{where} in {self._where}: unexpected error ({name})."
        )
