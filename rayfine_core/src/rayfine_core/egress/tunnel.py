"""Serve one connection to the egress proxy: judge the request, connect it, relay bytes.

Every connection ends in exactly one counted decision: ``allow`` (the
target was reached and, for a tunnel, the first bytes passed the TLS
check), ``deny`` (the policy or the request's form refused it) or ``fail``
(allowed, but the name did not resolve or the target did not answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import addresses
from .http_head import BadRequest, ProxyRequest, parse_request
from .policy import EgressPolicy
from .resolver import ResolveError, Resolver
from .stats import EnvCounters, printable
from .tls import looks_like_tls, read_client_hello

CHUNK = 64 * 1024


@dataclass(frozen=True)
class ProxyLimits:
    """Bounds on what one environment can make the proxy do.

    :param max_connections: open connections per environment; more are refused (503).
    :param max_total_connections: open connections over all environments of this proxy.
    :param head_timeout: seconds for the request head, and for a TLS ClientHello once begun.
    :param connect_timeout: seconds to connect to the target, all its addresses together.
    :param idle_timeout: a connection with no byte in either direction for this long is closed.
    :param max_head_bytes: request line and headers together; more is refused (431).
    """

    max_connections: int = 64
    max_total_connections: int = 1024
    head_timeout: float = 10.0
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_head_bytes: int = 16 * 1024


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
    link = _Link(reader, writer, up_reader, up_writer, counters)
    stop_watching = _watch_idle(link, limits.idle_timeout)
    try:
        if request.connect:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await _tunnel(link, request, limits)
        else:
            counters.decided("allow", host, port, "ok")
            await _relay(link, request.upstream_head + rest)
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
            _no_delay(up_writer)
            return up_reader, up_writer
        except asyncio.TimeoutError:
            timed_out = True
        except OSError:
            continue
    raise _Failed(504, "connect_timeout") if timed_out else _Failed(502, "connect_failed")


@dataclass
class _Link:
    """Both ends of a relayed connection, its counters, and when a byte last moved."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    up_reader: asyncio.StreamReader
    up_writer: asyncio.StreamWriter
    counters: EnvCounters
    last: float = field(default_factory=time.monotonic)


def _watch_idle(link: _Link, idle: float) -> Callable[[], None]:
    """Cancel the current task (the connection) once no byte moved either way for ``idle`` s.

    One timer per connection instead of a timeout on every read: a relayed
    chunk then costs a read and a write, nothing more.  Returns the function
    that stops the watch.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    handles: list[asyncio.TimerHandle] = []

    def check() -> None:
        remaining = link.last + idle - time.monotonic()
        if remaining > 0:
            handles[0] = loop.call_later(remaining, check)
        elif task is not None:
            task.cancel()

    handles.append(loop.call_later(idle, check))
    return lambda: handles[0].cancel()


async def _tunnel(link: _Link, request: ProxyRequest, limits: ProxyLimits) -> None:
    """Relay a CONNECT tunnel once its first client bytes pass the TLS server-name check.

    The target may speak first (on ports other than 443), so its bytes flow
    to the client while the client's first bytes are awaited.
    """
    counters = link.counters
    down = asyncio.ensure_future(_pump(link, outbound=False))
    judge = asyncio.ensure_future(_first_bytes(link.reader, request, limits))
    decided = False
    try:
        await asyncio.wait(
            {judge, down}, timeout=limits.idle_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if not judge.done():
            return  # the client never spoke: counted as allowed below
        first, reason = judge.result()
        decided = True
        if reason:
            counters.decided("deny", request.host, request.port, reason)
            return
        counters.decided("allow", request.host, request.port, "ok")
        if first:
            await _relay(link, first, down)
    finally:
        if not decided:
            counters.decided("allow", request.host, request.port, "no_client_data")
        _discard(judge, down)


async def _first_bytes(
    reader: asyncio.StreamReader, request: ProxyRequest, limits: ProxyLimits
) -> tuple[bytes, Optional[str]]:
    """The client's first bytes in a tunnel and why they are refused (None: they pass)."""
    try:
        data = await reader.read(CHUNK)
    except OSError:
        return b"", None
    if not data or (request.port != 443 and not looks_like_tls(data)):
        return data, None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.head_timeout
    while True:
        hello = read_client_hello(data)
        if hello.status == "ok":
            if hello.server_name is not None and hello.server_name != request.host:
                return data, "sni_mismatch"
            return data, None
        if hello.status != "more":
            return data, "not_tls" if hello.status == "not_tls" else "bad_tls"
        try:
            chunk = await asyncio.wait_for(reader.read(CHUNK), deadline - loop.time())
        except asyncio.TimeoutError:
            return data, "tls_timeout"
        except OSError:
            return data, "bad_tls"
        if not chunk:
            return data, "bad_tls"
        data += chunk


async def _relay(link: _Link, first: bytes, down: Optional[asyncio.Future[None]] = None) -> None:
    """Copy bytes both ways until both sides are done; a reset on either side ends both."""
    if first:
        link.up_writer.write(first)
        link.counters.transferred(len(first), 0)
    if down is None:
        down = asyncio.ensure_future(_pump(link, outbound=False))
    up = asyncio.ensure_future(_pump(link, outbound=True))
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        _discard(up, down)


def _no_delay(writer: asyncio.StreamWriter) -> None:
    """Send small writes at once (asyncio skips sockets whose proto field is 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _discard(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks``; an error one of them already ended with is expected, not news."""
    for task in tasks:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def _pump(link: _Link, outbound: bool) -> None:
    """Copy one direction until EOF, passed on as a half-close."""
    src, dst = (link.reader, link.up_writer) if outbound else (link.up_reader, link.writer)
    while True:
        chunk = await src.read(CHUNK)
        if not chunk:
            if dst.can_write_eof():
                dst.write_eof()
            return
        link.last = time.monotonic()
        dst.write(chunk)
        if outbound:
            link.counters.transferred(len(chunk), 0)
        else:
            link.counters.transferred(0, len(chunk))
        await dst.drain()


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
