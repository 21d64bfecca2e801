"""What the podman runtime adds beyond the conformance suite: finding or starting
the service, Docker-like image names, and TCP publishing with limits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import rayfine_core as rf
from rayfine_core import errors, labels

pytest.importorskip(
    "rayfine_podman", reason="pip install -e ./rayfine_podman (scripts/bootstrap.sh does)"
)

from rayfine_podman import service
from rayfine_podman.references import matches
from rayfine_podman.runtime import PodmanRuntime

needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")


@pytest.fixture
def no_known_service(monkeypatch):
    """Pretend no service is configured or listening where podman usually puts one."""
    monkeypatch.delenv("RAYFINE_PODMAN_URL", raising=False)
    monkeypatch.delenv("CONTAINER_HOST", raising=False)
    monkeypatch.setattr(service, "candidate_sockets", lambda: [])


def test_listing_plugins_does_not_import_podman_py():
    code = (
        "import sys, rayfine_core as rf; assert 'podman' in rf.available_runtimes();"
        " assert 'podman' not in sys.modules, 'podman-py imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "reference, tags, found",
    [
        ("foo:bar", ["localhost/foo:bar"], True),
        ("foo", ["localhost/foo:latest"], True),
        ("localhost/foo:bar", ["localhost/foo:bar"], True),
        ("rayfine/python:3.11", ["localhost/rayfine/python:3.11"], True),
        ("python:3.11", ["docker.io/library/python:3.11"], True),
        ("python:3.11", ["localhost/rayfine/python:3.11"], False),  # podman's suffix match
        ("foo:bar", ["localhost/foo:baz"], False),
        ("quay.io/x/foo:1", ["localhost/x/foo:1"], False),
        ("0123456789ab", [], True),  # an id prefix
    ],
)
def test_image_references_resolve_as_docker_would(reference, tags, found):
    assert matches(reference, "0123456789abcdef" * 4, tags) is found


def test_a_configured_url_is_used_and_not_replaced(monkeypatch):
    monkeypatch.setenv("RAYFINE_PODMAN_URL", "unix:///nonexistent/podman.sock")
    runtime = PodmanRuntime()
    with pytest.raises(
        errors.EngineUnavailableError, match="nonexistent/podman.sock.*RAYFINE_PODMAN_URL"
    ):
        runtime.version()
    runtime.close()


def test_without_podman_the_error_says_what_to_install(no_known_service, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(errors.EngineUnavailableError, match="Install podman"):
        PodmanRuntime().version()


def test_a_service_that_cannot_start_reports_its_output(no_known_service, monkeypatch, tmp_path):
    fake = tmp_path / "podman"
    fake.write_text("#!/bin/sh\necho 'Error: cannot set up storage' >&2\nexit 125\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    runtime = PodmanRuntime()
    with pytest.raises(errors.EngineUnavailableError, match="(?s)exited.*cannot set up storage"):
        runtime.version()
    assert runtime._service._process is None and runtime._service._dir is None


@needs_podman
def test_a_private_service_is_started_and_stopped_with_the_runtime(no_known_service):
    runtime = PodmanRuntime()
    try:
        assert runtime.version()
        process, socket_dir = runtime._service._process, runtime._service._dir
        assert process is not None and process.poll() is None
    finally:
        runtime.close()
    assert process.wait(5) is not None
    assert not socket_dir.exists()


@needs_podman
def test_tcp_transport_with_limits_and_log_following(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "RAYFINE_BASE_IMAGE", os.environ.get("RAYFINE_BASE_IMAGE", "rayfine/python:3.11-bookworm")
    )
    (tmp_path / "env.py").write_text(
        "print('env loaded', flush=True)\n\ndef ping():\n    return 'pong'\n"
    )
    image = "rayfine-test-podman:latest"
    rf.build_image_from_env(tmp_path, image, quiet=True, runtime="podman")
    runtime = rf.get_runtime("podman")
    with rf.load_env(
        image, runtime="podman", transport="tcp", mem_limit="256m", cpu_limit=0.5, pids_limit=64
    ) as env:
        assert env.ping() == "pong"
        assert env.handle.endpoint.port and env.handle.endpoint.unix_socket is None
        host = runtime.client.containers.get(env.handle.id).attrs["HostConfig"]
        assert (host["Memory"], host["CpuQuota"], host["PidsLimit"]) == (256 * 2**20, 50_000, 64)
        (record,) = runtime.list_containers({labels.ENV_ID: env.id})
        assert record.created and record.image.endswith(image)
        container_id = env.handle.id
        assert "env loaded" in runtime.logs(container_id)
    assert runtime.health(container_id).status == "removed"
