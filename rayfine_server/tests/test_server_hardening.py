"""Findings of the security and reliability reviews, replayed against a real server process.

Each test names the finding it replays; each failed against the previous
(uvicorn/Starlette) server.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import httpx
import pytest

SOURCE_DIR = Path(__file__).resolve().parents[1] / "src"
TOKEN = "hardening-token-123"
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by an unprivileged user, unlike /root/.pyenv

ENV = """
    import os, subprocess, sys, time

    TOKEN_FILE_AT_IMPORT = os.path.exists(os.environ.get("RAYFINE_TOKEN_FILE") or "/nonexistent")

    class Actor:
        def environ_of_server(self) -> list:
            with open("/proc/self/environ", "rb") as own:
                mine = own.read().decode("latin-1")
            child = subprocess.run(
                [sys.executable, "-c", f"print(open('/proc/{os.getpid()}/environ','rb').read())"],
                capture_output=True, text=True,
            ).stdout
            return [mine, child, dict(os.environ), TOKEN_FILE_AT_IMPORT]

        def who(self) -> list:
            return [os.getuid(), os.environ.get("HOME")]

        def size(self, text: str) -> int:
            return len(text)

        def sleep(self, seconds: float) -> float:
            time.sleep(seconds)
            return seconds
"""


class Process:
    """``python -m rayfine_server`` on a Unix socket in ``directory``."""

    def __init__(
        self,
        directory: Path,
        settings: Dict[str, str],
        python: str = sys.executable,
        user: Optional[int] = None,
        nofile: Optional[int] = None,
        env_source: str = ENV,
    ) -> None:
        env_dir = directory / "env"
        env_dir.mkdir(exist_ok=True)
        (env_dir / "env.py").write_text(textwrap.dedent(env_source))
        self.sock = str(directory / "s.sock")
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(SOURCE_DIR),
            "RAYFINE_ENV_DIR": str(env_dir),
            "RAYFINE_UDS": self.sock,
            **settings,
        }

        def demote() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            if user is not None:
                os.setgroups([])
                os.setgid(user)
                os.setuid(user)

        self.process = subprocess.Popen(
            [python, "-m", "rayfine_server"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=demote,
        )
        self.output: List[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 20
        while not os.path.exists(self.sock):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"server did not start:\n{self.text}")
            time.sleep(0.01)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def text(self) -> str:
        return b"".join(self.output).decode(errors="replace")

    def client(self, **options: object) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=self.sock),
            base_url="http://rayfine",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
            **options,  # type: ignore[arg-type]
        )

    def call(self, method: str, *args: object) -> httpx.Response:
        with self.client() as client:
            return client.post("/call", json={"method": method, "args": list(args)})

    def status(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._reader.join(5)


@pytest.fixture
def world_dir(short_dir: Path) -> Iterator[Path]:
    """``short_dir``, usable by an unprivileged user too."""
    short_dir.chmod(0o777)
    yield short_dir


def test_token_is_gone_from_proc_environ(short_dir):
    """Finding: the token stayed readable in /proc/1/environ for env.py's subprocesses."""
    server = Process(short_dir, {"RAYFINE_TOKEN": TOKEN})
    try:
        mine, child, environ, _ = server.call("environ_of_server").json()["result"]
        assert TOKEN not in mine and TOKEN not in child and "RAYFINE_TOKEN" not in environ
    finally:
        assert server.stop() == 0


def test_token_file_is_unlinked_before_env_py_is_imported(short_dir):
    token_file = short_dir / "token"
    token_file.write_text(TOKEN)
    server = Process(short_dir, {"RAYFINE_TOKEN_FILE": str(token_file)})
    try:
        mine, child, environ, existed_at_import = server.call("environ_of_server").json()["result"]
        assert existed_at_import is False and not token_file.exists()
        assert TOKEN not in mine + child + json.dumps(environ)
    finally:
        server.stop()
    assert TOKEN not in server.text


