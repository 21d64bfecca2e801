"""Serve one connection to the egress proxy: judge the request, connect it, relay bytes.

Every connection ends in exactly one counted decision: ``allow`` (the
target was reached and, for a tunnel, the first bytes passed the TLS
check), ``deny`` (the policy or the request's form refused it) or ``fail``
(allowed, but the name did not resolve or the target did not answer).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Callable

from . import addresses
from .http_head import BadRequest, ProxyRequest, parse_request
from .limits import ProxyLimits
from .policy import EgressPolicy
from .relay import CHUNK, Link, no_delay, relay, relay_tunnel, watch_idle
from .resolver import ResolveError, Resolver
from .stats import EnvCounters, printable


@dataclass
class Site:
    """One listening socket: whose it is, what it may reach, and its open connections."""

    path: str
    env_id: str
    policy: EgressPolicy
    counters: EnvCounters
    connections: set[asyncio.Task[None]] = field(default_factory=set)


@dataclass(frozen=True)
class Context:
    """What every connection of one proxy shares."""

    resolver: Resolver
    limits: ProxyLimits
    total_active: Callable[[], int]


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Failed(_Refused):
    pass


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, site: Site, ctx: Context
) -> None:
    """Handle one client connection from start to close; never raises."""
    limits = ctx.limits
    if (
        site.counters.snapshot().active >= limits.max_connections
        or ctx.total_active() >= limits.max_total_connections
    ):
        site.counters.decided("deny", "-", 0, "too_many_connections")
        await _answer(reader, writer, 503, "too_many_connections", "-", 0)
        writer.close()
        return
    site.counters.opened()
    task = asyncio.current_task()
    if task is not None:
        site.connections.add(task)
    try:
        await _serve(reader, writer, site, ctx)
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        pass  # either side went away; the decision, if any, is already counted
    finally:
        if task is not None:
            site.connections.discard(task)
        writer.close()
        site.counters.closed()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, site: Site, ctx: Context
) -> None:
    counters, limits = site.counters, ctx.limits
    host, port = "-", 0
    try:
        head, rest = await _read_head(reader, limits)
        if not head:
            return  # closed before sending a request: nothing to decide
        request = parse_request(head)
        host, port = request.host, request.port
        reason = site.policy.check_target(host, port)
        if reason:
            raise _Refused(403, reason)
        if request.connect and rest:
            raise _Refused(400, "data_before_tunnel")
        up_reader, up_writer = await _open_upstream(request, site.policy, ctx)
    except BadRequest as exc:
        host, port = exc.host or host, exc.port or port
        counters.decided("deny", host, port, exc.reason)
        await _answer(reader, writer, exc.status, exc.reason, host, port)
        return
    except _Refused as exc:
        counters.decided("fail" if isinstance(exc, _Failed) else "deny", host, port, exc.reason)
        await _answer(reader, writer, exc.status, exc.reason, host, port)
        return
    link = Link(reader, writer, up_reader, up_writer, counters)
    stop_watching = watch_idle(link, limits.idle_timeout)
    try:
        if request.connect:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await relay_tunnel(link, request, limits)
        else:
            counters.decided("allow", host, port, "ok")
            await relay(link, request.upstream_head + rest)
    finally:
        stop_watching()
        up_writer.close()


async def _read_head(reader: asyncio.StreamReader, limits: ProxyLimits) -> tuple[bytes, bytes]:
    """The request head (through CRLF CRLF) and any bytes after it; empty if the client left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.head_timeout
    buf = bytearray()
    while True:
        end = buf.find(b"\r\n\r\n", max(0, len(buf) - CHUNK - 3))
        if 0 <= end <= limits.max_head_bytes - 4:
            return bytes(buf[: end + 4]), bytes(buf[end + 4 :])
        if len(buf) >= limits.max_head_bytes:
            raise BadRequest(431, "header_too_large", "request head too large")
        try:
            chunk = await asyncio.wait_for(reader.read(CHUNK), deadline - loop.time())
        except asyncio.TimeoutError:
            raise BadRequest(408, "head_timeout", "request head not received in time") from None
        if not chunk:
            if buf:
                raise BadRequest(400, "bad_request", "connection closed inside the request head")
            return b"", b""
        buf += chunk


async def _open_upstream(
    request: ProxyRequest, policy: EgressPolicy, ctx: Context
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Resolve the target on the host, keep only addresses the policy allows, connect."""
    literal = addresses.parse_ip(request.host)
    if literal is not None:
        candidates = [literal]
    else:
        try:
            candidates = await ctx.resolver.resolve(request.host, request.port)
        except ResolveError:
            raise _Failed(502, "resolve_failed") from None
    allowed, refused = [], None
    for address in candidates:
        reason = policy.check_address(address)
        if reason is None and addresses.is_this_host(address):
            reason = "address_this_host"
        if reason is None:
            allowed.append(address)
        refused = refused or reason
    if not allowed:
        raise _Refused(403, refused or "no_address")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.limits.connect_timeout
    timed_out = False
    for address in allowed:
        remaining = deadline - loop.time()
        if remaining <= 0:
            timed_out = True
            break
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(str(address), request.port, limit=CHUNK), remaining
            )
            no_delay(up_writer)
            return up_reader, up_writer
        except asyncio.TimeoutError:
            timed_out = True
        except OSError:
            continue
    raise _Failed(504, "connect_timeout") if timed_out else _Failed(502, "connect_failed")


_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1024 * 1024


async def _answer(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    status: int,
    reason: str,
    host: str,
    port: int,
) -> None:
    """Send the client a short plain-text refusal, then end the connection gracefully.

    The client may still be sending (a huge header, a body): closing with
    unread input would make the kernel send a reset that can overtake the
    answer.  So: answer, half-close, and discard input for a moment.
    """
    titles = {
        400: "Bad Request",
        403: "Forbidden",
        408: "Request Timeout",
        431: "Request Header Fields Too Large",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }
    target = f"{printable(host)}:{port}" if port else "this request"
    body = f"rayfine egress: {target} refused ({reason})\n".encode()
    head = (
        f"HTTP/1.1 {status} {titles.get(status, 'Error')}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nX-Rayfine-Egress: {reason}\r\n\r\n"
    )
    try:
        writer.write(head.encode() + body)
        if writer.can_write_eof():
            writer.write_eof()
        await asyncio.wait_for(writer.drain(), 5)
        await asyncio.wait_for(_discard_input(reader), _LINGER_SECONDS)
    except (OSError, asyncio.TimeoutError):
        pass


async def _discard_input(reader: asyncio.StreamReader) -> None:
    seen = 0
    while seen < _LINGER_BYTES:
        chunk = await reader.read(CHUNK)
        if not chunk:
            return
        seen += len(chunk)
