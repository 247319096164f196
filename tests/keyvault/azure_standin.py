"""A local HTTPS stand-in for Azure Key Vault and the Entra ID token endpoint it trusts.

It speaks just enough of the real protocols for the real SDKs (azure-keyvault-secrets,
azure-identity, MSAL) to run their normal code paths against 127.0.0.1:

- Entra ID: `GET /{tenant}/v2.0/.well-known/openid-configuration` (MSAL's tenant discovery) and
  `POST /{tenant}/oauth2/v2.0/token` (client credentials), which checks the client id and
  secret and issues opaque bearer tokens for the requested `<resource>/.default` scope.
- Key Vault: every request needs one of those tokens, for this vault's resource. Without one
  the answer is 401 with the bearer challenge the SDK parses (`authorization` = authority +
  tenant, `resource`). Then `GET /secrets/{name}[/{version}]` and `GET /secrets` (paged).

Real Key Vault names `resource="https://vault.azure.net"` for `myvault.vault.azure.net`, and the
SDK refuses a challenge whose resource is not a parent domain of the vault host. The stand-in
keeps that relation: for `127.0.0.1:<port>` it names `https://0.0.1:<port>`, so the SDK's
check runs unchanged, and tokens are only valid for that audience.

One server plays both hosts. TLS comes from a throwaway `trustme` CA; clients trust it through
`REQUESTS_CA_BUNDLE` / `SSL_CERT_FILE` (see `env`). Tests drive it from Python: `set_secret`
(each call makes a new version), `delete_secret`, `fail_next` (429 + Retry-After, 5xx, 403
for authenticated vault reads), `revoke_tokens`, and read `requests` (counters) / `log`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

HOST = "127.0.0.1"
TOKEN_LIFETIME_S = 3600
_ERROR_CODES = {
    400: "BadParameter",
    401: "Unauthorized",
    403: "Forbidden",
    404: "SecretNotFound",
    429: "Throttled",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass
class StandinCounters:
    """What clients asked for; tests read these to prove a flow really happened."""

    openid_configs: int = 0  # MSAL tenant discovery
    token_requests: int = 0  # client-credentials token requests (good or bad)
    tokens_issued: int = 0
    challenges: int = 0  # 401 + WWW-Authenticate sent to a vault request without a token
    rejected_tokens: int = 0  # vault requests with an unknown, revoked or mis-scoped token
    secret_gets: Counter[str] = field(default_factory=Counter)  # authenticated, by name
    lists: int = 0


@dataclass
class _Version:
    id: str
    value: str
    content_type: str | None
    created: int


@dataclass
class _Fault:
    status: int
    retry_after: float | None
    remaining: int
    name: str | None


@dataclass
class _Token:
    audience: str
    client_id: str
    expires: float


class AzureStandin:
    """The server and its state; `start()`/`stop()` or use it as a context manager."""

    def __init__(self, cert_dir: Path) -> None:
        self.tenant_id = str(uuid.uuid4())
        self.client_id = str(uuid.uuid4())
        self.client_secret = "standin-" + secrets.token_urlsafe(16)
        self.ca_file = ""  # the trustme CA (PEM), written at start()
        self.requests = StandinCounters()
        self.log: list[tuple[float, str, str, int]] = []  # (monotonic time, method, path, status)
        self.issued_tokens: list[str] = []  # every token ever issued, for leak checks
        self.server_errors: list[str] = []  # unexpected exceptions in request handlers
        self._cert_dir = cert_dir
        self._lock = threading.Lock()
        self._secrets: dict[str, list[_Version]] = {}
        self._faults: list[_Fault] = []
        self._tokens: dict[str, _Token] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> AzureStandin:
        ca = trustme.CA()
        self._cert_dir.mkdir(parents=True, exist_ok=True)
        ca_path = self._cert_dir / "azure-standin-ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        self.ca_file = str(ca_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(HOST, "localhost").configure_cert(context)
        self._server = _Server(self, context)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="azure-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> AzureStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the Azure stand-in is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The vault URL and the authority host at once: https://127.0.0.1:<port>."""
        return f"https://{HOST}:{self.port}"

    @property
    def vault_url(self) -> str:
        return self.url

    @property
    def connection_settings(self) -> dict[str, Any]:
        """Settings of an `azure_key_vault` VaultConnection that uses this stand-in."""
        # MSAL would ask login.microsoftonline.com about an authority host it does not know.
        return {"vault_url": self.url, "disable_instance_discovery": True}

    @property
    def env(self) -> dict[str, str]:
        """What a process needs so DefaultAzureCredential and the SDK use this stand-in."""
        return {
            "AZURE_TENANT_ID": self.tenant_id,
            "AZURE_CLIENT_ID": self.client_id,
            "AZURE_CLIENT_SECRET": self.client_secret,
            "AZURE_AUTHORITY_HOST": self.url,
            # Only the environment service principal: no IMDS probe, no az CLI, no broker.
            "AZURE_TOKEN_CREDENTIALS": "EnvironmentCredential",
            "REQUESTS_CA_BUNDLE": self.ca_file,
            "SSL_CERT_FILE": self.ca_file,
            "NO_PROXY": f"{HOST},localhost",
            "no_proxy": f"{HOST},localhost",
        }

    # -- test controls -----------------------------------------------------------------------

    def set_secret(self, name: str, value: str, *, content_type: str | None = None) -> str:
        """Store a new version of `name` (it becomes the latest); returns its version id."""
        version = _Version(uuid.uuid4().hex, value, content_type, int(time.time()))
        with self._lock:
            self._secrets.setdefault(name, []).append(version)
        return version.id

    def delete_secret(self, name: str) -> None:
        with self._lock:
            self._secrets.pop(name, None)

    def fail_next(
        self, status: int, retry_after: float | None = None, count: int = 1, name: str | None = None
    ) -> None:
        """The next `count` authenticated vault reads (of `name`, or any) answer `status`."""
        with self._lock:
            self._faults.append(_Fault(status, retry_after, count, name))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def revoke_tokens(self) -> None:
        """Every token issued so far is refused from now on (clients hold them until expiry)."""
        with self._lock:
            self._tokens.clear()

    def times_of(self, method: str, path: str) -> list[float]:
        """Monotonic times of the requests to `path` (without query), in order."""
        with self._lock:
            return [t for t, m, p, _ in self.log if m == method and p == path]

    # -- protocol ----------------------------------------------------------------------------

    def handle(self, request: _Handler) -> None:
        parts = urlsplit(request.path)
        segments = parts.path.split("/")[1:]
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if segments[0] == "secrets":
            self._vault(request, segments[1:], query)
        elif segments[0]:
            self._identity(request, segments)
        else:
            request.send_json(404, {"error": {"code": "NotFound", "message": "No route"}})

    def record(self, method: str, path: str, status: int) -> None:
        """Logged before the response leaves, so a client never sees an unlogged answer."""
        with self._lock:
            self.log.append((time.monotonic(), method, urlsplit(path).path, status))

    def _identity(self, request: _Handler, segments: list[str]) -> int:
        tenant, rest = segments[0], segments[1:]
        if tenant != self.tenant_id:
            return request.send_json(
                400, {"error": "invalid_tenant", "error_description": "AADSTS90002: not found"}
            )
        if request.command == "GET" and rest == ["v2.0", ".well-known", "openid-configuration"]:
            with self._lock:
                self.requests.openid_configs += 1
            return request.send_json(200, self._openid_configuration())
        if request.command == "POST" and rest == ["oauth2", "v2.0", "token"]:
            return self._token(request)
        return request.send_json(404, {"error": "not_found"})

    def _openid_configuration(self) -> dict[str, Any]:
        base = f"{self.url}/{self.tenant_id}"
        return {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{self.url}/{self.tenant_id}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": "EU",
        }

    def _token(self, request: _Handler) -> int:
        form = {k: v[0] for k, v in parse_qs(request.read_body().decode()).items()}
        with self._lock:
            self.requests.token_requests += 1
        if form.get("grant_type") != "client_credentials":
            return request.send_json(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.client_id or not secrets.compare_digest(
            form.get("client_secret", ""), self.client_secret
        ):
            return request.send_json(
                401,
                {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client."},
            )
        scopes = form.get("scope", "").split()
        resource = next((s[: -len("/.default")] for s in scopes if s.endswith("/.default")), "")
        if not resource:
            return request.send_json(400, {"error": "invalid_scope"})
        token = "standin." + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = _Token(resource, self.client_id, time.time() + TOKEN_LIFETIME_S)
            self.issued_tokens.append(token)
            self.requests.tokens_issued += 1
        return request.send_json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_S,
                "ext_expires_in": TOKEN_LIFETIME_S,
                "access_token": token,
            },
        )

    def _resource_for(self, host: str) -> str:
        """The parent domain of the vault host, as real Key Vault answers (see module doc)."""
        parent = host.split(".", 1)[1] if "." in host else "vault.azure.net"
        return f"https://{parent}"

    def _vault(self, request: _Handler, segments: list[str], query: dict[str, str]) -> int:
        host = request.headers.get("Host", f"{HOST}:{self.port}")
        resource = self._resource_for(host)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            with self._lock:
                self.requests.challenges += 1
            challenge = f'Bearer authorization="{self.url}/{self.tenant_id}", resource="{resource}"'
            return request.send_json(
                401,
                _error(401, "AKV10000: Request is missing a Bearer or PoP token."),
                {"WWW-Authenticate": challenge},
            )
        with self._lock:
            grant = self._tokens.get(token)
            valid = grant is not None and grant.audience == resource and grant.expires > time.time()
            if not valid:
                self.requests.rejected_tokens += 1
        if not valid:
            challenge = f'Bearer authorization="{self.url}/{self.tenant_id}", resource="{resource}"'
            return request.send_json(
                401,
                _error(401, "AKV10032: Invalid issuer or token."),
                {"WWW-Authenticate": challenge},
            )
        if request.command != "GET":
            return request.send_json(405, _error(400, "Only reads are implemented."))
        if "api-version" not in query:
            return request.send_json(
                400, _error(400, "The api-version query parameter is missing.")
            )
        if not segments or segments == [""]:
            return self._list(request, query)
        name, version = segments[0], (segments[1] if len(segments) > 1 else "")
        with self._lock:
            self.requests.secret_gets[name] += 1
            fault = self._take_fault(name)
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            return request.send_json(fault.status, _error(fault.status, "Injected."), headers)
        with self._lock:
            versions = list(self._secrets.get(name, []))
        if not version:
            found = versions[-1] if versions else None
        else:
            found = next((v for v in versions if v.id == version), None)
        if found is None:
            ref = f"{name}/{version}" if version else name
            return request.send_json(
                404,
                _error(404, f"A secret with (name/id) {ref} was not found in this key vault."),
            )
        return request.send_json(200, self._bundle(name, found, with_value=True))

    def _list(self, request: _Handler, query: dict[str, str]) -> int:
        page = max(1, min(int(query.get("maxresults", "25")), 25))
        start = int(query.get("$skiptoken", "0"))
        with self._lock:
            self.requests.lists += 1
            fault = self._take_fault(None)
            latest = sorted((name, versions[-1]) for name, versions in self._secrets.items())
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            return request.send_json(fault.status, _error(fault.status, "Injected."), headers)
        items = [self._bundle(n, v, with_value=False) for n, v in latest[start : start + page]]
        next_link = None
        if start + page < len(latest):
            api = query["api-version"]
            next_link = (
                f"{self.url}/secrets?api-version={api}&maxresults={page}&$skiptoken={start + page}"
            )
        return request.send_json(200, {"value": items, "nextLink": next_link})

    def _take_fault(self, name: str | None) -> _Fault | None:
        """Caller holds the lock."""
        for fault in self._faults:
            if fault.name is None or fault.name == name:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _bundle(self, name: str, version: _Version, *, with_value: bool) -> dict[str, Any]:
        attributes = {
            "enabled": True,
            "created": version.created,
            "updated": version.created,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }
        if not with_value:
            return {"id": f"{self.url}/secrets/{name}", "attributes": attributes, "tags": {}}
        bundle: dict[str, Any] = {
            "value": version.value,
            "id": f"{self.url}/secrets/{name}/{version.id}",
            "attributes": attributes,
            "tags": {},
        }
        if version.content_type:
            bundle["contentType"] = version.content_type
        return bundle


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": _ERROR_CODES.get(status, "Error"), "message": message}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    timeout = 30  # idle keep-alive connections close on their own
    server: _Server

    def do_GET(self) -> None:
        self._body: bytes | None = None
        self.server.standin.handle(self)

    do_POST = do_GET

    def read_body(self) -> bytes:
        """The request body, read once; responding drains an unread one (keep-alive needs it)."""
        if self._body is None:
            length = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(length) if length else b""
        return self._body

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> int:
        self.read_body()
        self.server.standin.record(self.command, self.path, status)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)
        return status

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, standin: AzureStandin, context: ssl.SSLContext) -> None:
        self.standin = standin
        self._context = context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((HOST, 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        # The TLS handshake happens on the first read, in the connection's own thread, so a
        # slow or broken client cannot stall the accept loop.
        sock, address = self.socket.accept()
        tls = self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._connections_lock:
            self._connections.add(tls)
        return tls, address

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Unblock keep-alive connections still waiting for a request."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients dropping connections (or TLS handshakes) are not our failures; bugs are.
        error = sys.exc_info()[1]
        if isinstance(error, ssl.SSLError | ConnectionError | TimeoutError):
            return
        self.standin.server_errors.append(repr(error))
        super().handle_error(request, client_address)
