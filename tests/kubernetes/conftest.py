"""Fixtures for the tests that run on a real two-node Kubernetes (scripts/k8s/cluster.sh).

The ``k8s_cluster`` session fixture uses a cluster that is already up, or
brings one up itself (as root; about 15 s from the cache, 10 minutes the
very first time, when Kubernetes is built) and takes it down at the end.
``RAYFINE_K8S_TESTS=0`` skips the cluster tests instead.  Tests that need
the cluster are marked ``engine`` and ``kubernetes``; the offline unit
tests in this folder need neither.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "scripts" / "k8s" / "cluster.sh"
ACCESS = "RAYFINE_K8S_ACCESS"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kubernetes: needs the two-node test cluster (scripts/k8s/cluster.sh)"
    )


def cluster(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/k8s/cluster.sh ARGS`` and return its result."""
    return subprocess.run(
        ["bash", str(CLUSTER), *args], capture_output=True, text=True, check=check, timeout=1800
    )


def _exports(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            out[key] = shlex.split(value)[0] if value else ""
    return out


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[dict[str, str]]:
    """The cluster's client settings, exported into ``os.environ`` for the session."""
    brought_up = False
    if cluster("status", check=False).returncode != 0:
        if os.environ.get("RAYFINE_K8S_TESTS") == "0":
            pytest.skip("RAYFINE_K8S_TESTS=0: the Kubernetes cluster tests are off")
        if os.geteuid() != 0:
            pytest.skip("the test cluster needs root: run scripts/k8s/cluster.sh up as root")
        up = cluster("up", check=False)
        if up.returncode != 0:
            pytest.fail(f"scripts/k8s/cluster.sh up failed:\n{up.stderr[-3000:]}")
        sys.stderr.write(up.stderr)
        brought_up = True
    exports = _exports(cluster("env").stdout)
    saved = {key: os.environ.get(key) for key in (*exports, "RAYFINE_BASE_IMAGE", ACCESS)}
    os.environ.update(exports)
    os.environ.setdefault("RAYFINE_BASE_IMAGE", "rayfine/python:3.11-bookworm")
    # This host reaches pod IPs (a route the cluster script adds). The API server's pod
    # proxy is tested on its own (test_faults_k8s.py); run everything through it with
    # RAYFINE_K8S_ACCESS=proxy once the server reads X-Rayfine-Token (PROTOCOL.md).
    os.environ.setdefault(ACCESS, "pod-ip")
    try:
        yield exports
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if brought_up:
            cluster("down", check=False)


@pytest.fixture(scope="session")
def rayfine_runtime(k8s_cluster: dict[str, str]) -> Iterator[str]:
    """The conformance suite's runtime fixture, pinned to ``kubernetes`` in this folder."""
    import rayfine_core as rf

    rf.get_runtime("kubernetes").version()
    yield "kubernetes"
    rf.cleanup_all_environments()


@pytest.fixture(scope="session")
def cluster_sh(k8s_cluster: dict[str, str]):
    """``cluster_sh(*args)``: run scripts/k8s/cluster.sh (node-stop, node-start, ...)."""
    return cluster


@pytest.fixture(scope="session")
def kubectl(k8s_cluster: dict[str, str]):
    """``kubectl(*args)`` -> stdout, against the test cluster (its own 1.20 kubectl)."""

    def run(*args: str, check: bool = True) -> str:
        result = subprocess.run(
            [k8s_cluster["RAYFINE_K8S_KUBECTL"], *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    return run
