"""Egress policy: upstream URLs may reach public addresses only, unless allow-listed.

DNS is real for `localhost` and IP literals; other names go through a stand-in for
`socket.getaddrinfo` (the stdlib boundary), because tests never reach the internet.
"""

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import pytest

from gateway.netpolicy import (
    EgressRefused,
    allowed_upstreams,
    check_host,
    refusal_reason,
    validate_api_base,
)

PUBLIC = "93.184.215.14"


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """Make `socket.getaddrinfo` answer from a table; returns the list of names asked for."""
    asked: list[str] = []

    def install(**table: list[str]) -> list[str]:
        def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
            asked.append(host)
            addresses = table.get(host.replace(".", "_").replace("-", "_"))
            if addresses is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (address, 0, 0, 0) if ":" in address else (address, 0),
                )
                for address in addresses
            ]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return asked

    return install


def refused(url: str, *, allowed: tuple[str, ...] = ()) -> str:
    with pytest.raises(EgressRefused) as info:
        validate_api_base(url, allowed=allowed)
    return str(info.value)


# --- accepted and normalised -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://8.8.8.8/v1", "https://8.8.8.8/v1"),
        ("https://8.8.8.8/v1/", "https://8.8.8.8/v1"),
        ("https://8.8.8.8/", "https://8.8.8.8"),
        ("HTTPS://8.8.8.8:8443/Open/AI//", "https://8.8.8.8:8443/Open/AI"),
        ("http://[2606:4700:4700::1111]/v1", "http://[2606:4700:4700::1111]/v1"),
        ("  https://8.8.8.8/v1  ", "https://8.8.8.8/v1"),
        ("http://[::ffff:8.8.8.8]/", "http://[::ffff:8.8.8.8]"),  # mapped, public inside
        ("http://[64:ff9b::808:808]/", "http://[64:ff9b::808:808]"),  # NAT64 of 8.8.8.8
        ("http://[64:ff9b:1::808:808]/", "http://[64:ff9b:1::808:808]"),  # local NAT64, /96
        ("http://[2002:808:808::1]/", "http://[2002:808:808::1]"),  # 6to4 of 8.8.8.8
    ],
)
def test_public_urls_are_accepted_and_normalised(url: str, normalised: str) -> None:
    assert validate_api_base(url, allowed=()) == normalised


