"""The gateway on another "host": its own network namespace, reached over a veth pair the test made.

Only addresses this test creates are contacted: a random /30 of TEST-NET-2
(198.51.100.0/24) on a veth pair between this namespace and a fresh one.
Everything is removed afterwards, also after a failure.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CLIENTS

import rayfine_core as rf
from rayfine_remote import GatewayAuthError
from rayfine_remote.gateway.tokens import add

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (ip netns)"
)


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout


def _free_subnet() -> ipaddress.IPv4Network:
    text = _run("ip", "-o", "-4", "addr") + _run("ip", "-4", "route")
    taken = [
        ipaddress.ip_network(m, strict=False)
        for m in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", text)
    ]
    for block in secrets.SystemRandom().sample(range(64), 64):
        net = ipaddress.IPv4Network(f"198.51.100.{block * 4}/30")
        if not any(t.prefixlen and net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free /30 in 198.51.100.0/24")


@pytest.fixture
def far_host(tmp_path):
    """A namespace with a veth peer: (namespace name, host-side address, namespace address)."""
    tag = secrets.token_hex(3)
    name, veth = f"rfgw-{os.getpid()}-{tag}", f"rfgw{tag}h"
    subnet = _free_subnet()
    near, far = (str(h) for h in subnet.hosts())
    try:
        _run("ip", "netns", "add", name)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", veth[:-1] + "n")
        _run("ip", "link", "set", veth[:-1] + "n", "netns", name)
        _run("ip", "addr", "add", f"{near}/30", "dev", veth)
        _run("ip", "link", "set", veth, "up")
        inside = ("ip", "netns", "exec", name)
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run(*inside, "ip", "addr", "add", f"{far}/30", "dev", veth[:-1] + "n")
        _run(*inside, "ip", "link", "set", veth[:-1] + "n", "up")
        yield name, near, far
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def test_a_client_reaches_a_gateway_on_another_network(far_host, sink, tmp_path):
    namespace, _, far = far_host
    tokens_file = tmp_path / "tokens.json"
    token = add(tokens_file, "alice", CLIENTS["alice"])
    command = [
        "ip", "netns", "exec", namespace, sys.executable, "-m", "rayfine_remote.gateway",
        "--runtime", "process", "--tokens", str(tokens_file), "--name", "netns",
        "--host", far, "--port", "8443", "--state-dir", str(tmp_path / "state"),
        "--audit-log", str(tmp_path / "audit.log"),
    ]  # fmt: skip
    gateway = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = gateway.stdout.readline()
        url = line.split("ready: ")[1].strip()
        assert url.startswith(f"https://{far}:8443#sha256=")
        with rf.load_env(sink, mode="remote", url=url, token=token, start_timeout=30) as env:
            assert env.add(1) == 3
            assert env.echo("far") == {"args": ["far"], "kwargs": {}}
        with pytest.raises(GatewayAuthError):
            rf.load_env(sink, mode="remote", url=url, token="rft_wrong")
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(20)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(10)
    assert '"event": "stop"' in Path(tmp_path / "audit.log").read_text()
