"""The in-container forwarder (on every supported Python) and the standalone proxy process."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rayfine_core.egress import EgressPolicy, EgressProxy, attach, container_env
from rayfine_core.image import egress_forward

from .client import ask, https_get
from .conftest import ALLOW, fake_dns
from .netns import FakeInternet

pytestmark = pytest.mark.netns

FORWARDER = Path(egress_forward.__file__)


def pythons() -> list[str]:
    """One interpreter per supported minor version found on this machine (pyenv)."""
    found = {}
    for path in sorted(glob.glob("/root/.pyenv/versions/3.*/bin/python3")):
        minor = Path(path).parents[1].name.rsplit(".", 1)[0]
        if minor in {"3.9", "3.10", "3.11", "3.12", "3.13"}:
            found[minor] = path
    return list(found.values()) or [sys.executable]


@pytest.mark.parametrize("python", pythons(), ids=lambda p: Path(p).parents[1].name)
def test_the_forwarder_runs_on_every_supported_python(
    python: str,
    proxy: EgressProxy,
    policy: EgressPolicy,
    run_dir: Path,
    fake_internet: FakeInternet,
) -> None:
    sock = str(run_dir / "egress.sock")
    proxy.add(sock, policy, "env-a")
    process = subprocess.Popen(
        [python, str(FORWARDER), "--socket", sock, "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "egress_forward: 127.0.0.1:PORT -> SOCKET"
        port = int(line.split(":")[2].split()[0])
        address = ("127.0.0.1", port)
        assert https_get(address, "api.allowed.test", 443, fake_internet.cert)["sni"] == (
            "api.allowed.test"
        )
        assert ask(address, b"CONNECT denied.test:443 HTTP/1.1\r\n\r\n") == (
            403,
            "not_in_allow_list",
        )
    finally:
        process.terminate()
        assert process.wait(10) == 0  # SIGTERM is a clean stop


def test_standard_clients_find_the_forwarder_through_the_proxy_variables(
    proxy: EgressProxy, policy: EgressPolicy, run_dir: Path, fake_internet: FakeInternet
) -> None:
    sock = str(run_dir / "egress.sock")
    proxy.add(sock, policy, "env-a")
    forwarder = egress_forward.start_thread(sock, 0)
    env = {**os.environ, **container_env(forwarder.port)}
    env["SSL_CERT_FILE"] = str(fake_internet.cert)
    script = (
        "import json, urllib.request\n"
        "for url in ('https://api.allowed.test/x', 'http://x.models.test/y'):\n"
        "    print(json.loads(urllib.request.urlopen(url, timeout=10).read())['host'])\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.stdout.split() == ["api.allowed.test", "x.models.test"], out.stderr
        # NO_PROXY keeps the container's own loopback direct, never through the host.
        assert "127.0.0.1" in env["NO_PROXY"] and "localhost" in env["NO_PROXY"]
    finally:
        forwarder.stop()


def test_the_forwarder_answers_502_when_the_host_proxy_is_gone(run_dir: Path) -> None:
    forwarder = egress_forward.start_thread(str(run_dir / "nothing.sock"), 0)
    try:
        status = ask(("127.0.0.1", forwarder.port), b"CONNECT a.test:443 HTTP/1.1\r\n\r\n")
        assert status == (502, None)
    finally:
        forwarder.stop()


def test_start_from_env(monkeypatch: pytest.MonkeyPatch, run_dir: Path) -> None:
    monkeypatch.delenv("RAYFINE_EGRESS_SOCKET", raising=False)
    assert egress_forward.start_from_env() is None
    monkeypatch.setenv("RAYFINE_EGRESS_SOCKET", str(run_dir / "egress.sock"))
    monkeypatch.setenv("RAYFINE_EGRESS_PORT", "0")
    forwarder = egress_forward.start_from_env()
    assert forwarder is not None and forwarder.port > 0
    try:
        monkeypatch.setenv("RAYFINE_EGRESS_PORT", str(forwarder.port))
        with pytest.raises(OSError, match="RAYFINE_EGRESS_PORT"):
            egress_forward.start_from_env()  # the port is taken: says what to set
    finally:
        forwarder.stop()


def test_a_detached_proxy_serves_until_its_socket_is_removed(
    run_dir: Path, fake_internet: FakeInternet, tmp_path: Path
) -> None:
    policy = EgressPolicy(ALLOW, allow_private=[str(fake_internet.subnet)])
    log = tmp_path / "egress.log"
    # The standalone server takes --resolve NAME=ADDR for the fake names.
    resolve = [
        a for n, ips in fake_dns(fake_internet).items() for a in ("--resolve", f"{n}={ips[0]}")
    ]
    command = [
        sys.executable, "-m", "rayfine_core.egress", "serve", "--socket",
        str(run_dir / "egress.sock"), "--env-id", "env-d", *policy.to_args(), *resolve,
    ]  # fmt: skip
    with open(log, "ab") as sink:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sink)
    try:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        sock = str(run_dir / "egress.sock")
        assert https_get(sock, "api.allowed.test", 443, fake_internet.cert)["sni"]
        assert ask(sock, b"CONNECT denied.test:443 HTTP/1.1\r\n\r\n")[1] == "not_in_allow_list"
        os.unlink(sock)  # what removing the run dir does
        assert process.wait(5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "env=env-d decision=allow host=api.allowed.test port=443" in text
    assert "decision=deny host=denied.test" in text
    assert "allowed=1 denied=1" in text


def test_attach_detached_spawns_a_server_and_close_ends_it(run_dir: Path, tmp_path: Path) -> None:
    attachment = attach(run_dir, ["api.example.com"], "env-e", detached_log=tmp_path / "e.log")
    try:
        assert attachment.process is not None and attachment.process.poll() is None
        assert ask(attachment.socket_path, b"CONNECT denied.test:443 HTTP/1.1\r\n\r\n")[1] == (
            "not_in_allow_list"
        )
    finally:
        attachment.close()
    assert attachment.process.wait(5) == 0
    assert not os.path.exists(attachment.socket_path)


def test_attach_in_process_and_hand_over_to_a_detached_server(
    run_dir: Path, tmp_path: Path
) -> None:
    proxy = EgressProxy()
    try:
        attachment = attach(run_dir, ["api.example.com"], "env-f", proxy=proxy)
        assert ask(attachment.socket_path, b"CONNECT b.test:443 HTTP/1.1\r\n\r\n")[0] == 403
        assert attachment.stats() is not None and attachment.stats().denied == 1  # type: ignore[union-attr]
        attachment.detach(tmp_path / "f.log")
        assert proxy.paths() == []
        assert ask(attachment.socket_path, b"CONNECT b.test:443 HTTP/1.1\r\n\r\n")[0] == 403
        attachment.close()
        assert attachment.process is not None and attachment.process.wait(5) == 0
    finally:
        proxy.close()


def test_bad_arguments_exit_2_with_a_reason(run_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rayfine_core.egress", "serve", "--socket", str(run_dir / "s"),
         "--env-id", "x", "--allow", "https://a.example"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    assert "is a URL" in out.stderr


def test_container_env_points_every_proxy_variable_at_the_forwarder() -> None:
    env = container_env()
    assert env["RAYFINE_EGRESS_SOCKET"] == "/run/rayfine/egress.sock"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == "http://127.0.0.1:3128"
    json.dumps(env)


def test_urllib_is_refused_cleanly_for_a_host_not_listed(
    proxy: EgressProxy, policy: EgressPolicy, run_dir: Path
) -> None:
    sock = str(run_dir / "egress.sock")
    proxy.add(sock, policy, "env-a")
    forwarder = egress_forward.start_thread(sock, 0)
    try:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{forwarder.port}"})
        )
        started = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open("http://denied.test/", timeout=10)
        assert caught.value.code == 403
        assert caught.value.headers["X-Rayfine-Egress"] == "not_in_allow_list"
        assert time.monotonic() - started < 5
    finally:
        forwarder.stop()
