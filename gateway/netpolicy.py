"""Egress policy for deployment `api_base` URLs: the gateway's defence against SSRF.

A deployment's `api_base` is where the gateway sends prompts *and the provider key*, so an
admin (or anyone who can edit deployments) must not be able to point it at the metadata
service, the cluster network or the gateway itself. The rules:

- `validate_api_base` runs when a deployment is saved: http(s) only, a host, no userinfo, a
  sane port, no fragment or query, and every address the host resolves to must be public.
- `check_host` runs again at connect time, because DNS can change after the save (rebinding).

A host is exempt when its name, its IP, or a CIDR containing its IP is listed in
`settings.ALLOWED_UPSTREAM_HOSTS` (a local model server, a private Azure endpoint, tests).
"""

import ipaddress
import re
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

import idna
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = ("http", "https")
MAX_HOST_LENGTH = 253

# Checked in order, so the specific reason wins (the metadata service before link-local).
_V4_RANGES = tuple(
    (ipaddress.IPv4Network(network), kind)
    for network, kind in (
        ("0.0.0.0/8", "unspecified"),  # many stacks route 0.0.0.0 to this host
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("169.254.169.254/32", "link-local (cloud metadata service)"),
        ("169.254.0.0/16", "link-local"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("192.0.0.0/24", "IETF protocol-assignment"),
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("198.18.0.0/15", "benchmarking"),
    )
)
_V6_RANGES = tuple(
    (ipaddress.IPv6Network(network), kind)
    for network, kind in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("2001::/32", "Teredo"),  # tunnels to an obfuscated IPv4 address; obsolete anyway
        ("fc00::/7", "private (unique-local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")

# Characters no upstream URL needs, and that URL parsers disagree about (`\` is a separator
# for browsers and some clients but not for urllib; control characters get silently dropped).
_BAD_URL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\s\\]")
_NETLOC = re.compile(r"(?P<host>\[[^\[\]]*\]|[^:\[\]]*)(?::(?P<port>[0-9]{1,5}))?")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_INET_ATON_PART = re.compile(r"0x[0-9a-f]+|[0-9]+")


class EgressRefused(ValueError):
    """An upstream the gateway must not reach; the message names the host and the reason."""


def allowed_upstreams() -> tuple[str, ...]:
    """Host names, IPs and CIDRs exempt from the private-address rule (settings-driven)."""
    entries = getattr(settings, "ALLOWED_UPSTREAM_HOSTS", None) or ()
    if isinstance(entries, str):
        entries = entries.split(",")
    return tuple(entry.strip() for entry in entries if entry and entry.strip())


def validate_api_base(url: str, *, allowed: Sequence[str]) -> str:
    """Check a deployment URL and return it normalised (lowercase scheme and host, IDNA host,
    no trailing slash); raise EgressRefused with an admin-readable reason."""
    text = url.strip()
    if not text:
        raise EgressRefused("The upstream URL is empty.")
    if _BAD_URL_CHARS.search(text):
        raise EgressRefused("The upstream URL contains whitespace, control characters or '\\'.")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise EgressRefused(f"{text!r} is not a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise EgressRefused(f"The upstream URL must use http or https, not {scheme or 'nothing'}.")
    if "@" in parts.netloc:
        raise EgressRefused("The upstream URL must not contain credentials (user:password@).")
    if "#" in text:
        raise EgressRefused("The upstream URL must not have a fragment (#...).")
    if "?" in text:
        # The gateway appends paths (`/chat/completions`) to the base; a query would break them.
        raise EgressRefused("The upstream URL must not have a query string (?...).")
    host, port = _split_netloc(parts.netloc)
    check_host(host, allowed=allowed)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def _split_netloc(netloc: str) -> tuple[str, int | None]:
    match = _NETLOC.fullmatch(netloc)
    if match is None:
        raise EgressRefused(f"The upstream URL has an invalid host or port ({netloc!r}).")
    port_text = match.group("port")
    port = int(port_text) if port_text is not None else None
    if port is not None and not 1 <= port <= 65535:
        raise EgressRefused(f"The upstream port must be between 1 and 65535, not {port}.")
    host = _normalise_host(match.group("host"))
    return host, port


def check_host(host: str, *, allowed: Sequence[str]) -> list[str]:
    """Resolve `host` and refuse it unless EVERY address is public or allow-listed.

    Returns the addresses. All of them are checked, not just the first: a resolver can hand
    back a public and a private address, and the client may connect to either.
    """
    name = _normalise_host(host)
    names, networks = _parse_allowed(allowed)
    literal = _ip_literal(name)
    if literal is None:
        _refuse_odd_ipv4(name)
    addresses = [literal] if literal is not None else _resolve(name)
    if name in names:
        return [str(ip) for ip in addresses]
    for ip in addresses:
        if _ip_allowed(ip, networks):
            continue
        reason = refusal_reason(ip)
        if reason is None:
            continue
        if literal is not None:
            raise EgressRefused(f"Upstream host {name} is {reason}.")
        raise EgressRefused(f"Upstream host {name} resolves to {ip}, {reason}.")
    return [str(ip) for ip in addresses]


def _normalise_host(host: str) -> str:
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.removesuffix(".")  # the root label: `api.openai.com.` is `api.openai.com`
    if not name:
        raise EgressRefused("The upstream URL has no host.")
    if _ip_literal(name) is not None:
        return name
    if not name.isascii():
        # The same IDNA 2008 encoding httpx uses, so we check the name it will connect to.
        try:
            name = idna.encode(name).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise EgressRefused(f"Upstream host {host!r} is not a valid host name.") from None
    if len(name) > MAX_HOST_LENGTH or not _HOST_NAME.fullmatch(name):
        raise EgressRefused(f"Upstream host {host!r} is not a valid host name.")
    return name


def _ip_literal(name: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _refuse_odd_ipv4(name: str) -> None:
    """`2130706433`, `0x7f.1`, `017700000001`, `127.1`: inet_aton spellings that resolvers
    turn into an IPv4 address. Refused outright, even for public addresses: a host that
    reads as a name but connects as a number defeats allow-lists and audit logs alike."""
    ip = _inet_aton(name)
    if ip is None:
        return
    reason = refusal_reason(ip) or "a public address"
    raise EgressRefused(
        f"Upstream host {name} is a non-standard spelling of {ip}, {reason}; "
        "write IPv4 addresses in dotted-decimal form."
    )


def _inet_aton(name: str) -> ipaddress.IPv4Address | None:
    # 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last fills the rest.
    parts = name.split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_ATON_PART.fullmatch(p) for p in parts):
        return None
    try:
        values = [_inet_aton_number(part) for part in parts]
    except ValueError:  # `08`: not octal, and resolvers refuse it too
        return None
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for index, value in enumerate(head):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _inet_aton_number(part: str) -> int:
    if part.startswith("0x"):
        return int(part[2:], 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)
    return int(part)


def _resolve(name: str) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise EgressRefused(f"Upstream host {name}: cannot resolve it.") from None
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise EgressRefused(f"Upstream host {name}: cannot resolve it (no IP addresses).")
    return addresses


def _parse_allowed(allowed: Sequence[str]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in allowed:
        text = entry.strip().lower().removeprefix("[").removesuffix("]")
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            names.add(text.removesuffix("."))
    return frozenset(names), tuple(networks)


def _ip_allowed(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            candidates[0] = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        if ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
    return any(candidate in network for candidate in candidates for network in networks)


def refusal_reason(ip: IPAddress) -> str | None:
    """Why the gateway must not connect to `ip` ("a loopback address"), or None if public."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_reason(ip)
    return _v6_reason(ip)


def _v4_reason(ip: ipaddress.IPv4Address) -> str | None:
    for network, kind in _V4_RANGES:
        if ip in network:
            return _a(f"{kind} address")
    # Anything else IANA marks as not globally reachable.
    return None if ip.is_global else "a non-public address"


def _v6_reason(ip: ipaddress.IPv6Address) -> str | None:
    if ip.ipv4_mapped is not None:
        return _embedding("IPv4-mapped", ip.ipv4_mapped)
    for network, kind in _V6_RANGES:
        if ip in network:
            return _a(f"{kind} address")
    # Translation prefixes reach whatever IPv4 address they embed: judge that address.
    if ip in _NAT64_WELL_KNOWN:
        return _embedding("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip in _NAT64_LOCAL:
        return _local_nat64_reason(ip)
    if ip.sixtofour is not None:
        return _embedding("6to4", ip.sixtofour)
    return None if ip.is_global else "a non-public address"


def _local_nat64_reason(ip: ipaddress.IPv6Address) -> str | None:
    """64:ff9b:1::/48 is used with a /48 or a /96 prefix (RFC 8215, RFC 6052 §2.2), so the
    IPv4 address sits in one of two places; judge every layout whose padding bits are zero.
    No address has both layouts valid unless its embedded IPv4 address is 0.0.0.0."""
    value = int(ip)
    embedded: list[ipaddress.IPv4Address] = []
    if (value >> 32) & ((1 << 48) - 1) == 0:  # /96: bits 48-95 zero, IPv4 in 96-127
        embedded.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if (value >> 56) & 0xFF == 0 and value & ((1 << 40) - 1) == 0:  # /48: IPv4 in 48-63, 72-87
        high, low = (value >> 64) & 0xFFFF, (value >> 40) & 0xFFFF
        embedded.append(ipaddress.IPv4Address(high << 16 | low))
    if not embedded:
        return "a local-use NAT64 address with no recognisable embedded IPv4 address"
    for v4 in embedded:
        reason = _embedding("local-use NAT64", v4)
        if reason is not None:
            return reason
    return None


def _embedding(kind: str, v4: ipaddress.IPv4Address) -> str | None:
    inner = _v4_reason(v4)
    return None if inner is None else f"{_a(kind)} address embedding {v4}, {inner}"


def _a(phrase: str) -> str:
    return f"{'an' if phrase[0].lower() in 'aeiou' else 'a'} {phrase}"