def test_names_are_lowercased_and_resolved(dns: Callable[..., list[str]]) -> None:
    asked = dns(api_example_com=[PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
    assert validate_api_base("https://API.Example.COM./v1/", allowed=()) == (
        "https://api.example.com/v1"
    )
    assert asked == ["api.example.com"]


def test_international_names_use_the_idna_form_httpx_connects_to(
    dns: Callable[..., list[str]],
) -> None:
    asked = dns(xn__bcher_kva_example=[PUBLIC])
    assert validate_api_base("https://Bücher.example/v1", allowed=()) == (
        "https://xn--bcher-kva.example/v1"
    )
    assert check_host("bücher.example", allowed=()) == [PUBLIC]  # httpx's url.host is unicode
    assert asked == ["xn--bcher-kva.example"] * 2


# --- refused address classes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:9000", "a loopback address"),
        ("http://127.8.9.10", "a loopback address"),
        ("http://[::1]:8000", "a loopback address"),
        ("http://10.0.0.8:8000", "a private address"),
        ("http://172.16.0.1", "a private address"),
        ("http://172.31.255.255", "a private address"),
        ("http://192.168.1.1", "a private address"),
        ("http://[fc00::1]", "a private (unique-local) address"),
        ("http://[fd12:3456::1]", "a private (unique-local) address"),
        ("http://169.254.169.254/latest", "link-local (cloud metadata service)"),
        ("http://169.254.1.1", "a link-local address"),
        ("http://[fe80::1]", "a link-local address"),
        ("http://[fe80::1%25eth0]", "a link-local address"),
        ("http://[fec0::1]", "a site-local address"),
        ("http://224.0.0.1", "a multicast address"),
        ("http://239.255.255.250", "a multicast address"),
        ("http://[ff02::1]", "a multicast address"),
        ("http://240.0.0.1", "a reserved address"),
        ("http://255.255.255.255", "a broadcast address"),
        ("http://0.0.0.0:8000", "an unspecified address"),
        ("http://0.1.2.3", "an unspecified address"),
        ("http://[::]", "an unspecified address"),
        ("http://100.64.0.1", "a shared (CGNAT) address"),
        ("http://100.127.255.254", "a shared (CGNAT) address"),
        ("http://192.0.2.1", "a documentation address"),
        ("http://198.18.0.1", "a benchmarking address"),
        ("http://[2001:db8::1]", "a non-public address"),
        ("http://[::ffff:127.0.0.1]/", "an IPv4-mapped address embedding 127.0.0.1, a loopback"),
        ("http://[::ffff:a9fe:a9fe]/", "embedding 169.254.169.254, a link-local"),
        ("http://[::ffff:10.1.1.1]/", "an IPv4-mapped address embedding 10.1.1.1, a private"),
        ("http://[::127.0.0.1]/", "an IPv4-compatible (deprecated) address"),
        ("http://[::8.8.8.8]/", "an IPv4-compatible (deprecated) address"),
        ("http://[::ffff:0:127.0.0.1]/", "an IPv4-translated address"),
        ("http://[64:ff9b::7f00:1]/", "a NAT64 address embedding 127.0.0.1, a loopback"),
        ("http://[64:ff9b::10.0.0.1]/", "a NAT64 address embedding 10.0.0.1, a private"),
        ("http://[64:ff9b:1::a9fe:a9fe]/", "a local-use NAT64 address embedding 169.254.169.254"),
        ("http://[64:ff9b:1:a9fe:a9:fe00::]/", "a local-use NAT64 address embedding 169.254"),
        ("http://[64:ff9b:1:1234:5678::1]/", "no recognisable embedded IPv4 address"),
        ("http://[2002:7f00:1::1]/", "a 6to4 address embedding 127.0.0.1, a loopback"),
        ("http://[2002:c0a8:101::1]/", "a 6to4 address embedding 192.168.1.1, a private"),
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "a Teredo address"),
    ],
)
def test_non_public_addresses_are_refused(url: str, why: str) -> None:
    message = refused(url)
    assert why in message
    assert message.startswith("Upstream host ")


def test_the_local_nat64_48_layout_is_decoded() -> None:
    # RFC 6052 /48: IPv4 bits 0-15 at 48-63, bits 16-31 at 72-87, the u octet between is zero.
    address = ipaddress.IPv6Address("64:ff9b:1:a9fe:a9:fe00::")
    assert refusal_reason(address) == (
        "a local-use NAT64 address embedding 169.254.169.254, "
        "a link-local (cloud metadata service) address"
    )
    public = ipaddress.IPv6Address("64:ff9b:1:808:8:800::")
    assert refusal_reason(public) is None


def test_refusal_names_the_host_and_the_address(dns: Callable[..., list[str]]) -> None:
    dns(internal_example=["10.0.0.5"])
    assert refused("https://internal.example/v1") == (
        "Upstream host internal.example resolves to 10.0.0.5, a private address."
    )
    assert refused("http://127.0.0.1:9000") == "Upstream host 127.0.0.1 is a loopback address."


def test_localhost_resolves_to_loopback_and_is_refused() -> None:
    assert "a loopback address" in refused("http://localhost:8000/v1")


def test_one_private_address_among_public_ones_is_refused(dns: Callable[..., list[str]]) -> None:
    dns(mixed_example=[PUBLIC, "10.0.0.5"], mixed6_example=[PUBLIC, "fd00::1"])
    assert "resolves to 10.0.0.5, a private address" in refused("https://mixed.example")
    assert "resolves to fd00::1" in refused("https://mixed6.example")
    with pytest.raises(EgressRefused):
        check_host("mixed.example", allowed=())


