"""Turn host names into addresses for the egress proxy: the host's DNS, or a fixed table.

DNS is resolved on the host, never in the container (which has no network):
the environment cannot pick the resolver, and every answer is judged by the
policy before a connection is made.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path
from typing import Iterable, Mapping, Protocol, Union

from ..errors import ValidationError
from .addresses import IPAddress


class ResolveError(Exception):
    """The name has no usable address (unknown name, DNS failure or timeout)."""


class Resolver(Protocol):
    """Anything with ``async resolve(host, port) -> list[address]``, tried in order."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]: ...


class SystemResolver:
    """The host's own resolver (``getaddrinfo``), bounded by ``timeout`` seconds."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), self.timeout
            )
        except asyncio.TimeoutError:
            raise ResolveError(f"resolving took longer than {self.timeout:g} s") from None
        except (OSError, UnicodeError) as exc:
            raise ResolveError(str(exc)) from None
        found: list[IPAddress] = []
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
                if address not in found:
                    found.append(address)
        if not found:
            raise ResolveError("no IPv4 or IPv6 address")
        return found


class StaticResolver:
    """A fixed name -> addresses table (tests; or pinning names to known addresses).

    Names not in the table fail unless ``fallback`` resolves them.
    """

    def __init__(
        self,
        table: Mapping[str, Union[str, Iterable[str]]],
        fallback: Union[Resolver, None] = None,
    ) -> None:
        self.table: dict[str, list[IPAddress]] = {}
        for name, value in table.items():
            values = [value] if isinstance(value, str) else list(value)
            try:
                self.table[name.lower().rstrip(".")] = [ipaddress.ip_address(v) for v in values]
            except ValueError:
                raise ValidationError(
                    f"resolve entry for {name!r}: {values!r} are not all IPs"
                ) from None
        self.fallback = fallback

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        found = self.table.get(host)
        if found:
            return list(found)
        if self.fallback is not None:
            return await self.fallback.resolve(host, port)
        raise ResolveError("name not in the resolver's table")


def from_hosts_file(path: str, fallback: Resolver) -> StaticResolver:
    """A table read from a hosts-style file (``address name...`` lines, ``#`` comments).

    ``RAYFINE_EGRESS_HOSTS`` names such a file to pin names to addresses for the
    egress proxy (an internal mirror, a test's fake host); other names go to ``fallback``.
    """
    table: dict[str, list[str]] = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValidationError(f"RAYFINE_EGRESS_HOSTS: cannot read {path}: {exc.strerror}") from None
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        for name in words[1:]:
            table.setdefault(name, []).append(words[0])
    return StaticResolver(table, fallback)
