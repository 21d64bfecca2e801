"""Small raw clients for the egress proxy's Unix socket (tests speak the protocol by hand)."""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path
from typing import Any, Optional, Union

Address = Union[str, tuple[str, int]]


def connect(address: Address, timeout: float = 10) -> socket.socket:
    """A connection to the proxy's Unix socket (a path) or to a forwarder (host, port)."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(address)
    return sock


def read_all(sock: Union[socket.socket, ssl.SSLSocket]) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return out
        if not chunk:
            return out
        out += chunk


def read_head(sock: socket.socket) -> bytes:
    """Bytes up to and including the end of a response head (byte by byte: nothing more)."""
    out = b""
    while not out.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        out += chunk
    return out


def refusal(response: bytes) -> tuple[int, Optional[str]]:
    """Status code and ``X-Rayfine-Egress`` reason of a proxy answer (0 if there is none)."""
    if not response.startswith(b"HTTP/1.1 "):
        return 0, None
    status = int(response[9:12])
    for line in response.split(b"\r\n"):
        if line.lower().startswith(b"x-rayfine-egress:"):
            return status, line.split(b":", 1)[1].strip().decode()
    return status, None


def ask(address: Address, request: bytes) -> tuple[int, Optional[str]]:
    """Send ``request`` and judge the proxy's answer."""
    with connect(address) as sock:
        sock.sendall(request)
        return refusal(read_all(sock))


def open_tunnel(address: Address, host: str, port: int) -> socket.socket:
    """A CONNECT tunnel; raises AssertionError with the answer if it is refused."""
    sock = connect(address)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = read_head(sock)
    if not head.startswith(b"HTTP/1.1 200"):
        sock.close()
        raise AssertionError(f"tunnel refused: {head!r}")
    return sock


def https_get(
    address: Address,
    host: str,
    port: int,
    cafile: Path,
    path: str = "/",
    server_name: Optional[str] = None,
    body: bytes = b"",
) -> dict[str, Any]:
    """GET (or POST ``body``) over TLS through a tunnel; the fake server's JSON answer."""
    sock = open_tunnel(address, host, port)
    context = ssl.create_default_context(cafile=str(cafile))
    with context.wrap_socket(sock, server_hostname=server_name or host) as tls:
        method = "POST" if body else "GET"
        tls.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        return parse_json_response(read_all(tls))


def parse_json_response(response: bytes) -> dict[str, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"), head
    return json.loads(body)  # type: ignore[no-any-return]
