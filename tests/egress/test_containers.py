"""Real containers with no network, on docker and podman, under runc and gVisor.

Each container gets the run dir at /run/rayfine with the egress socket, runs
the forwarder and tries every way out (container_probe.py); the gVisor ones
also try the kernel features an escape would start from (sandbox_probe.py).
"""

from __future__ import annotations

import json
import platform
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rayfine_core.egress import EgressPolicy, EgressProxy, container_env
from rayfine_core.egress.isolation import (
    check_started_under_gvisor,
    docker_create_options,
    gvisor_available,
    podman_service_url,
)
from rayfine_core.image import egress_forward

from .netns import FakeInternet

pytestmark = [pytest.mark.engine, pytest.mark.netns]

HERE = Path(__file__).resolve().parent
IMAGE = "rayfine/python:3.11-bookworm"
PODMAN_SOCKET = "unix:///run/podman/podman.sock"
VARIANTS = [
    ("docker", "container"),
    ("docker", "gvisor"),
    ("podman", "container"),
    ("podman", "gvisor"),
]


def run_container(
    engine: str, isolation: str, run_dir: Path, command: list[str], env: dict[str, str]
) -> str:
    """Run ``command`` to completion in a fresh container; its output. Always removed."""
    if isolation == "gvisor":
        reason = gvisor_available(engine)
        if reason:
            pytest.skip(f"gVisor on {engine}: {reason}")
    name = f"egress-test-{secrets.token_hex(4)}"
    options: dict[str, Any] = dict(
        image=IMAGE,
        command=command,
        name=name,
        environment=env,
        user="10001:10001",
        cap_drop=["ALL"],
        labels={"rayfine.test": "egress"},
        network_mode="none",
    )
    if engine == "docker":
        return _run_docker(options, run_dir, isolation)
    return _run_podman(options, run_dir, isolation)


def _run_docker(options: dict[str, Any], run_dir: Path, isolation: str) -> str:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:
        pytest.skip(f"docker is not reachable: {exc}")
    container = None
    try:
        container = client.containers.create(
            **{**options, **docker_create_options(isolation)},
            security_opt=["no-new-privileges:true"],
            volumes={str(run_dir): {"bind": "/run/rayfine", "mode": "rw"}},
        )
        if isolation == "gvisor":
            container.reload()
            check_started_under_gvisor("docker", container.attrs)
        container.start()
        status = container.wait(timeout=180)
        output: str = container.logs().decode(errors="replace")
        assert status["StatusCode"] == 0, output
        return output
    finally:
        if container is not None:
            container.remove(force=True)
        client.close()


def _run_podman(options: dict[str, Any], run_dir: Path, isolation: str) -> str:
    podman = pytest.importorskip("podman")
    main = podman.PodmanClient(base_url=PODMAN_SOCKET)
    creator = podman.PodmanClient(base_url=podman_service_url(isolation) or PODMAN_SOCKET)
    try:
        main.ping()
    except Exception as exc:
        pytest.skip(f"podman is not reachable: {exc}")
    container = None
    try:
        container = creator.containers.create(
            **options,
            no_new_privileges=True,
            volumes={str(run_dir): {"bind": "/run/rayfine", "mode": "rw"}},
        )
        if isolation == "gvisor":
            check_started_under_gvisor("podman", container.attrs)
        container.start()
        status = container.wait(timeout=180)
        output = b"".join(container.logs()).decode(errors="replace")
        assert status == 0, output
        return output
    finally:
        if container is not None:
            # Removed through the main service: any service can manage any container.
            main.containers.get(container.id).remove(force=True)
        main.close()
        creator.close()


def probe_output(output: str) -> dict[str, Any]:
    line = next((x for x in output.splitlines() if x.startswith("PROBE ")), None)
    assert line is not None, output
    return json.loads(line[6:])  # type: ignore[no-any-return]


