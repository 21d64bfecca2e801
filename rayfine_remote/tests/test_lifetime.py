"""Lifetimes: leases renewed while the client lives, reaped when it is killed; gateway restarts leak nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CLIENTS, LEASE

import rayfine_core as rf
from rayfine_core import errors
from rayfine_core.testing.process_runtime import ProcessRuntime
from rayfine_remote.gateway.engine import GATEWAY_LABEL

CLIENT = """
import sys, time, rayfine_core as rf
env = rf.load_env(sys.argv[1], mode="remote", url=sys.argv[2], token=sys.argv[3])
assert env.add(1) == 3
print(env.handle.id, flush=True)
time.sleep(600)
"""


def engine() -> ProcessRuntime:
    runtime = rf.get_runtime("process")
    assert isinstance(runtime, ProcessRuntime)
    return runtime


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_leases_keep_an_idle_environment_alive(gateway, connect, sink):
    with rf.load_env(sink, **connect()) as env:
        time.sleep(2.5 * LEASE)
        assert env.add(1) == 3


def test_a_client_killed_with_sigkill_loses_its_environment_after_the_lease(gateway, sink):
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, sink, gateway.url, gateway.tokens["bob"]],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        env_id = client.stdout.readline().strip()
        (record,) = [e for e in gateway.served.gateway.table.of("bob") if e.id == env_id]
        container = record.handle.id
        client.send_signal(signal.SIGKILL)
        client.wait(10)
        killed = time.monotonic()
        assert wait_for(lambda: not gateway.served.gateway.table.of("bob"), LEASE + 5)
        assert time.monotonic() - killed > LEASE / 2  # the lease, not something else, ended it
        assert engine().health(container).status == "removed"
    finally:
        client.kill()
        client.wait(10)
    events = gateway.audit.read_text()
    assert '"reason": "lease expired"' in events


@pytest.fixture
def own_gateway(tmp_path):
    """A gateway in a process of its own, on a fixed port (so a restart keeps the URL)."""
    from rayfine_remote.gateway.tokens import add

    tokens_file = tmp_path / "tokens.json"
    tokens = {name: add(tokens_file, name, settings) for name, settings in CLIENTS.items()}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "rayfine_remote.gateway", "--runtime", "process",
        "--tokens", str(tokens_file), "--name", "restart", "--port", str(port),
        "--state-dir", str(tmp_path / "state"), "--lease-timeout", "30",
        "--audit-log", str(tmp_path / "audit.log"),
    ]  # fmt: skip
    started: list[subprocess.Popen[str]] = []

    def start() -> str:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        started.append(process)
        line = process.stdout.readline()
        assert "ready" in line, line
        return line.split("ready: ")[1].strip()

    yield start, tokens
    for process in started:
        process.kill()
        process.wait(10)


def test_gateway_killed_and_restarted_leaks_nothing(own_gateway, sink):
    start, tokens = own_gateway
    url = start()
    env = rf.load_env(sink, mode="remote", url=url, token=tokens["alice"], start_timeout=30)
    try:
        (record,) = engine().list_containers({GATEWAY_LABEL: "restart"})
        pid = engine().pid(record.id)
        os.kill(_gateway_pid(url), signal.SIGKILL)
        time.sleep(0.5)
        assert engine().health(record.id).running  # the container outlived its gateway
        with pytest.raises((errors.TransportError, errors.EngineUnavailableError)):
            env.add(1)
        assert start() == url  # same port, same certificate: the client's pin still holds
        assert engine().list_containers({GATEWAY_LABEL: "restart"}) == []  # reaped at start-up
        assert pid is not None and wait_for(lambda: not _alive(pid), 5)
        with pytest.raises(errors.ContainerDiedError, match="removed"):
            env.add(1)
    finally:
        env.cleanup()
    assert env.closed


def test_gateway_stopped_with_sigterm_stops_its_environments(own_gateway, sink):
    start, tokens = own_gateway
    url = start()
    env = rf.load_env(sink, mode="remote", url=url, token=tokens["alice"], start_timeout=30)
    (record,) = engine().list_containers({GATEWAY_LABEL: "restart"})
    os.kill(_gateway_pid(url), signal.SIGTERM)
    assert wait_for(lambda: engine().health(record.id).status == "removed", 15)
    with pytest.raises(
        (errors.TransportError, errors.EngineUnavailableError, errors.ContainerDiedError)
    ):
        env.add(1)
    with pytest.raises(errors.EngineUnavailableError):
        env.cleanup()  # the gateway is gone: the stop cannot be confirmed, and says so
    assert start() == url
    env.cleanup()  # retried: the gateway now knows nothing of it, which is stopped
    assert env.closed


def _gateway_pid(url: str) -> int:
    port = int(url.split("#")[0].rsplit(":", 1)[1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            inode = fields[9]
            break
    else:
        raise AssertionError("no listener")
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == f"socket:[{inode}]":
                return int(fd.parts[2])
        except OSError:
            continue
    raise AssertionError("no process holds the listener")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
