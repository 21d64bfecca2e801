"""The server needs nothing but the standard library, and runs on Python 3.9-3.13."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from server_helpers import TOKEN

import rayfine_server

DISTRIBUTION_DIR = Path(__file__).resolve().parents[1]
SOURCE_DIR = DISTRIBUTION_DIR / "src"
START_SCRIPT = (
    DISTRIBUTION_DIR.parent / "rayfine_core" / "src" / "rayfine_core" / "image" / "rayfine_start.py"
)
PYENV = Path("/root/.pyenv/versions")


def test_lock_pins_nothing():
    """Every function-based image used to get FastAPI, pydantic, starlette, anyio, uvicorn,
    h11 and click in /opt/rayfine/site, shadowing the environment's own versions."""
    assert rayfine_server.locked_requirements() == []
    assert rayfine_server.LOCK_FILE.is_file()  # builders still read it


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is new in Python 3.11")
def test_pyproject_declares_no_dependencies():
    import tomllib

    project = tomllib.loads((DISTRIBUTION_DIR / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == []


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is new in 3.10")
@pytest.mark.parametrize(
    "path",
    sorted(
        [
            *(p for p in rayfine_server.PACKAGE_DIR.glob("*.py") if p.name != "plugin.py"),
            START_SCRIPT,
        ]
    ),
)
def test_server_imports_only_the_standard_library(path):
    # uvloop is optional: used when the image happens to have it (RAYFINE_LOOP=asyncio: never).
    # egress_forward is the stdlib-only forwarder shipped beside rayfine_start.py.
    allowed = set(sys.stdlib_module_names) | {"rayfine_server", "uvloop", "egress_forward"}
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def interpreters():
    found = []
    for minor in ("3.9", "3.10", "3.11", "3.12", "3.13"):
        matches = sorted(PYENV.glob(f"{minor}.*/bin/python{minor}"))
        found.append(pytest.param(matches[-1] if matches else None, id=minor))
    return found


ENV = """
    import asyncio

    class Actor:
        def __init__(self, start=0):
            self.n = start

        def step(self, k: int = 1) -> int:
            self.n += k
            return self.n

        async def astep(self) -> int:
            await asyncio.sleep(0)
            self.n += 1
            return self.n

    def refuse():
        return {1: "a"}

    async def loop():
        return type(asyncio.get_running_loop()).__module__
"""

CLIENT = r"""
import json, socket, sys
path, token = sys.argv[1], sys.argv[2]

def request(method, target, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {target} HTTP/1.1\r\nhost: x\r\nx-rayfine-token: {token}\r\n"
    head += f"content-length: {len(data)}\r\n\r\n"
    sock.sendall(head.encode() + data)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = int(fields[b"content-length"])
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split()[1]), json.loads(rest)

sock = socket.socket(socket.AF_UNIX)
sock.connect(path)
print(json.dumps([
    request("GET", "/health")[0],
    request("POST", "/call", {"method": "step", "kwargs": {"k": 2}}),
    request("POST", "/call", {"method": "astep"}),
    request("POST", "/call", {"method": "refuse"})[1]["error"]["kind"],
    request("POST", "/sessions", {"args": [10]})[0],
    request("POST", "/call", {"method": "loop"})[1]["result"].split(".")[0],
]))
"""


@pytest.mark.parametrize("python", interpreters())
def test_runs_on_every_supported_python(python, short_dir, write_env):
    if python is None:
        pytest.skip("this Python version is not installed under /root/.pyenv")
    exercise(str(python), short_dir, write_env(ENV), "auto")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_runs_on_either_event_loop(loop, short_dir, write_env):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    exercise(sys.executable, short_dir, write_env(ENV), loop)


def exercise(python: str, short_dir: Path, env_dir: Path, loop: str) -> None:
    sock = short_dir / "s.sock"
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin"),
        "PYTHONPATH": str(SOURCE_DIR),
        "RAYFINE_ENV_DIR": str(env_dir),
        "RAYFINE_UDS": str(sock),
        "RAYFINE_TOKEN": TOKEN,
        "RAYFINE_LOOP": loop,
    }
    server = subprocess.Popen([python, str(START_SCRIPT)], env=environ, stderr=subprocess.PIPE)
    try:
        client = short_dir / "client.py"
        client.write_text(textwrap.dedent(CLIENT))
        for _ in range(200):
            if sock.exists() or server.poll() is not None:
                break
            time.sleep(0.02)
        result = subprocess.run(
            [python, str(client), str(sock), TOKEN], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, result.stderr
        loop_module = "uvloop" if loop == "uvloop" else "asyncio"
        assert result.stdout.strip() == (
            '[200, [200, {"result": 2}], [200, {"result": 3}], "not_serializable", 201, '
            f'"{loop_module}"]'
        )
    finally:
        server.terminate()
        assert server.wait(10) == 0, server.stderr.read() if server.stderr else ""
