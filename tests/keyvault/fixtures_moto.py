"""A real AWS emulator for tests: moto in server mode, over HTTP on 127.0.0.1.

Use it with `from tests.keyvault.fixtures_moto import moto_server` (pytest finds an imported
fixture). For the whole session the test process gets dummy AWS credentials and none of the
host's AWS configuration (profiles, instance metadata, web identity, endpoint overrides), so
boto3 can never reach real AWS; `MotoServer.env` holds the same variables for a subprocess
(e.g. the gateway under granian): `{**os.environ, **moto_server.env}`.

moto accepts any credentials until `enforce_auth()` turns IAM checks on (then only keys
created in its IAM, with their policies, work); `reset()` wipes all state and turns them off.
"""

import json
import logging
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

REGION = "eu-west-1"
ACCOUNT_ID = "123456789012"  # moto's default account

# Variables that could make boto3 reach real AWS or read the developer's own setup.
UNSET_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CA_BUNDLE",
)
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass
class MotoServer:
    """A running moto server; `client()` gives a boto3 client pointed at it."""

    endpoint_url: str
    region: str = REGION
    account_id: str = ACCOUNT_ID
    env: dict[str, str] = field(default_factory=lambda: dict(DUMMY_ENV))

    def client(self, service: str = "secretsmanager", **kwargs: Any) -> Any:
        """A boto3 client for `service` (secretsmanager, sts, iam, …) on this server."""
        kwargs.setdefault("aws_access_key_id", self.env["AWS_ACCESS_KEY_ID"])
        kwargs.setdefault("aws_secret_access_key", self.env["AWS_SECRET_ACCESS_KEY"])
        return boto3.session.Session().client(
            service, region_name=self.region, endpoint_url=self.endpoint_url, **kwargs
        )

    def reset(self) -> None:
        """Forget every secret, user and role, and stop enforcing IAM."""
        self._post("/moto-api/reset-auth", b"inf")
        self._post("/moto-api/reset", b"")

    def enforce_auth(self) -> None:
        """From the next request on, moto checks signatures and IAM policies."""
        self._post("/moto-api/reset-auth", b"0")

    def data(self) -> dict[str, Any]:
        """moto's model state (e.g. `data()["sts"]["AssumedRole"]`)."""
        with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=10) as r:  # noqa: S310 - our own 127.0.0.1 server
            result: dict[str, Any] = json.load(r)
        return result

    def _post(self, path: str, body: bytes) -> None:
        request = urllib.request.Request(  # noqa: S310 - our own 127.0.0.1 server
            f"{self.endpoint_url}{path}",
            data=body,
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form type would hide the body from moto
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    with pytest.MonkeyPatch.context() as patch:
        for name in UNSET_ENV:
            patch.delenv(name, raising=False)
        for name, value in DUMMY_ENV.items():
            patch.setenv(name, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield MotoServer(endpoint_url=f"http://{host}:{port}")
        finally:
            server.stop()
