"""Which IP addresses an environment's egress may never reach, and which only when allowed.

Python's ``ipaddress`` flags (``is_private``, ``is_global``) changed between
3.9 and 3.13, so the ranges are spelled out here: the same input gives the
same decision on every Python.  IPv6 forms that carry an IPv4 address
(IPv4-mapped, NAT64, 6to4) are judged by the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Optional, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# Reason -> ranges that are refused whatever the policy says: the host itself,
# cloud metadata services (169.254.169.254), and addresses that are not unicast.
_ALWAYS_REFUSED: dict[str, tuple[str, ...]] = {
    "address_loopback": ("127.0.0.0/8", "::1/128"),
    "address_unspecified": ("0.0.0.0/8", "::/128"),
    "address_link_local": ("169.254.0.0/16", "fe80::/10"),
    "address_multicast": ("224.0.0.0/4", "ff00::/8"),
    "address_reserved": (
        "240.0.0.0/4",  # includes 255.255.255.255
        "::/96",  # deprecated IPv4-compatible addresses
        "100::/64",  # discard-only
        "2001::/32",  # Teredo: tunnels through a relay we cannot judge
        "fec0::/10",  # deprecated site-local
    ),
}

# Ranges that are not on the public internet: the host's LAN, other containers
# (docker0 is 172.17.0.0/16), a VPC.  Refused unless the policy allows them.
# Documentation and benchmarking ranges are here too: hosts do use them for
# real networks (this project's development VM sits on 192.0.2.0/24).
_PRIVATE: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",  # carrier-grade NAT
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # TEST-NET-1
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # TEST-NET-2
    "203.0.113.0/24",  # TEST-NET-3
    "fc00::/7",  # unique local
    "2001:db8::/32",  # documentation
)

_REFUSED_NETS = [
    (reason, ipaddress.ip_network(net)) for reason, nets in _ALWAYS_REFUSED.items() for net in nets
]
PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in _PRIVATE)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_ip(text: str) -> Optional[IPAddress]:
    """The address ``text`` spells, or None if it is not an IP literal.

    Besides the canonical forms this accepts what ``inet_aton`` (and so
    ``getaddrinfo``) accepts, e.g. ``127.1``, ``0x7f.0.0.1`` or ``2130706433``:
    such a name must be judged as the address it really is.
    """
    text = text.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and all(c in "0123456789abcdefxABCDEFX." for c in text) and text[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), else the address itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return address


def refused_reason(address: IPAddress) -> Optional[str]:
    """Why ``address`` may never be reached (e.g. ``"address_loopback"``), or None."""
    for candidate in {address, embedded_ipv4(address)}:
        for reason, net in _REFUSED_NETS:
            if candidate.version == net.version and candidate in net:
                return reason
    return None


def is_private(address: IPAddress) -> bool:
    """Whether ``address`` (or the IPv4 address it carries) lies in a non-public range."""
    candidate = embedded_ipv4(address)
    return any(candidate.version == n.version and candidate in n for n in PRIVATE_NETWORKS)


def in_networks(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    candidate = embedded_ipv4(address)
    return any(candidate.version == n.version and candidate in n for n in networks)


def overlaps_refused(network: IPNetwork) -> Optional[str]:
    """The reason of an always-refused range that ``network`` overlaps, or None."""
    for reason, net in _REFUSED_NETS:
        if network.version == net.version and network.overlaps(net):  # type: ignore[arg-type]
            return reason
    return None


def is_this_host(address: IPAddress) -> bool:
    """Whether ``address`` belongs to one of this host's own interfaces.

    A listed name resolving to the host's own (maybe public) address would
    reach every service listening on 0.0.0.0.  Asking the kernel which
    source address it would use sends no packet: for a local destination
    the source is the destination itself.
    """
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.connect((str(address), 9))
        source = probe.getsockname()[0]
    except OSError:
        return False  # no route: the connect attempt will fail on its own
    finally:
        probe.close()
    return ipaddress.ip_address(source.split("%", 1)[0]) == address