def test_rebinding_is_caught_at_connect_time(dns: Callable[..., list[str]]) -> None:
    dns(api_example=[PUBLIC])
    assert validate_api_base("https://api.example/v1", allowed=()) == "https://api.example/v1"
    assert check_host("api.example", allowed=()) == [PUBLIC]
    dns(api_example=["169.254.169.254"])  # the record changed after the save
    with pytest.raises(EgressRefused, match="cloud metadata"):
        check_host("api.example", allowed=())


def test_unresolvable_hosts_are_refused(dns: Callable[..., list[str]]) -> None:
    dns()
    assert refused("https://nowhere.example/v1") == (
        "Upstream host nowhere.example: cannot resolve it."
    )
    with pytest.raises(EgressRefused, match="cannot resolve"):
        check_host("nowhere.example", allowed=("nowhere.example",))


def test_check_host_returns_every_address(dns: Callable[..., list[str]]) -> None:
    dns(multi_example=[PUBLIC, "2606:4700:4700::1111", PUBLIC])
    assert check_host("multi.example", allowed=()) == [PUBLIC, "2606:4700:4700::1111"]
    assert check_host("[2606:4700:4700::1111]", allowed=()) == ["2606:4700:4700::1111"]
    assert check_host("8.8.8.8", allowed=()) == ["8.8.8.8"]


# --- odd spellings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0x7F000001/",
        "http://017700000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://127.0.1/",
        "http://127.000.000.001/",
        "http://0x7f.0x0.0x0.0x1/",
    ],
)
def test_numeric_ipv4_spellings_of_loopback_are_refused(url: str) -> None:
    message = refused(url)
    assert "non-standard spelling of 127.0.0.1, a loopback address" in message
    # Even an allow-listed address must be written plainly: names that connect as numbers
    # defeat the allow-list and the audit log.
    assert "non-standard spelling" in refused(url, allowed=("127.0.0.1", "127.0.0.0/8"))


def test_numeric_spellings_are_refused_at_connect_time_too() -> None:
    for host in ("2130706433", "0x7f.1", "017700000001", "3232235777", "0xa9fea9fe"):
        with pytest.raises(EgressRefused, match="non-standard spelling"):
            check_host(host, allowed=())


def test_a_public_numeric_spelling_is_refused_as_well() -> None:
    assert "non-standard spelling of 8.8.8.8, a public address" in refused("http://134744072/")


def test_names_that_merely_start_with_digits_or_hex_are_names(
    dns: Callable[..., list[str]],
) -> None:
    dns(**{"0x7f_example": [PUBLIC], "1_example": [PUBLIC]})
    assert validate_api_base("https://0x7f.example", allowed=()) == "https://0x7f.example"
    assert validate_api_base("https://1.example", allowed=()) == "https://1.example"


# --- URL shape ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("file:///etc/passwd", "must use http or https, not file"),
        ("gopher://127.0.0.1:70/_x", "must use http or https, not gopher"),
        ("ftp://8.8.8.8/", "must use http or https, not ftp"),
        ("ws://8.8.8.8/", "must use http or https"),
        ("javascript:alert(1)", "must use http or https"),
        ("//8.8.8.8/v1", "must use http or https, not nothing"),
        ("8.8.8.8/v1", "must use http or https"),
        ("", "is empty"),
        ("http://user:pass@8.8.8.8/v1", "must not contain credentials"),
        ("http://user@8.8.8.8/v1", "must not contain credentials"),
        ("http://8.8.8.8@127.0.0.1/", "must not contain credentials"),
        ("http://8.8.8.8\\@127.0.0.1/", "'\\'"),
        ("http://8.8.8.8/v1\r\nHost: x", "control characters"),
        ("http://8.8.8.8\t/v1", "control characters"),
        ("http://exa mple.com/", "whitespace"),
        ("https://8.8.8.8/v1#frag", "must not have a fragment"),
        ("https://8.8.8.8/v1#", "must not have a fragment"),
        ("https://8.8.8.8/v1?api-version=1", "must not have a query"),
        ("http://", "has no host"),
        ("http:///v1", "has no host"),
        ("https://:443/v1", "has no host"),
        ("http://8.8.8.8:0/", "between 1 and 65535, not 0"),
        ("http://8.8.8.8:65536/", "between 1 and 65535, not 65536"),
        ("http://8.8.8.8:99999/", "between 1 and 65535"),
        ("http://8.8.8.8:123456/", "invalid host or port"),
        ("http://8.8.8.8:http/", "invalid host or port"),
        ("http://8.8.8.8:/", "invalid host or port"),
        ("http://::1/", "invalid host or port"),
        ("http://[::1/", "not a valid URL"),
        ("http://exa%6dple.com/", "not a valid host name"),
        ("http://a..b/", "not a valid host name"),
        ("http://.", "has no host"),
    ],
)
def test_malformed_urls_are_refused(url: str, fragment: str) -> None:
    assert fragment in refused(url)


