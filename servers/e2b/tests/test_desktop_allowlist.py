"""The network allowlist of desktops alone: how entries are read, and what they admit."""

from __future__ import annotations

import ipaddress

import pytest
from cua_e2b.desktop.allowlist import EgressPolicy, Rule


def policy(*entries: str) -> EgressPolicy:
    return EgressPolicy.parse(list(entries))


def test_entries_are_read_case_insensitively_into_names_wildcards_and_addresses() -> None:
    parsed = policy(
        "Example.COM",
        "*.Example.org:8443",
        "127.0.0.1:8080",
        "[2001:DB8::1]:443",
        "2001:db8::2",
        "bücher.de.",
    )
    assert parsed.rules == (
        Rule("example.com"),
        Rule("example.org", 8443, wildcard=True),
        Rule(ipaddress.IPv4Address("127.0.0.1"), 8080),
        Rule(ipaddress.IPv6Address("2001:db8::1"), 443),
        Rule(ipaddress.IPv6Address("2001:db8::2")),
        Rule("xn--bcher-kva.de"),
    )
    assert not EgressPolicy.parse([])


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "  ",
        "http://example.com",
        "example.com/path",
        "example.com:0",
        "example.com:65536",
        "example.com:https",
        "example.com:",
        "foo.*.com",
        "*",
        "*.",
        "exa mple.com",
        "exa_mple..com",
        "[::1",
        "[::1]8080",
        "user@example.com",
        "-bad.example.com",
        "10.0.0.0/8",
    ],
)
def test_a_malformed_entry_is_a_clear_value_error(entry: str) -> None:
    with pytest.raises(ValueError, match="egress allowlist entry"):
        policy("example.com", entry)


def test_one_string_instead_of_a_list_is_refused() -> None:
    with pytest.raises(TypeError, match="a list of entries"):
        EgressPolicy.parse("example.com")


def test_a_bare_host_allows_ports_80_and_443_only_and_a_port_allows_only_itself() -> None:
    parsed = policy("example.com", "api.example.net:8443")
    assert parsed.allows("example.com", 80)
    assert parsed.allows("EXAMPLE.com.", 443)
    assert not parsed.allows("example.com", 8080)
    assert not parsed.allows("www.example.com", 443)
    assert parsed.allows("api.example.net", 8443)
    assert not parsed.allows("api.example.net", 443)
    assert not parsed.allows("example.net", 8443)


def test_a_wildcard_allows_names_below_it_not_itself_nor_look_alikes() -> None:
    parsed = policy("*.example.com")
    assert parsed.allows("www.example.com", 443)
    assert parsed.allows("a.b.Example.Com", 80)
    assert not parsed.allows("example.com", 443)
    assert not parsed.allows("badexample.com", 443)
    assert not parsed.allows("example.com.evil.net", 443)
    assert not parsed.allows("www.example.com", 22)


def test_addresses_match_addresses_only() -> None:
    parsed = policy("127.0.0.1:8080", "[::1]:9000", "example.com", "*.3.4")
    assert parsed.allows("127.0.0.1", 8080)
    assert parsed.allows("::ffff:127.0.0.1", 8080)  # the same host
    assert not parsed.allows("127.0.0.1", 80)
    assert not parsed.allows("localhost", 8080)
    assert parsed.allows("[::1]", 9000)
    assert parsed.allows("::1", 9000)
    assert not parsed.allows("93.184.216.34", 443)  # example.com's address is not example.com
    assert not parsed.allows("1.2.3.4", 443)  # a wildcard never matches an address
    assert not parsed.allows("exa mple.com", 80)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "0.0.0.0", "::1", "fe80::1",  # noqa: S104
     "fc00::1", "::ffff:127.0.0.1", "224.0.0.1", "100.64.0.1"],
)  # fmt: skip
def test_a_private_or_loopback_address_needs_an_entry_of_its_own(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not policy("example.com", "*.example.com").allows_address(ip, 443)
    plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
    entry = f"[{plain}]:443" if plain.version == 6 else f"{plain}:443"
    assert policy(entry).allows_address(ip, 443)
    assert not policy(entry).allows_address(ip, 80)


def test_a_public_address_passes_once_its_name_did() -> None:
    parsed = policy("example.com")
    assert parsed.allows_address(ipaddress.ip_address("93.184.216.34"), 443)
    assert parsed.allows_address(ipaddress.ip_address("2606:2800:220:1::1"), 443)
