"""A fake piece of the internet, run inside a test's network namespace.

    python fake_outside.py --cert C --key K

Serves on every address of the namespace: HTTP on 80 and 8080, HTTPS on
443 and 8443 (answering JSON with the Host header, the TLS server name the
client sent, and the address it was reached on), and on 2525 a protocol
where the server speaks first.  Prints ``ready`` once all listen.
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_sni = threading.local()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(len(self.rfile.read(length)))

    def _answer(self, received: int = 0) -> None:
        sni = None
        if isinstance(self.connection, ssl.SSLSocket):
            sni = getattr(self.connection, "rayfine_sni", None)
        body = json.dumps(
            {
                "server": self.connection.getsockname()[0],
                "port": self.connection.getsockname()[1],
                "host": self.headers.get("Host"),
                "sni": sni,
                "path": self.path,
                "received": received,
                "proxy_headers": [k for k in self.headers if k.lower().startswith("proxy-")],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class TLSServer(DualStackServer):
    def __init__(self, address: tuple[str, int], context: ssl.SSLContext) -> None:
        super().__init__(address, Handler)
        self.context = context

    def get_request(self) -> tuple[socket.socket, object]:
        raw, addr = self.socket.accept()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # the handshake too
        tls = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        return tls, addr

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            request.settimeout(10)
            request.do_handshake()  # type: ignore[attr-defined]
        except (OSError, ssl.SSLError):
            return
        super().finish_request(request, client_address)  # type: ignore[arg-type]


class BannerHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"220 fake.test ready\r\n")
        data = self.request.recv(100)
        self.request.sendall(b"250 got " + data)


class BannerServer(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def remember_sni(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        sock.rayfine_sni = name  # type: ignore[attr-defined]

    context.sni_callback = remember_sni  # type: ignore[assignment]
    return context


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    context = tls_context(args.cert, args.key)
    servers: list[socketserver.BaseServer] = [
        DualStackServer(("::", 80), Handler),
        DualStackServer(("::", 8080), Handler),
        TLSServer(("::", 443), context),
        TLSServer(("::", 8443), context),
        BannerServer(("::", 2525), BannerHandler),
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or kills us)


if __name__ == "__main__":
    main()
