"""HashiCorp Vault (and OpenBao) backend: KV v1 or v2 secrets; token, AppRole or Kubernetes auth.

A connection's settings say where the bootstrap credential lives (an environment variable or a
file); the credential is read at each login and never stored in the settings or the database.
One backend instance is shared by the resolver's threads: logins and renewals run under a lock,
a token past two thirds of its TTL is renewed (or replaced by a fresh login when renewal fails
or the max TTL is near), and a token the vault refuses mid-flight causes one login and one retry.
"""

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import hvac
import hvac.exceptions
import hvac.utils
import requests

from keyvault.backends.base import FetchErrorKind, SecretFetchError, pick_field, read_bootstrap
from switchboard.secrets import Secret

logger = logging.getLogger(__name__)

T = TypeVar("T")

AUTH_METHODS = ("token", "approle", "kubernetes")
DEFAULT_JWT_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
MAX_TIMEOUT_S = 60.0
# Renew once this fraction of the TTL has passed, as Vault Agent does, so a slow request or a
# failed renewal still leaves time for a fresh login before the token lapses.
RENEW_AFTER = 2 / 3

_COMMON_KEYS = frozenset(
    {"address", "namespace", "mount", "kv_version", "auth_method", "verify", "ca_cert_file"}
    | {"timeout_s"}
)
_METHOD_KEYS = {
    "token": frozenset({"token_env", "token_file"}),
    "approle": frozenset(
        {"role_id_env", "role_id_file", "secret_id_env", "secret_id_file", "approle_mount"}
    ),
    "kubernetes": frozenset({"kubernetes_role", "jwt_file", "kubernetes_mount"}),
}
_ALL_KEYS = _COMMON_KEYS.union(*_METHOD_KEYS.values())
# Keys someone may reach for when pasting a credential; settings only ever name where it lives.
_CREDENTIAL_KEYS = {
    "token": "token_env or token_file",
    "role_id": "role_id_env or role_id_file",
    "secret_id": "secret_id_env or secret_id_file",
    "jwt": "jwt_file",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_VAULT_PATH = re.compile(r"^[A-Za-z0-9_.@+=-]+(/[A-Za-z0-9_.@+=-]+)*$")
_VERSION = re.compile(r"^[1-9][0-9]{0,9}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _is_secret_path(path: str) -> bool:
    """Any name Vault accepts (hvac escapes it), but no empty, '.' or '..' segments."""
    if not path or _CONTROL.search(path):
        return False
    return all(segment not in ("", ".", "..") for segment in path.split("/"))


# --- settings ---------------------------------------------------------------------------------


def validate_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Check a connection's settings; return them normalised, with defaults filled in.

    Raises ValueError naming the offending field. Empty values (None, "") count as unset.
    """
    given = {key: value for key, value in settings.items() if value is not None and value != ""}
    _reject_unknown_keys(given)
    method = given.get("auth_method", "token")
    if method not in AUTH_METHODS:
        raise ValueError(f"auth_method must be one of {', '.join(AUTH_METHODS)}.")
    foreign = sorted(key for key in given if key in _ALL_KEYS - _COMMON_KEYS - _METHOD_KEYS[method])
    if foreign:
        raise ValueError(f"{', '.join(foreign)}: not used with auth_method '{method}'.")
    result: dict[str, Any] = {
        "address": _address(given.get("address")),
        "namespace": _vault_path(given, "namespace", None),
        "mount": _vault_path(given, "mount", "secret"),
        "kv_version": _kv_version(given.get("kv_version", 2)),
        "auth_method": method,
        "verify": _boolean(given, "verify", True),
        "ca_cert_file": _file_path(given, "ca_cert_file", None),
        "timeout_s": _timeout(given.get("timeout_s", 5)),
    }
    if result["ca_cert_file"] and not result["verify"]:
        raise ValueError("ca_cert_file: pointless when verify is false; drop one of them.")
    result.update(_METHOD_SETTINGS[method](given))
    return result


def _reject_unknown_keys(given: Mapping[str, Any]) -> None:
    for key, instead in _CREDENTIAL_KEYS.items():
        if key in given:
            raise ValueError(
                f"{key}: settings never hold credentials; name where it is read from with "
                f"{instead}."
            )
    unknown = sorted(str(key) for key in given if key not in _ALL_KEYS)
    if unknown:
        raise ValueError(f"Unknown setting(s): {', '.join(unknown)}.")


def _token_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    return _source(given, "token", "auth_method 'token'")


def _approle_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **_source(given, "role_id", "auth_method 'approle'"),
        **_source(given, "secret_id", "auth_method 'approle'"),
        "approle_mount": _vault_path(given, "approle_mount", "approle"),
    }


def _kubernetes_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    role = given.get("kubernetes_role")
    if not isinstance(role, str) or not _VAULT_PATH.match(role):
        raise ValueError("kubernetes_role: required, the Vault role to log in as.")
    return {
        "kubernetes_role": role,
        "jwt_file": _file_path(given, "jwt_file", DEFAULT_JWT_FILE),
        "kubernetes_mount": _vault_path(given, "kubernetes_mount", "kubernetes"),
    }


_METHOD_SETTINGS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "token": _token_settings,
    "approle": _approle_settings,
    "kubernetes": _kubernetes_settings,
}


def _source(given: Mapping[str, Any], what: str, needed_by: str) -> dict[str, Any]:
    """The `<what>_env` / `<what>_file` pair naming where a credential is read from."""
    env_key, file_key = f"{what}_env", f"{what}_file"
    env_name = given.get(env_key)
    if env_name is not None and (not isinstance(env_name, str) or not _ENV_NAME.match(env_name)):
        raise ValueError(f"{env_key}: must be an environment variable name, e.g. VAULT_TOKEN.")
    file_name = _file_path(given, file_key, None)
    if env_name is None and file_name is None:
        raise ValueError(f"{env_key} / {file_key}: {needed_by} needs at least one of them.")
    return {env_key: env_name, file_key: file_name}


def _address(value: Any) -> str:
    example = "an http(s) URL such as https://vault.example.com:8200"
    if value is None:
        raise ValueError(f"address: required, {example}.")
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ValueError(f"address: must be {example}.")
    return str(value).rstrip("/")


def _vault_path(given: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = given.get(key, default)
    if value is None:
        return None
    path = value.strip("/") if isinstance(value, str) else ""
    if not _VAULT_PATH.match(path) or not _is_secret_path(path):
        raise ValueError(f"{key}: must be a Vault path such as '{default or 'team-a'}'.")
    return path


def _file_path(given: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = given.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise ValueError(f"{key}: must be an absolute file path.")
    return value


def _kv_version(value: Any) -> int:
    if isinstance(value, str) and value.strip() in ("1", "2"):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in (1, 2):
        return value
    raise ValueError("kv_version: must be 1 or 2.")


def _boolean(given: Mapping[str, Any], key: str, default: bool) -> bool:
    value = given.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key}: must be true or false.")
    return value


def _timeout(value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT_S
    ):
        raise ValueError(f"timeout_s: must be seconds, above 0 and at most {MAX_TIMEOUT_S:g}.")
    return float(value)


# --- backend ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lease:
    """What we know about the current token's lifetime (monotonic clock)."""

    obtained_at: float
    ttl_s: float  # 0: the token never expires (a root or periodic-without-TTL token)
    renewable: bool
    login_ttl_s: float  # the TTL the last login granted; renewals shrink towards the max TTL

    def expired(self, now: float) -> bool:
        return self.ttl_s > 0 and now >= self.obtained_at + self.ttl_s

    def renewal_due(self, now: float) -> bool:
        return self.ttl_s > 0 and now >= self.obtained_at + self.ttl_s * RENEW_AFTER


class HashiCorpBackend:
    """Reads KV secrets from one Vault/OpenBao address; safe to share between threads."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = validate_settings(settings)
        self.address: str = self.settings["address"]
        self.mount: str = self.settings["mount"]
        self._client = self._new_client()
        # Logins go through a client that never carries a token, so a stale one is never sent.
        self._login_client = self._new_client()
        self._lock = threading.Lock()
        self._lease: _Lease | None = None
        self._generation = 0  # bumped by each login, so concurrent 403s cause only one

    def fetch(self, *, name: str, version: str | None, field: str | None) -> Secret:
        path = name.strip("/")
        if not _is_secret_path(path):
            raise SecretFetchError(FetchErrorKind.INVALID, f"'{name}' is not a Vault secret path.")
        pinned = self._pinned_version(version, path)
        where = f"Secret '{self.mount}/{path}'"
        if pinned is not None:
            where += f" (version {pinned})"
        where += f" at {self.address}"
        data = self._authorised(lambda: self._read(path, pinned), where=where)
        return Secret(pick_field(data, field, where=where))

    def check(self) -> None:
        where = f"Vault at {self.address}"
        self._authorised(self._client.auth.token.lookup_self, where=where)
        try:
            url = hvac.utils.format_url("/v1/sys/internal/ui/mounts/{0}", self.mount)
            mount = self._client.adapter.get(url)["data"]
        except hvac.exceptions.Forbidden:
            raise SecretFetchError(
                FetchErrorKind.INVALID,
                f"{where}: mount '{self.mount}' does not exist or our policy grants nothing in it.",
            ) from None
        except Exception as exc:
            raise _fetch_error(exc, where, self.settings["timeout_s"]) from None
        actual = str((mount.get("options") or {}).get("version", "1"))
        if mount.get("type") not in ("kv", "generic") or actual != str(self.settings["kv_version"]):
            raise SecretFetchError(
                FetchErrorKind.INVALID,
                f"{where}: mount '{self.mount}' is not a KV v{self.settings['kv_version']} mount.",
            )

    # --- reading ---

    def _pinned_version(self, version: str | None, path: str) -> int | None:
        if version is None or version == "latest":
            return None
        if self.settings["kv_version"] == 1:
            raise SecretFetchError(
                FetchErrorKind.INVALID,
                f"Secret '{self.mount}/{path}': a KV v1 mount has no versions (asked for "
                f"'{version}').",
            )
        if not _VERSION.match(version):
            raise SecretFetchError(
                FetchErrorKind.INVALID, f"'{version}' is not a version: use a number or 'latest'."
            )
        return int(version)

    def _read(self, path: str, version: int | None) -> Any:
        if self.settings["kv_version"] == 2:
            response = self._client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self.mount, version=version, raise_on_deleted_version=True
            )
            return response["data"]["data"]
        return self._client.secrets.kv.v1.read_secret(path=path, mount_point=self.mount)["data"]

    def _authorised(self, call: Callable[[], T], *, where: str) -> T:
        """Run `call` with a live token; on a 403 log in again once and retry once."""
        try:
            generation = self._ensure_token()
            try:
                return call()
            except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
                if self._token_accepted():
                    raise  # the policy denies this path: a new login would not help
                logger.info("Vault at %s refused our token; logging in again.", self.address)
                self._login_again(after=generation)
                return call()
        except SecretFetchError:
            raise
        except Exception as exc:
            raise _fetch_error(exc, where, self.settings["timeout_s"]) from None

    # --- token lifecycle ---

    def _token_accepted(self) -> bool:
        """Whether Vault still knows our token (a 403 may just be the policy)."""
        try:
            self._client.auth.token.lookup_self()
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            return False
        return True

    def _ensure_token(self) -> int:
        with self._lock:
            now = time.monotonic()
            lease = self._lease
            if lease is None or lease.expired(now):
                self._login()
            elif lease.renewal_due(now):
                self._renew_or_login(lease)
            return self._generation

    def _login_again(self, *, after: int) -> None:
        with self._lock:
            if self._generation == after:  # nobody else has logged in since our call began
                self._login()

    def _renew_or_login(self, lease: _Lease) -> None:
        method = self.settings["auth_method"]
        if not lease.renewable:
            if method != "token":  # a handed-in token can only be re-read once it lapses
                self._login()
            return
        try:
            auth = self._client.auth.token.renew_self()["auth"]
        except hvac.exceptions.VaultError as exc:  # revoked, expired, past its max TTL (a 500)
            logger.info(
                "Renewing our token at Vault %s failed (%s); logging in again.",
                self.address,
                type(exc).__name__,
            )
            self._login()
            return
        ttl = float(auth["lease_duration"])
        if ttl <= 0 or (method != "token" and ttl < lease.login_ttl_s * (1 - RENEW_AFTER)):
            self._login()  # the max TTL is near: renewals no longer buy enough time
            return
        self._lease = _Lease(time.monotonic(), ttl, bool(auth["renewable"]), lease.login_ttl_s)

    def _login(self) -> None:
        """Obtain a fresh token (must hold the lock)."""
        method = self.settings["auth_method"]
        try:
            if method == "token":
                token, ttl, renewable = self._token_login()
            else:
                auth = self._approle_login() if method == "approle" else self._kubernetes_login()
                token, ttl, renewable = (
                    auth["client_token"],
                    float(auth["lease_duration"]),
                    bool(auth["renewable"]),
                )
        except (
            hvac.exceptions.Forbidden,
            hvac.exceptions.Unauthorized,
            hvac.exceptions.InvalidRequest,
            hvac.exceptions.InvalidPath,
        ):
            self._client.token = ""
            self._lease = None
            raise SecretFetchError(
                FetchErrorKind.AUTH,
                f"Vault at {self.address} refused the {method} login "
                f"({self._credential_source()}).",
            ) from None
        self._client.token = token
        self._lease = _Lease(time.monotonic(), ttl, renewable, ttl)
        self._generation += 1
        logger.info("Logged in to Vault at %s (%s, ttl %ss).", self.address, method, ttl)

    def _token_login(self) -> tuple[str, float, bool]:
        token = self._bootstrap("token")
        probe = self._new_client(token=token)
        data = probe.auth.token.lookup_self()["data"]
        return token, float(data.get("ttl") or 0), bool(data.get("renewable"))

    def _approle_login(self) -> dict[str, Any]:
        response = self._login_client.auth.approle.login(
            role_id=self._bootstrap("role_id"),
            secret_id=self._bootstrap("secret_id"),
            mount_point=self.settings["approle_mount"],
            use_token=False,
        )
        return dict(response["auth"])

    def _kubernetes_login(self) -> dict[str, Any]:
        jwt_file = self.settings["jwt_file"]
        try:
            with open(jwt_file, encoding="utf-8") as handle:
                jwt = handle.read().strip()
        except OSError:
            jwt = ""
        if not jwt:
            raise SecretFetchError(
                FetchErrorKind.AUTH,
                f"No service account token in {jwt_file} to log in to Vault at {self.address}.",
            )
        response = self._login_client.auth.kubernetes.login(
            role=self.settings["kubernetes_role"],
            jwt=jwt,
            mount_point=self.settings["kubernetes_mount"],
            use_token=False,
        )
        return dict(response["auth"])

    def _bootstrap(self, what: str) -> str:
        value = read_bootstrap(self.settings, f"{what}_env", f"{what}_file")
        if not value:
            raise SecretFetchError(
                FetchErrorKind.AUTH,
                f"No {what} to log in to Vault at {self.address}: "
                f"{self._describe_source(what)} is unset or empty.",
            )
        return value

    def _credential_source(self) -> str:
        method = self.settings["auth_method"]
        if method == "token":
            return self._describe_source("token")
        if method == "approle":
            return f"role {self._describe_source('role_id')}"
        return f"role '{self.settings['kubernetes_role']}', {self.settings['jwt_file']}"

    def _describe_source(self, what: str) -> str:
        env_name, file_name = self.settings[f"{what}_env"], self.settings[f"{what}_file"]
        named = [f"${env_name}" if env_name else "", file_name or ""]
        return " / ".join(part for part in named if part)

    def _new_client(self, token: str = "") -> hvac.Client:
        # An explicit token ("" = none) stops hvac from picking up VAULT_TOKEN or ~/.vault-token.
        return hvac.Client(
            url=self.address,
            token=token,
            namespace=self.settings["namespace"],
            verify=self.settings["ca_cert_file"] or self.settings["verify"],
            timeout=self.settings["timeout_s"],
        )


def _fetch_error(exc: Exception, where: str, timeout_s: float) -> SecretFetchError:
    """Map an hvac or transport exception to a SecretFetchError; never echo the vault's text."""
    name = type(exc).__name__
    if isinstance(exc, hvac.exceptions.InvalidPath):
        return SecretFetchError(FetchErrorKind.NOT_FOUND, f"{where} was not found.")
    if isinstance(exc, hvac.exceptions.Forbidden | hvac.exceptions.Unauthorized):
        return SecretFetchError(
            FetchErrorKind.AUTH, f"{where}: permission denied (check the token and its policy)."
        )
    if isinstance(exc, hvac.exceptions.RateLimitExceeded):
        return SecretFetchError(FetchErrorKind.THROTTLED, f"{where}: Vault is rate limiting us.")
    if isinstance(exc, requests.exceptions.SSLError):
        return SecretFetchError(
            FetchErrorKind.UNAVAILABLE, f"{where}: TLS verification failed (verify/ca_cert_file)."
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return SecretFetchError(
            FetchErrorKind.UNAVAILABLE, f"{where}: no answer within {timeout_s:g}s ({name})."
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return SecretFetchError(FetchErrorKind.UNAVAILABLE, f"{where}: cannot connect ({name}).")
    if isinstance(
        exc,
        hvac.exceptions.VaultDown
        | hvac.exceptions.InternalServerError
        | hvac.exceptions.BadGateway
        | hvac.exceptions.VaultNotInitialized,
    ):
        return SecretFetchError(
            FetchErrorKind.UNAVAILABLE, f"{where}: Vault is unavailable ({name})."
        )
    return SecretFetchError(FetchErrorKind.UNAVAILABLE, f"{where}: unexpected error ({name}).")
