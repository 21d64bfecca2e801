"""A warm pool while its engine stops and starts again: a *private* podman API service.

The test starts its own ``podman system service`` on a socket of its own
(never the shared ``/run/podman/podman.sock``, never dockerd), points the
podman runtime at it, and stops and starts it under a live pool.  Podman
containers outlive its API service, so held environments keep answering;
starts fail meanwhile, and the pool must back off, then refill once the
service is back, and leave nothing behind.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import rayfine_core as rf
from rayfine_core.pool import POOL_LABEL
from rayfine_core.testing.envs import ENVS


class PrivateService:
    """``podman system service`` on a private socket, started and stopped by the test."""

    def __init__(self, directory: Path) -> None:
        self.socket = directory / "podman.sock"
        self.url = f"unix://{self.socket}"
        self.log = directory / "service.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.url],
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd="/",  # conmon fails once the service's directory is gone
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not self.answers():
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the private podman service did not answer"
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to the service process alone: its containers (conmon) live on."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        self.process = None

    def answers(self) -> bool:
        try:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(2)
            sock.connect(str(self.socket))
        except OSError:
            return False
        connection = http.client.HTTPConnection("podman")
        connection.sock = sock
        try:
            connection.request("GET", "/_ping")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()


@pytest.fixture
def private_podman(monkeypatch):
    if shutil.which("podman") is None:
        pytest.skip("needs the podman command line")
    directory = Path(tempfile.mkdtemp(prefix="pools-podman-", dir="/tmp"))
    service = PrivateService(directory)
    service.start()
    monkeypatch.setenv("RAYFINE_PODMAN_URL", service.url)
    rf.get_runtime("podman").close()
    try:
        yield service
    finally:
        if not service.answers():
            service.start()  # to clean up what the test left
        rf.cleanup_all_environments()
        service.stop()
        rf.get_runtime("podman").close()
        shutil.rmtree(directory, ignore_errors=True)


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def left(name: str) -> list[str]:
    out = subprocess.run(
        ["podman", "ps", "-aq", "--filter", f"label={POOL_LABEL}={name}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def test_a_pool_rides_out_an_engine_restart(private_podman, tmp_path):
    (tmp_path / "env.py").write_text(str(ENVS["kitchen-sink"]))
    image = "pools-test-kitchen-sink:podman"
    rf.build_image_from_env(tmp_path, image, quiet=True, runtime="podman")
    name = f"eng-restart-{uuid.uuid4().hex[:6]}"
    pool = rf.load_pool(image, 2, runtime="podman", name=name, health_interval=0.5)
    try:
        held = pool.acquire(timeout=60)
        private_podman.stop()
        assert held.add(1) == 3  # containers outlive the API service
        pool.release(held)  # its stop and the replacement's start both need the engine
        assert wait_until(lambda: pool.status().failing, 60)
        status = pool.status()
        assert "EngineUnavailableError" in (status.last_error or ""), status
        time.sleep(4)
        assert pool.status().failed <= status.failed + 3, "starts must back off, not spin"
        with pool.env(timeout=30) as idle:  # an idle one still answers its liveness check
            assert idle.add(2) == 4
        private_podman.start()
        assert wait_until(lambda: _settled(pool.status()), 120), pool.status()
        with pool.env(timeout=60) as fresh:
            assert fresh.add(3) == 5
    finally:
        pool.close()
    assert wait_until(lambda: not left(name), 30), left(name)
    assert os.path.exists(private_podman.socket)


def _settled(status: rf.PoolStatus) -> bool:
    return status.ready == 2 and status.stopping == 0 and not status.failing