def test_runs_as_an_unprivileged_user_without_home(world_dir):
    """Finding: the server ran as uid 0.  It must work as 10001 with HOME unset."""
    if os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("needs root to switch users, and a system python3")
    token_file = world_dir / "token"
    token_file.write_text(TOKEN)
    os.chown(token_file, 10001, 10001)
    server = Process(world_dir, {"RAYFINE_TOKEN_FILE": str(token_file)}, SYSTEM_PYTHON, user=10001)
    try:
        assert server.call("who").json() == {"result": [10001, None]}
        assert not token_file.exists()
    finally:
        assert server.stop() == 0, server.text


def post_raw(server: Process, body: bytes) -> bytes:
    head = f"POST /call HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n"
    head += f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(server.sock)
        sock.sendall(head.encode() + body)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_large_bodies_stay_within_a_few_times_their_size(short_dir):
    """Finding: a 60 MiB body (of tiny objects) drove the server to 1.7 GB."""
    server = Process(short_dir, {"RAYFINE_TOKEN": TOKEN})
    try:
        baseline = server.status("VmRSS")
        size = 60 * 1024 * 1024
        tiny = b'{"k":1},' * (size // 8)
        answer = post_raw(server, b'{"method": "size", "args": [[' + tiny + b"{}]]}")
        del tiny
        assert answer.startswith(b"HTTP/1.1 400") and b"JSON values" in answer
        text = b'{"method": "size", "args": ["' + b"x" * size + b'"]}'
        assert post_raw(server, text).endswith(b'{"result":%d}' % size)
        del text
        assert server.status("VmHWM") - baseline < 400 * 1024  # KiB: a few times one body
    finally:
        server.stop()


def test_idle_connections_cannot_exhaust_descriptors(short_dir):
    """Finding: 5,000 idle connections exhausted its 4,096 descriptors; then nothing was served."""
    server = Process(short_dir, {"RAYFINE_TOKEN": TOKEN}, nofile=256)
    idle: List[socket.socket] = []
    try:
        for _ in range(600):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(server.sock)
            idle.append(sock)
        for _ in range(3):
            with server.client() as client:
                assert client.get("/health").status_code == 200
        assert server.status("Threads") >= 1 and server.process.poll() is None
    finally:
        for sock in idle:
            sock.close()
        server.stop()
    assert "Too many open files" not in server.text


def test_sigterm_lets_calls_in_flight_finish_then_exits_0(short_dir):
    server = Process(short_dir, {"RAYFINE_TOKEN": TOKEN})
    result: List[httpx.Response] = []
    caller = threading.Thread(target=lambda: result.append(server.call("sleep", 1.0)))
    caller.start()
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    with pytest.raises(OSError):  # no longer listening
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(server.sock)
    caller.join(10)
    assert result and result[0].json() == {"result": 1.0}
    assert server.stop() == 0


def test_env_output_is_visible_by_default(short_dir):
    """Finding: print and logging.info from env.py were invisible by default."""
    source = """
        import logging
        print("printed at import")
        logging.getLogger("env").info("logged at import")

        def hello():
            print("printed in a call")
            logging.info("logged in a call")
            return 1
    """
    server = Process(short_dir, {"RAYFINE_TOKEN": TOKEN}, env_source=source)
    try:
        assert server.call("hello").json() == {"result": 1}
        deadline = time.monotonic() + 5
        while "logged in a call" not in server.text and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    for line in ("printed at import", "logged at import", "printed in a call", "logged in a call"):
        assert line in server.text


def test_sigterm_exits_even_if_env_py_left_threads_running(short_dir):
    source = """
        import threading, time
        threading.Thread(target=time.sleep, args=(3600,), name="forever").start()

        def ping():
            return "pong"
    """
    server = Process(short_dir, {"RAYFINE_TOKEN": TOKEN}, env_source=source)
    assert server.call("ping").json() == {"result": "pong"}
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 5
    assert "forever" in server.text
