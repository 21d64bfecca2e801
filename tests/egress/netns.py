"""A throw-away network namespace standing for "the internet", for egress tests.

A veth pair joins the host to a namespace the test creates; the namespace
holds two addresses from a random /29 of TEST-NET-2 (198.51.100.0/24) and
one IPv6 documentation address, and runs ``fake_outside.py`` on them.  The
proxy's resolver maps the test's fake names to these addresses.  Nothing
else is ever contacted, and everything is removed afterwards.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent


def can_create() -> Optional[str]:
    """None if this process can create namespaces, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    if shutil.which("openssl") is None:
        return "needs the openssl command (to make a test certificate)"
    return None


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout


def remove_orphans() -> None:
    """Delete namespaces left by test runs that were killed (their pid is in the name)."""
    for line in _run("ip", "netns", "list").splitlines():
        match = re.match(r"^rfeg-(\d+)-[0-9a-f]+", line)
        if match and not _alive(int(match.group(1))):
            subprocess.run(["ip", "netns", "del", match.group(0)], capture_output=True, timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _free_subnet() -> ipaddress.IPv4Network:
    """A /29 of 198.51.100.0/24 that no address or route of this host touches yet."""
    text = _run("ip", "-o", "-4", "addr") + _run("ip", "-4", "route")
    taken = [
        ipaddress.ip_network(m, strict=False)
        for m in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", text)
    ]
    for block in secrets.SystemRandom().sample(range(32), 32):
        net = ipaddress.IPv4Network(f"198.51.100.{block * 8}/29")
        if not any(t.prefixlen and net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free /29 in 198.51.100.0/24 for the test namespace")


@dataclass
class FakeInternet:
    """A namespace with a fake server; ``allowed_ip`` and ``denied_ip`` are its two addresses."""

    name: str
    subnet: ipaddress.IPv4Network
    host_ip: str
    allowed_ip: str
    denied_ip: str
    v6_subnet: ipaddress.IPv6Network
    server_v6: str
    workdir: Path
    cert: Path
    key: Path
    _veth: str = ""
    _server: Optional[subprocess.Popen[str]] = field(default=None, repr=False)

    @classmethod
    def create(cls, workdir: Path) -> FakeInternet:
        remove_orphans()
        tag = secrets.token_hex(3)
        subnet = _free_subnet()
        hosts = [str(h) for h in subnet.hosts()]
        v6 = ipaddress.ip_network(f"2001:db8:{secrets.randbelow(0xFFFF):x}:{tag[:4]}::/64")
        fake = cls(
            name=f"rfeg-{os.getpid()}-{tag}",
            subnet=subnet,
            host_ip=hosts[0],
            allowed_ip=hosts[1],
            denied_ip=hosts[2],
            v6_subnet=v6,
            server_v6=str(v6.network_address + 2),
            workdir=workdir,
            cert=workdir / "ca.pem",
            key=workdir / "key.pem",
            _veth=f"rfeg{tag}h",
        )
        try:
            fake._make_cert()
            fake._make_namespace()
            fake._start_server()
        except BaseException:
            fake.destroy()
            raise
        return fake

    def _make_cert(self) -> None:
        names = ["api.allowed.test", "*.models.test", "denied.test", "other.allowed.test"]
        alt = ",".join([f"DNS:{n}" for n in names] + [f"IP:{self.allowed_ip}"])
        _run(
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=rayfine-egress-test",
            "-addext", f"subjectAltName={alt}",
            "-keyout", str(self.key), "-out", str(self.cert),
        )  # fmt: skip
        self.cert.chmod(0o644)

    def _make_namespace(self) -> None:
        peer = self._veth[:-1] + "n"
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", self._veth, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", peer, "netns", self.name)
        prefix = self.subnet.prefixlen
        _run("ip", "addr", "add", f"{self.host_ip}/{prefix}", "dev", self._veth)
        _run("ip", "-6", "addr", "add", f"{self.v6_subnet.network_address + 1}/64", "dev",
             self._veth, "nodad")  # fmt: skip
        _run("ip", "link", "set", self._veth, "up")
        inside = ["ip", "netns", "exec", self.name]
        _run(*inside, "ip", "link", "set", "lo", "up")
        for address in (self.allowed_ip, self.denied_ip):
            _run(*inside, "ip", "addr", "add", f"{address}/{prefix}", "dev", peer)
        _run(*inside, "ip", "-6", "addr", "add", f"{self.server_v6}/64", "dev", peer, "nodad")
        _run(*inside, "ip", "link", "set", peer, "up")

    def _start_server(self) -> None:
        command = ["ip", "netns", "exec", self.name, sys.executable, str(HERE / "fake_outside.py")]
        self._server = subprocess.Popen(
            [*command, "--cert", str(self.cert), "--key", str(self.key)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._server.stdout is not None
        line = self._server.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"fake server did not start: {line!r}")

    def destroy(self) -> None:
        if self._server is not None:
            self._server.kill()
            self._server.wait(10)
            self._server = None
        subprocess.run(["ip", "link", "del", self._veth], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)
