"""Development backend: the secret is an environment variable of the web process.

Refused when the platform setting KEYVAULT_ALLOW_ENV_BACKEND is false (production default).
"""

import os
import re
from collections.abc import Mapping
from typing import Any

from keyvault.backends.base import FetchErrorKind, SecretFetchError, pick_field
from switchboard.secrets import Secret

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


def validate_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    if settings:
        raise ValueError("The env backend takes no settings.")
    return {}


class EnvBackend:
    def __init__(self, settings: Mapping[str, Any]) -> None:
        validate_settings(settings)

    def fetch(self, *, name: str, version: str | None, field: str | None) -> Secret:
        if not _ENV_NAME.match(name):
            raise SecretFetchError(FetchErrorKind.INVALID, f"'{name}' is not a variable name.")
        value = os.environ.get(name)
        if value is None:
            raise SecretFetchError(FetchErrorKind.NOT_FOUND, f"Variable {name} is not set.")
        return Secret(pick_field(value, field, where=f"Variable {name}"))

    def check(self) -> None:
        return None
