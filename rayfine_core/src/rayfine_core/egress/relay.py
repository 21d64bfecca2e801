"""Relay bytes between a proxy client and its target, once the request was judged.

A ``CONNECT`` tunnel is relayed only after its first client bytes pass the
TLS server-name check; a plain-HTTP request right away.  Each direction is a
plain read-then-write loop; one timer per connection closes it when nothing
moved for the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .http_head import ProxyRequest
from .limits import ProxyLimits
from .stats import EnvCounters
from .tls import looks_like_tls, read_client_hello

CHUNK = 64 * 1024


@dataclass
class Link:
    """Both ends of a relayed connection, its counters, and when a byte last moved."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    up_reader: asyncio.StreamReader
    up_writer: asyncio.StreamWriter
    counters: EnvCounters
    last: float = field(default_factory=time.monotonic)


def watch_idle(link: Link, idle: float) -> Callable[[], None]:
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


async def relay_tunnel(link: Link, request: ProxyRequest, limits: ProxyLimits) -> None:
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
            await relay(link, first, down)
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


async def relay(link: Link, first: bytes, down: Optional[asyncio.Future[None]] = None) -> None:
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


def no_delay(writer: asyncio.StreamWriter) -> None:
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


async def _pump(link: Link, outbound: bool) -> None:
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
