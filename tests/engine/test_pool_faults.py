"""Warm pools and replica sets on a real engine: fresh environments, kills, replacement, cleanup.

Runs against ``--rayfine-runtime`` (docker by default); containers are
killed with the engine's own command line, as an operator (or the OOM
killer) would.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import subprocess
import time
import uuid

import pytest

import rayfine_core as rf
from rayfine_core import errors
from rayfine_core.pool import POOL_LABEL
from rayfine_core.testing.envs import ENVS


@pytest.fixture(scope="module")
def image(rayfine_runtime, tmp_path_factory):
    """Sample envs built under this branch's own tags (other work builds the shared ones)."""
    built: dict[str, str] = {}

    def build(name: str) -> str:
        if name not in built:
            env_dir = tmp_path_factory.mktemp(name)
            (env_dir / "env.py").write_text(str(ENVS[name]))
            tag = f"pools-test-{name}:{rayfine_runtime}"
            rf.build_image_from_env(env_dir, tag, quiet=True, runtime=rayfine_runtime)
            built[name] = tag
        return built[name]

    return build


def engine_cli(runtime: str) -> str:
    if shutil.which(runtime) is None:
        pytest.skip(f"these tests drive the {runtime!r} command line, which is not installed")
    return runtime


def pool_containers(runtime: str, name: str) -> list:
    return rf.get_runtime(runtime).list_containers({POOL_LABEL: name})


def gone_yet(runtime: str, name: str, ids: list[str]) -> set[str]:
    """Those of ``ids`` still there (listing, not inspecting: inspecting a container being
    removed fails on podman 4.3)."""
    return {r.id for r in pool_containers(runtime, name)} & set(ids)


def wait_until(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_fresh_environment_per_episode(rayfine_runtime, image):
    name = unique("eng-fresh")
    with rf.load_pool(image("kitchen-sink"), 2, runtime=rayfine_runtime, name=name) as pool:
        assert len(pool_containers(rayfine_runtime, name)) == 2
        used = []
        for i in range(4):
            with pool.env(timeout=120) as env:
                assert env.add(i) == i + 2 and env.security()["CapEff"] == "0000000000000000"
                used.append(env.handle.id)
        assert len(set(used)) == 4
        assert wait_until(lambda: not gone_yet(rayfine_runtime, name, used))
    assert pool_containers(rayfine_runtime, name) == []


def test_containers_killed_idle_or_in_use(rayfine_runtime, image):
    cli = engine_cli(rayfine_runtime)
    name = unique("eng-kill")
    image = image("kitchen-sink")
    with rf.load_pool(image, 2, runtime=rayfine_runtime, name=name, health_interval=0.5) as pool:
        idle = [r.id for r in pool_containers(rayfine_runtime, name)]
        subprocess.run([cli, "kill", *idle], check=True, capture_output=True)
        assert wait_until(lambda: not gone_yet(rayfine_runtime, name, idle))
        pool.wait_ready(timeout=120)
        with pool.env(timeout=120) as env:
            assert env.handle.id not in idle
            subprocess.run([cli, "kill", env.handle.id], check=True, capture_output=True)
            with pytest.raises(errors.ContainerDiedError) as info:
                env.add(1)
            assert info.value.exit_code == 137
        with pool.env(timeout=120) as env:
            assert env.add(1) == 3
    assert pool_containers(rayfine_runtime, name) == []


def test_replicas_survive_a_killed_replica(rayfine_runtime, image):
    cli = engine_cli(rayfine_runtime)
    name = unique("eng-rep")
    with rf.load_replicas(
        image("kitchen-sink"), 3, runtime=rayfine_runtime, name=name, health_interval=1.0
    ) as env:
        victim = env.envs[0]
        subprocess.run([cli, "kill", victim.handle.id], check=True, capture_output=True)
        time.sleep(0.5)
        outcomes = []
        with concurrent.futures.ThreadPoolExecutor(8) as threads:
            for future in [threads.submit(env.add, i) for i in range(60)]:
                try:
                    outcomes.append(future.result(60))
                except errors.ContainerDiedError:  # in flight on the victim as it died
                    outcomes.append("died")
        assert outcomes.count("died") <= 1 and len(outcomes) == 60
        assert wait_until(lambda: env.status().ready == 3 and victim.closed)
        assert victim.id not in {e.id for e in env.envs}
    assert pool_containers(rayfine_runtime, name) == []


def test_an_image_that_never_gets_ready(rayfine_runtime, image):
    name = unique("eng-slow")
    pool = rf.load_pool(
        image("slow-import"),
        1,
        runtime=rayfine_runtime,
        name=name,
        start_timeout=2,
        wait=False,
    )
    try:
        assert wait_until(lambda: pool.status().failed >= 2, 60)
        status = pool.status()
        assert "did not become ready within 2s" in status.last_error and status.ready == 0
        assert status.failed <= 4  # backing off: 2 s starts, then 0.5 s, 1 s, 2 s pauses
    finally:
        pool.close()
    assert pool_containers(rayfine_runtime, name) == []
