"""The egress allow-list: validated host patterns and the decisions they give.

A pattern is ``host``, ``*.domain``, an IP literal, or any of these with
``:port``.  Without a port a pattern allows 80 and 443 only.  ``*.domain``
matches every name below ``domain`` (not ``domain`` itself).  An IP target
is allowed only when that literal is listed; a listed name never allows an
IP target, nor the other way round.  Whatever the list says, resolved
addresses are judged too (see :mod:`.addresses`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

from ..errors import ValidationError
from . import addresses
from .addresses import IPAddress, IPNetwork

DEFAULT_PORTS = frozenset({80, 443})
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_PORT = re.compile(r"^[0-9]{1,5}$")


@dataclass(frozen=True)
class Rule:
    """One parsed pattern: an exact name, a ``*.`` suffix, or an address; and its ports."""

    host: str  # lower case, no trailing dot; for a wildcard, the suffix without "*."
    ports: frozenset[int]
    wildcard: bool = False
    address: Optional[IPAddress] = None

    def matches_host(self, host: str, address: Optional[IPAddress]) -> bool:
        if address is not None or self.address is not None:
            return address is not None and address == self.address
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host


def normalize_host(host: str) -> Optional[str]:
    """``host`` in lower case without a trailing dot, or None if it is not a valid DNS name."""
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253 or not name.isascii():
        return None
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return None
    if addresses.parse_ip(name) is not None or labels[-1].isdigit():
        return None  # numeric names are addresses in disguise (e.g. 2130706433 is 127.0.0.1)
    return name


def split_host_port(text: str) -> tuple[str, Optional[str]]:
    """Split ``host:port``, ``[v6]:port``, ``[v6]``, a bare IPv6 literal or ``host``."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return text, None
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            return text, None  # let the caller reject "[::1]x"
        return text[1:end], (rest[1:] if rest else None)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, port
    return text, None  # a name, or a bare IPv6 literal


def parse_port(text: str) -> Optional[int]:
    if not _PORT.match(text):
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def _is_standard_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_rule(pattern: str) -> Rule:
    """Parse one allow-list pattern; :class:`ValidationError` says what is wrong with it."""
    if not isinstance(pattern, str):
        raise ValidationError(
            f"egress pattern {pattern!r} must be a string such as 'api.example.com'"
        )
    text = pattern.strip()
    bad = f"egress pattern {pattern!r}"
    if "://" in text or "/" in text:
        raise ValidationError(
            f"{bad} is a URL; give the host only, e.g. 'api.example.com' or 'api.example.com:8443'"
        )
    host, port_text = split_host_port(text)
    ports = DEFAULT_PORTS
    if port_text is not None:
        port = parse_port(port_text)
        if port is None:
            raise ValidationError(f"{bad}: the port must be a number from 1 to 65535")
        ports = frozenset({port})
    address = addresses.parse_ip(host) if host[:1].isdigit() or ":" in host else None
    if address is not None:
        reason = addresses.refused_reason(address)
        if reason:
            raise ValidationError(
                f"{bad}: {address} is never reachable from an environment ({reason[8:]} address)"
            )
        if not _is_standard_ip(host):
            raise ValidationError(f"{bad}: write the address in its usual form, {address}")
        return Rule(host=str(address), ports=ports, address=address)
    if host == "*":
        raise ValidationError(
            f"{bad} would allow everything: that is the default bridge network, not an allow-list"
        )
    wildcard = host.startswith("*.")
    name = normalize_host(host[2:] if wildcard else host)
    if "*" in host and not wildcard:
        raise ValidationError(
            f"{bad}: '*' may only be the whole first label, as in '*.example.com'"
        )
    if name is None:
        raise ValidationError(
            f"{bad}: not a host name (letters, digits, '-' and '.'; IDNs in their xn-- form)"
        )
    if wildcard and "." not in name:
        raise ValidationError(f"{bad}: a wildcard over a top-level domain allows too much")
    if name == "localhost" or name.endswith(".localhost"):
        raise ValidationError(f"{bad}: the host's loopback is never reachable from an environment")
    return Rule(host=name, ports=ports, wildcard=wildcard)


