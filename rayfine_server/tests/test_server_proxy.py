"""Proxy mode: the app's own command as a child, behind the same token and limits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List

import httpx
import pytest

SOURCE_DIR = Path(__file__).resolve().parents[1] / "src"
TOKEN = "proxy-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# A small HTTP/1.1 app on the standard library: keep-alive, echo, chunked and
# close-delimited answers, a WebSocket-style upgrade, a way to exit, a slow start.
APP = r"""
import os, socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

time.sleep(float(os.environ.get("APP_DELAY", "0")))
print("app starting", flush=True)

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for part in (b"one,", b"two,", b"three"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/until-close":
            self.send_response(200)
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(b"all of it")
            self.close_connection = True
        elif self.path == "/upgrade":
            self.send_response(101)
            self.send_header("upgrade", "echo")
            self.send_header("connection", "upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(1024)
                if not data:
                    break
                self.connection.sendall(data.upper())
            self.close_connection = True
        elif self.path.startswith("/exit/"):
            self._send(200, b"bye")
            self.wfile.flush()
            print("exiting on request", flush=True)
            os._exit(int(self.path.rsplit("/", 1)[1]))
        else:
            seen = {k.lower(): v for k, v in self.headers.items()}
            body = repr(sorted(seen.items())).encode()
            self._send(200, body, [("x-pid", str(os.getpid()))])

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "42")
        self.end_headers()

    def do_POST(self):
        if self.headers.get("transfer-encoding") == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers["content-length"]))
        self._send(201, b"got " + str(len(data)).encode(), [("x-last", data[-5:].decode())])

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Proxy:
    def __init__(self, directory: Path, extra: Dict[str, str]) -> None:
        (directory / "app.py").write_text(APP)
        self.sock = str(directory / "s.sock")
        self.port = free_port()
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin"),
            "PYTHONPATH": str(SOURCE_DIR),
            "RAYFINE_UDS": self.sock,
            "RAYFINE_TOKEN": TOKEN,
            "RAYFINE_APP_PORT": str(self.port),
            "RAYFINE_APP_COMMAND": json.dumps(
                [sys.executable, str(directory / "app.py"), str(self.port)]
            ),
            **extra,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rayfine_server"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock):
            assert self.process.poll() is None and time.monotonic() < deadline, self.text
            time.sleep(0.01)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.decode(errors="replace"))

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def client(self, headers: Dict[str, str] = AUTH) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=self.sock),
            base_url="http://rayfine",
            headers=headers,
            timeout=10,
        )

    def wait_ready(self) -> httpx.Client:
        client = self.client()
        deadline = time.monotonic() + 10
        while client.get("/").status_code == 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return client

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(15)


@pytest.fixture
def proxy(short_dir) -> Iterator[Proxy]:
    running = Proxy(short_dir, {})
    yield running
    running.stop()


def test_app_starting_then_forwarded_with_the_token_kept_to_itself(short_dir):
    proxy = Proxy(short_dir, {"APP_DELAY": "1.0"})
    try:
        client = proxy.client()
        first = client.get("/")
        assert first.status_code == 503 and first.json()["error"]["kind"] == "app_starting"
        client = proxy.wait_ready()
        response = client.get("/anything?x=1", headers={"X-Custom": "kept"})
        assert response.status_code == 200
        seen = response.text
        assert "('x-custom', 'kept')" in seen
        assert f"('host', '127.0.0.1:{proxy.port}')" in seen
        assert TOKEN not in seen and "authorization" not in seen
        second = client.get("/")
        assert second.headers["x-pid"] == response.headers["x-pid"]
        assert proxy.client(headers={}).get("/").status_code == 401
        rf = proxy.client(headers={"X-Rayfine-Token": TOKEN, "Authorization": "Basic app-own"})
        assert "('authorization', 'Basic app-own')" in rf.get("/").text
    finally:
        assert proxy.stop() == 0
    assert "app starting" in proxy.text


def test_bodies_stream_both_ways(proxy):
    client = proxy.wait_ready()
    big = b"x" * (3 * 1024 * 1024) + b"tail!"
    response = client.post("/upload", content=big)
    assert (response.status_code, response.text, response.headers["x-last"]) == (
        201,
        f"got {len(big)}",
        "tail!",
    )

    def pieces():
        yield b"abc"
        yield b"defgh"

    response = client.post("/upload", content=pieces())
    assert (response.text, response.headers["x-last"]) == ("got 8", "defgh")
    assert client.get("/chunked").text == "one,two,three"
    until_close = client.get("/until-close")
    assert until_close.text == "all of it"
    assert until_close.headers["transfer-encoding"] == "chunked"  # re-framed: keep-alive survives
    head = client.head("/")
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "42", b"")
    assert client.get("/chunked").text == "one,two,three"  # the connection is still good


def test_upgrade_becomes_a_tunnel(proxy):
    proxy.wait_ready()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(proxy.sock)
        sock.sendall(
            f"GET /upgrade HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n"
            "connection: upgrade\r\nupgrade: echo\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1000)
        assert head.startswith(b"HTTP/1.1 101") and b"upgrade: echo" in head.lower()
        sock.sendall(b"hello")
        assert sock.recv(100) == b"HELLO"


def test_app_exit_is_reported_then_the_server_exits_with_its_code(proxy):
    client = proxy.wait_ready()
    assert client.get("/exit/3").text == "bye"
    time.sleep(0.3)
    answer = client.get("/")
    if answer.status_code == 503:  # the server may already be gone
        error = answer.json()["error"]
        assert error["kind"] == "env_load_failed" and "exited with code 3" in error["message"]
        assert "exiting on request" in error["traceback"]
    assert proxy.process.wait(10) == 3


def test_a_command_that_cannot_start(short_dir):
    proxy = Proxy(short_dir, {"RAYFINE_APP_COMMAND": '["/nonexistent/app"]'})
    answer = proxy.client().get("/")
    assert answer.status_code == 503
    assert "Could not start the app" in answer.json()["error"]["message"]
    assert proxy.process.wait(10) == 127


def test_sigterm_stops_the_app_too(proxy):
    client = proxy.wait_ready()
    app_pid = int(client.get("/").headers["x-pid"])
    assert proxy.stop() == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(app_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail("the app outlived the server")


def test_fastapi_app_when_available(short_dir):
    """The real thing, when FastAPI and uvicorn are installed (the repo's dev venv has them)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    (short_dir / "main.py").write_text(
        textwrap.dedent(
            """
            from fastapi import FastAPI
            app = FastAPI()

            @app.post("/evaluate")
            def evaluate(item: dict):
                return {"score": len(item.get("answer", ""))}
            """
        )
    )
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "main:app",
        "--port",
        str(port),
        "--app-dir",
        str(short_dir),
    ]
    proxy = Proxy(
        short_dir, {"RAYFINE_APP_COMMAND": json.dumps(command), "RAYFINE_APP_PORT": str(port)}
    )
    try:
        client = proxy.client()
        deadline = time.monotonic() + 20
        while (response := client.post("/evaluate", json={"answer": "Paris"})).status_code == 503:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert response.json() == {"score": 5}
    finally:
        assert proxy.stop() == 0
