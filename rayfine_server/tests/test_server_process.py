"""``python -m rayfine_server`` as a real process, over a Unix socket and over TCP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict

import httpx
import pytest

ENV = """
    import os

    class Actor:
        def __init__(self):
            self.calls = 0

        def step(self, n: int = 1) -> dict:
            self.calls += n
            return {"calls": self.calls, "token": os.environ.get("RAYFINE_TOKEN")}
"""
TOKEN = "process-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def start_server(env_dir: Path, extra: Dict[str, str]) -> subprocess.Popen:
    environ = {**os.environ, "RAYFINE_ENV_DIR": str(env_dir), "RAYFINE_TOKEN": TOKEN, **extra}
    environ.pop("RAYFINE_TOKEN_FILE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "rayfine_server"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_healthy(client: httpx.Client, process: subprocess.Popen, address: Any) -> None:
    """Wait until the server accepts connections at ``address`` and reports healthy."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            pytest.fail(f"server exited with {process.returncode}:\n{output}")
        if accepts_connections(address):
            assert client.get("/health", headers=HEADERS).status_code == 200
            return
        time.sleep(0.05)
    pytest.fail("server did not become healthy within 30 s")


def accepts_connections(address: Any) -> bool:
    """Probe with a plain socket (closed even when refused, unlike a failed httpx connect)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.connect(address)
        except OSError:
            return False
    return True


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, as a container engine sends it; the server must shut down promptly."""
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=15) == 0
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    finally:
        if process.stdout is not None:
            process.stdout.close()


def exercise(client: httpx.Client) -> None:
    assert client.get("/health").status_code == 401
    response = client.post("/call", json={"method": "step", "kwargs": {"n": 2}}, headers=HEADERS)
    assert response.json() == {"result": {"calls": 2, "token": None}}
    response = client.post("/call", json={"method": "step"}, headers=HEADERS)
    assert response.json() == {"result": {"calls": 3, "token": None}}
    response = client.post("/call", content=b"{oops", headers=HEADERS)
    assert response.status_code == 400
    methods = client.get("/methods", headers=HEADERS).json()["methods"]
    assert [m["signature"] for m in methods] == ["(n: int = 1) -> dict"]


def test_serves_on_a_unix_socket(short_dir: Path):
    env_dir = short_dir / "env"
    env_dir.mkdir()
    (env_dir / "env.py").write_text(textwrap.dedent(ENV))
    sock = short_dir / "run" / "s.sock"  # the parent directory is created by the server
    sock.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # left behind by an earlier run
    stale.close()
    process = start_server(env_dir, {"RAYFINE_UDS": str(sock)})
    try:
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, base_url="http://rayfine") as client:
            wait_healthy(client, process, str(sock))
            assert sock.stat().st_mode & 0o777 == 0o666
            exercise(client)
    finally:
        stop(process)


def test_serves_on_tcp(short_dir: Path):
    (short_dir / "env.py").write_text(textwrap.dedent(ENV))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = start_server(short_dir, {"RAYFINE_HOST": "127.0.0.1", "RAYFINE_PORT": str(port)})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            wait_healthy(client, process, ("127.0.0.1", port))
            exercise(client)
    finally:
        stop(process)


@pytest.mark.parametrize(
    "settings, fragment",
    [
        ({"RAYFINE_TOKEN": TOKEN, "RAYFINE_PORT": "eighty"}, "RAYFINE_PORT must be an integer"),
        ({}, "no token: set RAYFINE_TOKEN_FILE"),
    ],
)
def test_bad_setting_exits_78_with_one_line(short_dir: Path, settings, fragment):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAYFINE_")}
    result = subprocess.run(
        [sys.executable, "-m", "rayfine_server"],
        env={**environ, "RAYFINE_ENV_DIR": str(short_dir), **settings},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 78
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
