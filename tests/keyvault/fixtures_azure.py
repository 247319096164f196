"""The Azure Key Vault stand-in as a session fixture, for the real Azure SDK in tests.

Use it with `from tests.keyvault.fixtures_azure import azure_vault` (pytest finds an imported
fixture). For the rest of the session the test process gets the stand-in's service principal
(`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`), `AZURE_AUTHORITY_HOST`,
`AZURE_TOKEN_CREDENTIALS=EnvironmentCredential` (DefaultAzureCredential tries nothing else:
no IMDS probe, no az CLI) and its CA bundle (`REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE`), and loses
host variables that could send the SDK elsewhere. `azure_vault.env` holds the same variables
for a subprocess: `{**os.environ, **azure_vault.env}`.

A VaultConnection for it: backend `azure_key_vault`, settings `azure_vault.connection_settings`
(`vault_url` plus `disable_instance_discovery`, so MSAL never asks login.microsoftonline.com).

    version = azure_vault.set_secret("openai-key", "sk-...")    # each call: a new version
    azure_vault.fail_next(429, retry_after=1, count=1, name="openai-key")
    azure_vault.requests.secret_gets["openai-key"], azure_vault.requests.token_requests
    azure_vault.clear_faults()                                   # faults left by a test
"""

from collections.abc import Iterator

import pytest

from tests.keyvault.azure_standin import AzureStandin

# Variables that could make the Azure SDK use another identity or endpoint, or a proxy.
UNSET_ENV = (
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_REGIONAL_AUTHORITY_NAME",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "CURL_CA_BUNDLE",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)


@pytest.fixture(scope="session")
def azure_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureStandin]:
    """A running Azure stand-in on 127.0.0.1; the test process is set up to use it."""
    with (
        AzureStandin(tmp_path_factory.mktemp("azure-standin")) as standin,
        pytest.MonkeyPatch.context() as patch,
    ):
        for name in UNSET_ENV:
            patch.delenv(name, raising=False)
        for name, value in standin.env.items():
            patch.setenv(name, value)
        yield standin
    assert not standin.server_errors, standin.server_errors