# --- the allow-list ----------------------------------------------------------------------------


def test_allow_list_by_name() -> None:
    assert validate_api_base("http://localhost:8000/v1/", allowed=("localhost",)) == (
        "http://localhost:8000/v1"
    )
    assert validate_api_base("http://LocalHost.:8000", allowed=(" LOCALHOST. ",)) == (
        "http://localhost:8000"
    )
    assert "127.0.0.1" in check_host("localhost", allowed=("localhost",))


def test_allow_list_by_name_does_not_cover_other_names(dns: Callable[..., list[str]]) -> None:
    dns(other_internal=["10.0.0.9"])
    assert "a private address" in refused("http://other.internal", allowed=("llm.internal",))


def test_allow_list_by_ip() -> None:
    for url, allowed in [
        ("http://127.0.0.1:9000", "127.0.0.1"),
        ("http://[::1]:9000", "::1"),
        ("http://[::1]:9000", "[::1]"),
        ("http://[::ffff:127.0.0.1]:9000", "127.0.0.1"),  # the mapped form reaches the same host
        ("http://169.254.169.254", "169.254.169.254"),
    ]:
        assert validate_api_base(url, allowed=(allowed,)) == url
    assert "loopback" in refused("http://127.0.0.2", allowed=("127.0.0.1",))
    assert set(check_host("localhost", allowed=("127.0.0.1", "::1"))) <= {"127.0.0.1", "::1"}


def test_allow_list_by_ip_covers_what_a_name_resolves_to(dns: Callable[..., list[str]]) -> None:
    dns(llm_internal=["10.0.0.8", "10.0.0.9"])
    assert check_host("llm.internal", allowed=("10.0.0.0/24",)) == ["10.0.0.8", "10.0.0.9"]
    # Every address must be covered, not just one.
    assert "10.0.0.9" in str(_refusal(lambda: check_host("llm.internal", allowed=("10.0.0.8",))))


def test_allow_list_by_cidr() -> None:
    assert validate_api_base("http://10.0.0.8:8000/v1", allowed=("10.0.0.0/8",)) == (
        "http://10.0.0.8:8000/v1"
    )
    assert validate_api_base("http://[fd00::5]", allowed=("fd00::/8",)) == "http://[fd00::5]"
    assert validate_api_base("http://10.1.2.3", allowed=("10.1.2.0/255.255.255.0",))
    assert "a private address" in refused("http://10.1.2.3", allowed=("10.0.0.0/24",))
    assert "a private address" in refused("http://10.1.2.3", allowed=("fd00::/8", ""))


def _refusal(call: Callable[[], object]) -> EgressRefused:
    with pytest.raises(EgressRefused) as info:
        call()
    return info.value


def test_egress_refused_is_a_value_error() -> None:
    assert issubclass(EgressRefused, ValueError)


# --- settings ----------------------------------------------------------------------------------


def test_allowed_upstreams_reads_settings(settings: Any) -> None:
    settings.ALLOWED_UPSTREAM_HOSTS = ["llm.internal", " 10.0.0.0/8 ", "", "::1"]
    assert allowed_upstreams() == ("llm.internal", "10.0.0.0/8", "::1")
    settings.ALLOWED_UPSTREAM_HOSTS = []
    assert allowed_upstreams() == ()
    del settings.ALLOWED_UPSTREAM_HOSTS
    assert allowed_upstreams() == ()
