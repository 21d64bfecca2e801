"""Fixtures for the egress tests: a fake internet in a namespace, fake DNS, a proxy, a run dir."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayfine_core.egress import EgressPolicy, EgressProxy, ProxyLimits, StaticResolver

from .netns import FakeInternet, can_create


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "netns: creates network namespaces and veth pairs (needs root and iproute2)"
    )
    config.addinivalue_line("markers", "gvisor: runs containers under gVisor's runsc")


ALLOW = (
    "api.allowed.test",
    "*.models.test",
    "api.allowed.test:8443",
    "banner.allowed.test:2525",
    "closed.allowed.test:81",
    # Listed on purpose: names whose DNS answers point inside (the tricks the proxy must catch).
    "rebind-loopback.test",
    "metadata.test",
    "lan.test",
    "self.test",
    "mapped.test",
    "unresolvable.test",
)


@pytest.fixture(scope="session")
def fake_internet() -> Iterator[FakeInternet]:
    reason = can_create()
    if reason:
        pytest.skip(f"egress tests with a fake internet: {reason}")
    workdir = Path(tempfile.mkdtemp(prefix="rayfine-egress-test-"))
    workdir.chmod(0o755)
    fake = FakeInternet.create(workdir)
    try:
        yield fake
    finally:
        fake.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def fake_dns(fake: FakeInternet) -> dict[str, list[str]]:
    return {
        "api.allowed.test": [fake.allowed_ip],
        "other.allowed.test": [fake.allowed_ip],
        "x.models.test": [fake.allowed_ip],
        "banner.allowed.test": [fake.allowed_ip],
        "closed.allowed.test": [fake.allowed_ip],
        "v6.models.test": [fake.server_v6],
        "denied.test": [fake.denied_ip],
        "rebind-loopback.test": ["127.0.0.1"],
        "metadata.test": ["169.254.169.254"],
        "lan.test": ["10.1.2.3"],
        "self.test": [fake.host_ip],
        "mapped.test": ["::ffff:127.0.0.1"],
    }


@pytest.fixture(scope="session")
def resolver(fake_internet: FakeInternet) -> StaticResolver:
    return StaticResolver(fake_dns(fake_internet))


@pytest.fixture(scope="session")
def policy(fake_internet: FakeInternet) -> EgressPolicy:
    # The fake internet lives in documentation space, private by default: allow just it.
    return EgressPolicy(
        ALLOW, allow_private=[str(fake_internet.subnet), str(fake_internet.v6_subnet)]
    )


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A run dir as the core makes it: 0777, inside a private 0700 directory."""
    root = Path(tempfile.mkdtemp(prefix="rayfine-egress-run-"))
    root.chmod(0o700)
    path = root / "env"
    path.mkdir()
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def proxy(resolver: StaticResolver) -> Iterator[EgressProxy]:
    instance = EgressProxy(
        resolver=resolver, limits=ProxyLimits(head_timeout=2, connect_timeout=3, idle_timeout=30)
    )
    try:
        yield instance
    finally:
        instance.close()
