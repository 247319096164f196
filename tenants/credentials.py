"""Bearer credentials: API keys (`sbk_…`) and management tokens (`sbm_…`).

A credential is `<kind>_<prefix>_<secret>`: the 12-character prefix is public and indexed, the
40-character secret is shown once and only its HMAC-SHA256 (keyed by a server-side pepper) is
stored. Parsing is a strict regular expression, so malformed input is rejected before any
lookup, in constant time with respect to the database.
"""

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

from django.conf import settings

_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
PREFIX_LENGTH = 12
SECRET_LENGTH = 40
API_KEY_KIND = "sbk"
MANAGEMENT_TOKEN_KIND = "sbm"  # noqa: S105 (a kind marker, not a secret)

_CREDENTIAL = re.compile(
    rf"^(?P<kind>sb[km])_(?P<prefix>[a-z0-9]{{{PREFIX_LENGTH}}})_"
    rf"(?P<secret>[A-Za-z0-9]{{{SECRET_LENGTH}}})$"
)


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """A freshly minted credential: `plaintext` is shown to the caller once, then dropped."""

    prefix: str
    secret_hmac: str
    plaintext: str

    def __repr__(self) -> str:
        return f"IssuedCredential(prefix={self.prefix!r}, plaintext='***')"


@dataclass(frozen=True, slots=True)
class ParsedCredential:
    kind: str
    prefix: str
    secret: str

    def __repr__(self) -> str:
        return f"ParsedCredential(kind={self.kind!r}, prefix={self.prefix!r}, secret='***')"


def secret_hmac(secret: str) -> str:
    return hmac.new(
        settings.API_KEY_HMAC_SECRET.encode(), secret.encode(), hashlib.sha256
    ).hexdigest()


def credential_issue(kind: str) -> IssuedCredential:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return IssuedCredential(
        prefix=prefix, secret_hmac=secret_hmac(secret), plaintext=f"{kind}_{prefix}_{secret}"
    )


def credential_parse(raw: str, *, kind: str) -> ParsedCredential | None:
    """Split a presented credential; None when it is not well formed or of another kind."""
    if len(raw) > 64:
        return None
    match = _CREDENTIAL.match(raw)
    if match is None or match["kind"] != kind:
        return None
    return ParsedCredential(kind=match["kind"], prefix=match["prefix"], secret=match["secret"])


def credential_matches(parsed: ParsedCredential, stored_hmac: str) -> bool:
    return hmac.compare_digest(secret_hmac(parsed.secret), stored_hmac)


def bearer_token(authorization: str) -> str:
    """The token from an `Authorization: Bearer …` header value ('' when absent)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()
