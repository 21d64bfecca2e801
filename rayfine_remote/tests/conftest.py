"""Fixtures: a gateway served in this process (process runtime, TLS, short leases) and its clients.

Everything runs offline: the gateway listens on 127.0.0.1, its "containers"
are host processes of the ``process`` test runtime, and every store, state
and run directory is private to the test session.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

import rayfine_core as rf
from rayfine_core.testing.envs import ENVS
from rayfine_remote.gateway.config import GatewayConfig
from rayfine_remote.gateway.serve import Served
from rayfine_remote.gateway.tokens import add

LEASE = 3.0
SINK = "rayfine-remote-sink:latest"


@dataclass
class Running:
    """A gateway of the test session, and the tokens of its clients by name."""

    url: str
    tokens: dict[str, str]
    audit: Path
    served: Served
    tokens_file: Path


CLIENTS = {
    "alice": {
        "images": ["rayfine-remote-*"],
        "build": True,
        "max_envs": 32,
        "starts_per_minute": 10000,
    },
    "bob": {"images": ["rayfine-remote-*"], "max_envs": 8, "starts_per_minute": 10000},
    "tight": {"images": ["rayfine-remote-*"], "max_envs": 1, "starts_per_minute": 2},
    "nothing": {"images": ["other/*"]},
}


@pytest.fixture(scope="session", autouse=True)
def _private_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("RAYFINE_PROCESS_STORE", str(tmp_path_factory.mktemp("process-store")))
    mp.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    mp.setenv("RAYFINE_BASE_IMAGE", "rayfine/python:3.11-bookworm")
    yield
    mp.undo()


def start_gateway(directory: Path, name: str = "test", lease: float = LEASE) -> Running:
    tokens_file = directory / "tokens.json"
    tokens = {client: add(tokens_file, client, settings) for client, settings in CLIENTS.items()}
    audit = directory / "audit.log"
    config = GatewayConfig(
        runtime="process",
        tokens_file=tokens_file,
        name=name,
        host="127.0.0.1",
        port=0,
        state_dir=directory / "gateway-state",
        audit_log=audit,
        lease_timeout=lease,
    )
    ready = threading.Event()
    served = Served(config, lambda url: ready.set())
    threading.Thread(target=served.run, name="gateway", daemon=True).start()
    assert ready.wait(30), "the gateway did not start"
    return Running(served.url, tokens, audit, served, tokens_file)


def stop_gateway(running: Running) -> None:
    running.served.stop()
    deadline = time.monotonic() + 20
    while running.served.gateway.table.all() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    running.served.close()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_gateway(tmp_path_factory.mktemp("gateway"))
    mp = pytest.MonkeyPatch()  # runtime="remote" (and builds) act as alice
    mp.setenv("RAYFINE_REMOTE_URL", running.url)
    mp.setenv("RAYFINE_REMOTE_TOKEN", running.tokens["alice"])
    yield running
    mp.undo()
    stop_gateway(running)


@pytest.fixture(scope="session")
def remote_image(
    gateway: Running, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, str], str]:
    """Build a sample env (or given source) through the gateway as alice; return its tag."""
    built: dict[str, str] = {}

    def build(name: str, source: str = "") -> str:
        if name not in built:
            env_dir = tmp_path_factory.mktemp(name)
            (env_dir / "env.py").write_text(source or str(ENVS[name]))
            tag = f"rayfine-remote-{name}:latest"
            rf.build_image_from_env(env_dir, tag, quiet=True, runtime="remote")
            built[name] = tag
        return built[name]

    return build


@pytest.fixture
def sink(remote_image: Callable[[str, str], str]) -> str:
    return remote_image("kitchen-sink", "")


@pytest.fixture
def connect(gateway: Running) -> Callable[..., dict[str, object]]:
    """``connect(client="alice")``: load_env keywords for that client of the session's gateway."""

    def keywords(client: str = "alice") -> dict[str, object]:
        return {"mode": "remote", "url": gateway.url, "token": gateway.tokens[client]}

    return keywords


@pytest.fixture
def tls_connect(gateway: Running) -> Callable[[], ssl.SSLSocket]:
    """Open a raw TLS connection to the session's gateway (no pin check: the test made it)."""
    host, port = gateway.url.split("//")[1].split("#")[0].rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE

    def connect() -> ssl.SSLSocket:
        sock = context.wrap_socket(socket.create_connection((host, int(port)), 5))
        sock.settimeout(10)
        return sock

    return connect


def read_all(sock: ssl.SSLSocket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while True:
        try:
            piece = sock.recv(65536)
        except (OSError, ssl.SSLError):
            return received
        if not piece:
            return received
        received += piece
