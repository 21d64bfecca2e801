"""Helpers shared by the server tests: an in-process server, raw sockets, call helpers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, Dict, List, Optional

import httpx

from rayfine_server.config import ServerConfig
from rayfine_server.run import build_function_app
from rayfine_server.server import Server

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class RunningServer:
    """The real server on a Unix socket, its event loop in a background thread.

    env.py is imported here, in the calling thread, as ``python -m
    rayfine_server`` imports it before its loop starts.
    """

    def __init__(self, config: ServerConfig, grace: float = 0.5) -> None:
        self.config = config
        self.sock = str(config.uds)
        self.app, self.pool = build_function_app(config)
        self.loop = asyncio.new_event_loop()
        self.server = Server(config, self.app, grace=grace, close_grace=2.0)
        self._clients: List[Any] = []
        self._stop: Optional[asyncio.Future] = None
        self.exit_code: Optional[int] = None
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)
        self._thread.start()
        wait_for_socket(self.sock)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._stop = self.loop.create_future()
        self.exit_code = self.loop.run_until_complete(self.server.serve(self._stop))

    def client(self, token: Optional[str] = TOKEN, **options: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(
            transport=httpx.HTTPTransport(uds=self.sock),
            base_url="http://rayfine",
            headers=headers,
            timeout=options.pop("timeout", 30),
            **options,
        )
        self._clients.append(client)
        return client

    def async_client(self, token: Optional[str] = TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=self.sock),
            base_url="http://rayfine",
            headers=headers,
            timeout=30,
        )

    def run(self, coroutine: Any, timeout: float = 10) -> Any:
        """Run ``coroutine`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self.loop.call_soon_threadsafe(_resolve, self._stop)
            self._thread.join(15)
        for client in self._clients:
            client.close()
        self.pool.shutdown()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(0)


def wait_for_socket(path: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
                return
            except OSError:
                time.sleep(0.005)
    raise AssertionError(f"nothing listens on {path}")


def raw(path: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it (or timeout)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            pass
        return b"".join(chunks)


def request_bytes(
    method: str, path: str, body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None
) -> bytes:
    """One HTTP/1.1 request with the token, ready to send."""
    lines = [f"{method} {path} HTTP/1.1", "host: rayfine", f"authorization: Bearer {TOKEN}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def call(
    client: Any, method: str, *args: object, timeout: Optional[float] = None, **kwargs: object
) -> httpx.Response:
    """POST one call and return the response."""
    body: Dict[str, Any] = {"method": method, "args": list(args), "kwargs": kwargs}
    if timeout is not None:
        body["timeout"] = timeout
    return client.post("/call", json=body)


def error_of(response: httpx.Response) -> dict:
    """The ``error`` object of an error response."""
    return response.json()["error"]