def _parse_private(value: Union[bool, Sequence[str]]) -> tuple[bool, tuple[IPNetwork, ...]]:
    if isinstance(value, bool):
        return value, ()
    if isinstance(value, str):
        raise ValidationError("allow_private takes True/False or a list of networks, not a string")
    networks = []
    for item in value:
        try:
            net = ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise ValidationError(
                f"allow_private entry {item!r} is not a network such as '10.1.0.0/16'"
            ) from None
        reason = addresses.overlaps_refused(net)
        if reason:
            raise ValidationError(
                f"allow_private entry {item!r} overlaps a range that is never reachable"
                f" ({reason[8:]} addresses)"
            )
        networks.append(net)
    return False, tuple(networks)


@dataclass(frozen=True)
class EgressPolicy:
    """Where an environment may connect to, through Rayfine's egress proxy.

    :param allow: patterns such as ``"api.example.com"``, ``"*.models.example"``,
        ``"host:8443"``, ``"203.0.113.7"``, ``"[2001:db8::1]:8443"``.
    :param allow_private: ``True`` lets listed names resolve to private
        addresses (RFC 1918, CGNAT, ULA, documentation ranges); a list of
        networks (``["10.1.0.0/16"]``) allows only those.  Loopback,
        link-local (cloud metadata), multicast and unspecified addresses are
        refused whatever this says.
    """

    allow: Sequence[str]
    allow_private: Union[bool, Sequence[str]] = False
    rules: tuple[Rule, ...] = field(init=False, repr=False, compare=False)
    private_all: bool = field(init=False, repr=False, compare=False)
    private_networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.allow, str):
            raise ValidationError(
                f"egress must be a list of patterns, e.g. [{self.allow!r}], not a single string"
            )
        allow = tuple(self.allow)
        private = self.allow_private
        if not isinstance(private, bool) and not isinstance(private, str):
            private = tuple(str(p) for p in private)
        private_all, networks = _parse_private(private)
        object.__setattr__(self, "allow", allow)
        object.__setattr__(self, "allow_private", private)
        object.__setattr__(self, "rules", tuple(parse_rule(p) for p in allow))
        object.__setattr__(self, "private_all", private_all)
        object.__setattr__(self, "private_networks", networks)

    @classmethod
    def coerce(cls, value: Union[EgressPolicy, Iterable[str]]) -> EgressPolicy:
        """``value`` itself if it is a policy, else a policy allowing the listed patterns."""
        if isinstance(value, EgressPolicy):
            return value
        if isinstance(value, str):
            raise ValidationError(
                f"egress must be a list of patterns, e.g. [{value!r}], not a single string"
            )
        return cls(tuple(value))

    def check_target(self, host: str, port: int) -> Optional[str]:
        """None if the list allows ``host:port``, else the reason it does not.

        ``host`` is what the client asked for: a name or an IP literal.
        """
        address = addresses.parse_ip(host)
        name = "" if address is not None else normalize_host(host)
        if address is None and name is None:
            return "bad_host"
        by_host = [r for r in self.rules if r.matches_host(name or "", address)]
        if not by_host:
            return "ip_literal_not_listed" if address is not None else "not_in_allow_list"
        if not any(port in r.ports for r in by_host):
            return "port_not_allowed"
        if address is not None:
            return self.check_address(address)
        return None

    def check_address(self, address: IPAddress) -> Optional[str]:
        """None if a connection to ``address`` is allowed, else the reason it is not."""
        reason = addresses.refused_reason(address)
        if reason:
            return reason
        if any(r.address == address for r in self.rules):
            return None  # listed literally: the caller said so
        if addresses.is_private(address):
            if self.private_all or addresses.in_networks(address, self.private_networks):
                return None
            return "address_private"
        return None

    def to_args(self) -> list[str]:
        """Command-line arguments giving this policy to ``python -m rayfine_core.egress serve``."""
        args = [a for pattern in self.allow for a in ("--allow", pattern)]
        if self.private_all:
            args.append("--allow-private")
        args += [a for net in self.private_networks for a in ("--allow-private-net", str(net))]
        return args
