"""Forward 127.0.0.1:3128 inside a container to Rayfine's egress socket (stdlib only, Python 3.9+).

The container has no network device; its only way out is the Unix socket
the host mounts at /run/rayfine/egress.sock, behind which Rayfine's egress
proxy checks every request against the environment's allow-list.  Tools
find the forwarder through ``HTTP_PROXY``/``HTTPS_PROXY``.  Each TCP
connection is piped, byte for byte, to a fresh connection on the socket;
all judging happens on the host, where the environment's code cannot reach.

    python3 egress_forward.py --socket /run/rayfine/egress.sock --port 3128

or, from the server's launcher before env.py is imported::

    import egress_forward
    egress_forward.start_from_env()   # no-op unless RAYFINE_EGRESS_SOCKET is set
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import threading
from typing import List, Optional, Set

DEFAULT_SOCKET = "/run/rayfine/egress.sock"
DEFAULT_PORT = 3128
CHUNK = 64 * 1024
_UNREACHABLE_BODY = b"rayfine egress: the host's egress proxy is not reachable\n"
_UNREACHABLE = (
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_UNREACHABLE_BODY), _UNREACHABLE_BODY)
)


class Forwarder:
    """A listening socket on 127.0.0.1 and the event loop (in a daemon thread) serving it."""

    def __init__(self, socket_path: str, port: int = DEFAULT_PORT, host: str = "127.0.0.1"):
        self.socket_path = socket_path
        # Bound here, in the caller's thread, so that a port in use fails loudly at once.
        self._listener = socket.create_server((host, port), backlog=128)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._writers: Set[asyncio.StreamWriter] = set()
        self._started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="rayfine-egress-forward", daemon=True
        )

    def start(self) -> Forwarder:
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, sock=self._listener, limit=CHUNK)
        )
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            # End every connection here, by closing its sockets: its task then returns
            # on its own.  Left to the garbage collector, the clean-up would run at a
            # random later point on a closed loop; cancelling the tasks makes some
            # Python versions log the cancellation as an error.
            for writer in list(self._writers):
                writer.close()
            pending = asyncio.all_tasks(self._loop)
            if pending:
                self._loop.run_until_complete(asyncio.wait(pending, timeout=2))
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(
                asyncio.gather(*asyncio.all_tasks(self._loop), return_exceptions=True)
            )
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio only sets TCP_NODELAY on sockets whose proto is IPPROTO_TCP, and
        # accepted sockets of create_server() have proto 0: without this, a TLS
        # answer after a session ticket waits out the client's 40 ms delayed ACK.
        _no_delay(writer)
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path, limit=CHUNK)
        except OSError:
            try:
                writer.write(_UNREACHABLE)
                await writer.drain()
            except OSError:
                pass
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            up_writer.close()
            self._writers.discard(writer)
            self._writers.discard(up_writer)


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close ``dst`` so the far side sees the end too."""
    try:
        while True:
            chunk = await src.read(CHUNK)
            if not chunk:
                if dst.can_write_eof():
                    dst.write_eof()
                return
            dst.write(chunk)
            await dst.drain()
    except OSError:
        dst.close()  # a reset on one side ends the other
        raise


def start_thread(socket_path: str = DEFAULT_SOCKET, port: int = DEFAULT_PORT) -> Forwarder:
    """Listen on 127.0.0.1:``port`` now and forward from a daemon thread; ``OSError`` if in use."""
    return Forwarder(socket_path, port).start()


def start_from_env() -> Optional[Forwarder]:
    """Start the forwarder if ``RAYFINE_EGRESS_SOCKET`` is set (port: ``RAYFINE_EGRESS_PORT``)."""
    path = os.environ.get("RAYFINE_EGRESS_SOCKET")
    if not path:
        return None
    port = int(os.environ.get("RAYFINE_EGRESS_PORT") or DEFAULT_PORT)
    try:
        return start_thread(path, port)
    except OSError as exc:
        raise OSError(
            f"rayfine egress: cannot listen on 127.0.0.1:{port} for the egress forwarder: {exc}."
            " Set RAYFINE_EGRESS_PORT to a free port."
        ) from exc


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default=DEFAULT_SOCKET)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        forwarder = start_thread(args.socket, args.port)
    except OSError as exc:
        print(f"egress_forward: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"egress_forward: 127.0.0.1:{forwarder.port} -> {args.socket}", flush=True)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    done.wait()
    forwarder.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
