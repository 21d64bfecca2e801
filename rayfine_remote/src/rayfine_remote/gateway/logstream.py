"""Streaming a container's output to a client as it is written, until the container stops.

The runtime's ``follow_logs`` blocks, so it runs in a worker thread that
hands each line to the event loop.  A client that goes away stops the
stream at the next line (a thread blocked on a silent container cannot be
interrupted sooner; it ends when the container does).  Each client may
hold :attr:`~.tokens.Client.max_followers` streams at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import TYPE_CHECKING, Callable

from rayfine_core import errors

from ..errors import QuotaExceededError
from . import asgi
from .asgi import Receive, Send
from .table import Env
from .tokens import Client

if TYPE_CHECKING:
    from .app import Gateway

_QUEUE_LINES = 1000


async def follow(
    gateway: Gateway, client: Client, env: Env, tail: int, receive: Receive, send: Send
) -> None:
    """Answer with the container's last ``tail`` lines, then each new line, until it stops."""
    held = gateway.followers.get(client.name, 0)
    if held >= client.max_followers:
        raise QuotaExceededError(
            f"Client {client.name!r} follows {held} log streams, its quota"
            f" (max_followers={client.max_followers})."
        )
    assert env.handle is not None
    await asgi.read_body(receive, 64 * 1024)  # the request, so that what follows is the hang-up
    gateway.followers[client.name] = held + 1
    lines: asyncio.Queue[bytes] = asyncio.Queue(_QUEUE_LINES)
    gone = threading.Event()
    pump = _pump(gateway, env.handle.id, tail, lines, gone, asyncio.get_running_loop())
    pumping = asyncio.ensure_future(gateway.engine.run(pump))
    watcher = asyncio.ensure_future(asgi.hangup(receive))
    try:
        await asgi.start_stream(send, b"text/plain; charset=utf-8")
        while True:
            getter = asyncio.ensure_future(lines.get())
            await asyncio.wait({getter, pumping, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await asgi.send_piece(send, getter.result())
                continue
            getter.cancel()
            if watcher.done():
                return
            while not lines.empty():
                await asgi.send_piece(send, lines.get_nowait())
            await asgi.end_stream(send)
            return
    finally:
        gone.set()
        watcher.cancel()
        gateway.followers[client.name] -= 1


def _pump(
    gateway: Gateway,
    container_id: str,
    tail: int,
    lines: asyncio.Queue[bytes],
    gone: threading.Event,
    loop: asyncio.AbstractEventLoop,
) -> Callable[[], None]:
    """The worker thread's job: read the runtime's stream into ``lines`` until it ends or ``gone``."""
    runtime = gateway.engine.runtime

    def run() -> None:
        try:
            for line in runtime.follow_logs(container_id, tail):
                queued = asyncio.run_coroutine_threadsafe(lines.put(line.encode()), loop)
                while True:  # wait while the client is slow, but not for one that left
                    try:
                        queued.result(timeout=1.0)
                        break
                    except concurrent.futures.TimeoutError:
                        if gone.is_set():
                            queued.cancel()
                            return
                if gone.is_set():
                    return
        except errors.RayfineError:
            pass  # the stream ends; the client asks the state if it wants to know why

    return run