@pytest.fixture
def host_listener() -> Iterator[socket.socket]:
    """A service on the host's loopback that no container may reach."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture
def prepared_run_dir(run_dir: Path, fake_internet: FakeInternet) -> Path:
    for source in (
        Path(egress_forward.__file__),
        HERE / "container_probe.py",
        HERE / "sandbox_probe.py",
    ):
        shutil.copy(source, run_dir / source.name)
    shutil.copy(fake_internet.cert, run_dir / "ca.pem")
    for path in run_dir.iterdir():
        path.chmod(0o644)
    return run_dir


DENIALS = {
    "denied_host": (403, "not_in_allow_list"),
    "denied_port": (403, "port_not_allowed"),
    "ip_literal": (403, "ip_literal_not_listed"),
    "ipv6_literal": (403, "ip_literal_not_listed"),
    "decimal_ip": (403, "ip_literal_not_listed"),
    "dns_loopback": (403, "address_loopback"),
    "dns_metadata": (403, "address_link_local"),
    "dns_private": (403, "address_private"),
    "dns_this_host": (403, "address_this_host"),
    "dns_mapped_loopback": (403, "address_loopback"),
    "http_denied": (403, "not_in_allow_list"),
    "host_mismatch": (403, "host_header_mismatch"),
    "smuggled_connect": (400, "data_before_tunnel"),
    "long_header": (431, "header_too_large"),
    "host_loopback_via_proxy": (403, "ip_literal_not_listed"),
    "localhost_via_proxy": (403, "not_in_allow_list"),
}


@pytest.mark.parametrize("engine, isolation", VARIANTS, ids=["-".join(v) for v in VARIANTS])
def test_egress_from_a_container_without_network(
    engine: str,
    isolation: str,
    prepared_run_dir: Path,
    proxy: EgressProxy,
    policy: EgressPolicy,
    fake_internet: FakeInternet,
    host_listener: socket.socket,
) -> None:
    proxy.add(str(prepared_run_dir / "egress.sock"), policy, "env-c")
    fake = {
        "allowed_ip": fake_internet.allowed_ip,
        "server_v6": fake_internet.server_v6,
        "host_port": host_listener.getsockname()[1],
    }
    env = {**container_env(), "PROBE_FAKE": json.dumps(fake)}
    output = run_container(
        engine, isolation, prepared_run_dir, ["python3", "/run/rayfine/container_probe.py"], env
    )
    result = probe_output(output)

    for name, path in (("https_allowed", "/v1/models"), ("http_allowed", "/p?q=1")):
        assert result[name]["status"] == 200, result[name]
        assert result[name]["body"]["path"] == path
    assert result["https_allowed"]["body"]["sni"] == "api.allowed.test"
    assert result["https_wildcard"]["body"]["sni"] == "x.models.test"
    assert result["https_listed_port"]["body"]["port"] == 8443
    assert result["post_1mb"]["body"]["received"] == 1048576
    for name, (status, reason) in DENIALS.items():
        assert (result[name]["status"], result[name]["reason"]) == (status, reason), name
    assert "error" in result["sni_mismatch"], result["sni_mismatch"]
    for name in ("direct_ipv4", "direct_ipv6", "host_loopback_direct"):
        assert "error" in result[name], (name, result[name])
    assert result["engine_sockets"] == []
    assert result["interfaces"] == ["lo"]
    with pytest.raises(BlockingIOError):
        host_listener.accept()  # nothing reached the host's loopback service

    stats = proxy.stats("env-c")
    assert (stats.allowed, stats.denied, stats.failed) == (5, len(DENIALS) + 1, 0)
    assert stats.bytes_out > 1048576


# Refused inside gVisor whatever the engine's seccomp profile says.  Namespaces,
# ptrace and io_uring are *allowed* there, but implemented by gVisor's kernel:
# the host kernel never sees those calls (see the README's table).
REFUSED_UNDER_GVISOR = (
    "bpf", "perf_event_open", "userfaultfd", "init_module", "kexec_load", "open_by_handle_at",
    "mount_tmpfs", "raw_socket_inet", "packet_socket", "keyctl", "add_key",
)  # fmt: skip


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_gvisor_serves_system_calls_with_its_own_kernel(
    engine: str, prepared_run_dir: Path
) -> None:
    command = ["python3", "/run/rayfine/sandbox_probe.py"]
    result = probe_output(run_container(engine, "gvisor", prepared_run_dir, command, {}))
    baseline = probe_output(run_container(engine, "container", prepared_run_dir, command, {}))
    print(f"\n{engine}: probe | runc | gVisor")
    for key in result:
        print(f"{engine}: {key} | {baseline[key]} | {result[key]}")
    assert result["kernel"] != platform.release()
    for name in REFUSED_UNDER_GVISOR:
        assert result[name] != "ok", name
    for path in ("/proc/kcore", "/proc/kallsyms", "/dev/mem", "/sys/kernel/debug"):
        assert result[path] == "absent", path  # nothing of the host kernel is visible
    assert result["CapEff"] == "0000000000000000"
