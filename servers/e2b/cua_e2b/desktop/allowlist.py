"""A desktop's network allowlist: where its egress proxy (`desktop/egress.py`) may connect to.

An entry is a host name (`example.com`), a wildcard (`*.example.com`: every name below it, not
the name itself) or an IP address (`203.0.113.7`, `[2001:db8::1]`), with an optional port
(`example.com:8443`); without one it allows ports 80 and 443. Names are matched as lowercase DNS
names (IDNA for non-ASCII), never by the addresses they resolve to. An address the target
resolves to must be public, or be on the allowlist itself: a private, loopback or reserved
address is reached only when it is listed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_PORTS = frozenset({80, 443})  # what an entry without a port allows
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


@dataclass(frozen=True, slots=True)
class Rule:
    """One allowlist entry: a lowercase name (the parent name when `wildcard`: `*.name` allows
    every name below it, not the name itself) or an IP address; `port` None allows 80 and 443."""

    target: str | IPAddress
    port: int | None = None
    wildcard: bool = False

    def admits(self, target: str | IPAddress, port: int) -> bool:
        if port not in (DEFAULT_PORTS if self.port is None else (self.port,)):
            return False
        if self.wildcard:
            return isinstance(target, str) and target.endswith(f".{self.target}")
        return target == self.target


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Where a desktop may connect to. Empty: nowhere."""

    rules: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EgressPolicy:
        """Entries like `example.com`, `*.example.com`, `example.com:8443`, `203.0.113.7`,
        `127.0.0.1:8080`, `[2001:db8::1]:443`; ValueError names the first malformed one."""
        if isinstance(entries, str):
            raise TypeError("the egress allowlist is a list of entries, not one string")
        return cls(tuple(_rule(entry) for entry in entries))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def allows(self, host: str, port: int) -> bool:
        """Whether the target as asked (a name or an IP address) is on the allowlist."""
        target = _target(host)
        return target is not None and any(rule.admits(target, port) for rule in self.rules)

    def allows_address(self, address: IPAddress, port: int) -> bool:
        """Whether a target may be reached at `address`: any public address (its name was
        checked), any other only when the address itself is on the allowlist."""
        address = plain(address)
        return _public(address) or any(rule.admits(address, port) for rule in self.rules)


def split_host_port(text: str) -> tuple[str, str | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address: (host, port or None)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("an IPv6 address in brackets may only be followed by :port")
        return host, rest[1:] if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def parse_port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):
        raise ValueError(f"the port must be a number in 1-65535 (got {text!r})")
    return int(text)


def address_of(text: str) -> IPAddress | None:
    """`text` as an IP address (an IPv4-mapped one as IPv4), or None when it is not one."""
    try:
        return plain(ipaddress.ip_address(text))
    except ValueError:
        return None


def plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as IPv4 (it reaches the same host)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _rule(entry: str) -> Rule:
    text = entry.strip().lower()
    if not text:
        raise ValueError("an empty egress allowlist entry")
    if "/" in text or "@" in text or any(c.isspace() for c in text):
        raise ValueError(
            f"egress allowlist entry {entry!r}: give a host or host:port, without a scheme, "
            "a path or spaces (networks are not supported)"
        )
    try:
        host, port_text = split_host_port(text)
        port = None if port_text is None else parse_port(port_text)
    except ValueError as e:
        raise ValueError(f"egress allowlist entry {entry!r}: {e}") from e
    address = address_of(host)
    if address is not None:
        return Rule(address, port)
    wildcard = host.startswith("*.")
    name = _name(host[2:] if wildcard else host)
    if name is None:
        raise ValueError(
            f"egress allowlist entry {entry!r}: {host!r} is not a host name or an IP address "
            "(a wildcard is allowed only as the first label: *.example.com)"
        )
    return Rule(name, port, wildcard)


def _name(text: str) -> str | None:
    """`text` as a lowercase DNS name (IDNA for non-ASCII), or None when it is not one."""
    name = text.lower().removesuffix(".")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return None
    return name


def _target(host: str) -> str | IPAddress | None:
    host = host.removeprefix("[").removesuffix("]")
    address = address_of(host)
    return address if address is not None else _name(host)


def _public(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast
