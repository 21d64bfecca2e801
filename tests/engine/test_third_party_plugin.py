"""A runtime from an out-of-tree distribution (examples/rayfine-example-runtime) is a first-class runtime.

Everything goes through the public API and the installed entry point, as a
user of a third-party plugin would see it.
"""

from __future__ import annotations

import os

import pytest

import rayfine_core as rf
from rayfine_core import labels
from rayfine_core.errors import UnknownRuntimeError
from rayfine_core.plugins.manager import get_manager

pytest.importorskip(
    "rayfine_example_runtime",
    reason="pip install -e examples/rayfine-example-runtime (scripts/bootstrap.sh does)",
)

ENV_PY = """
import os

def env(name: str):
    return os.environ.get(name)
"""


def test_example_runtime_is_listed_with_its_distribution():
    assert "example" in rf.available_runtimes()
    entry = get_manager().runtime_registry()["example"]
    assert entry.distribution.startswith("rayfine-example-runtime ")
    assert entry.plugin == "example"


def test_load_env_picks_the_example_runtime(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "RAYFINE_BASE_IMAGE", os.environ.get("RAYFINE_BASE_IMAGE", "rayfine/python:3.11-bookworm")
    )
    (tmp_path / "env.py").write_text(ENV_PY)
    image = "rayfine-test-third-party:latest"
    rf.build_image_from_env(tmp_path, image, quiet=True, runtime="example")
    assert rf.get_runtime("example").image_labels(image)["example.wrapped"] == "1"
    with rf.load_env(image, runtime="example") as env:
        assert env.runtime_name == "example" and env.handle.runtime == "example"
        assert env.env("EXAMPLE_WRAPPED") == "1"
        # Seen from the engine's own runtime, the container carries the plugin's label.
        (record,) = rf.get_runtime("docker").list_containers({labels.ENV_ID: env.id})
        assert record.labels["example.wrapped"] == "1"
        assert record.name == env.name
    assert rf.get_runtime("example").list_containers({labels.ENV_ID: env.id}) == []


def test_unknown_runtime_names_every_installed_one():
    with pytest.raises(UnknownRuntimeError) as info:
        rf.get_runtime("nope")
    message = str(info.value)
    for name in ("docker", "podman", "example"):
        assert name in message
