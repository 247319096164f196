"""The interface every vault backend implements.

A backend is built from a connection's non-secret settings (a plain mapping); its bootstrap
credentials come from environment variables or files those settings name, never from the
database. `fetch` is synchronous (the vendor SDKs are); the resolver runs it in a thread.
Errors carry a kind and a message that may name the vault and the reference, never a value.
"""

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol

from switchboard.secrets import Secret


class FetchErrorKind(StrEnum):
    NOT_FOUND = "not_found"  # the secret, version or field does not exist
    AUTH = "auth"  # the vault refused our credentials
    UNAVAILABLE = "unavailable"  # network error, timeout, 5xx
    THROTTLED = "throttled"  # 429 / rate limited: retry with backoff
    INVALID = "invalid"  # misconfiguration, a value that is not a string, a missing field


_DESCRIPTIONS = {
    FetchErrorKind.NOT_FOUND: "not found",
    FetchErrorKind.AUTH: "access refused",
    FetchErrorKind.THROTTLED: "rate limited",
    FetchErrorKind.UNAVAILABLE: "unavailable",
    FetchErrorKind.INVALID: "invalid request",
}


def describe_kind(kind: FetchErrorKind) -> str:
    """Words for an error kind in messages ("access refused"), never the vault's own text."""
    return _DESCRIPTIONS[kind]


def kind_for_status(status: int) -> FetchErrorKind:
    """The error kind an HTTP status from a vault means (0: no response at all)."""
    if status in (401, 403):
        return FetchErrorKind.AUTH
    if status == 404:
        return FetchErrorKind.NOT_FOUND
    if status == 429:
        return FetchErrorKind.THROTTLED
    if status >= 500 or status in (0, 408):
        return FetchErrorKind.UNAVAILABLE
    return FetchErrorKind.INVALID


class SecretFetchError(Exception):
    """A failed fetch; `str()` is safe for logs and API responses (never the value)."""

    def __init__(self, kind: FetchErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class SecretBackend(Protocol):
    def fetch(self, *, name: str, version: str | None, field: str | None) -> Secret:
        """The secret `name` at `version` (None = latest), or one `field` of a JSON secret."""
        ...

    def check(self) -> None:
        """Prove the vault is reachable and our credentials work (raises SecretFetchError)."""
        ...


def pick_field(data: Any, field: str | None, *, where: str) -> str:
    """From a structured secret (dict, or a JSON string) pick `field`; a plain string needs none.

    With no field named, a dict of exactly one entry yields that entry (a common shape).
    """
    if isinstance(data, str) and field:
        try:
            data = json.loads(data)
        except ValueError:
            raise SecretFetchError(
                FetchErrorKind.INVALID, f"{where} is not JSON, so it has no field '{field}'."
            ) from None
    if isinstance(data, str):
        return data
    if not isinstance(data, Mapping):
        raise SecretFetchError(FetchErrorKind.INVALID, f"{where} is not a string or an object.")
    if field is None:
        if len(data) != 1:
            raise SecretFetchError(
                FetchErrorKind.INVALID, f"{where} has several fields; name the one to use."
            )
        (value,) = data.values()
    elif field not in data:
        raise SecretFetchError(FetchErrorKind.NOT_FOUND, f"{where} has no field '{field}'.")
    else:
        value = data[field]
    if not isinstance(value, str):
        raise SecretFetchError(FetchErrorKind.INVALID, f"{where}: the field is not a string.")
    return value


def read_bootstrap(settings: Mapping[str, Any], env_key: str, file_key: str) -> str | None:
    """A bootstrap credential from the env var or file a connection names (env wins)."""
    import os
    from pathlib import Path

    env_name = settings.get(env_key)
    if env_name:
        value = os.environ.get(str(env_name))
        if value:
            return value
    file_name = settings.get(file_key)
    if file_name:
        try:
            return Path(str(file_name)).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None
    return None
