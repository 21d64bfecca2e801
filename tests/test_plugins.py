"""The plugin manager: lazy, by-name runtimes, broken plugins reported not fatal."""

from __future__ import annotations

import sys
import types

import pytest

import rayfine_core as rf
from rayfine_core import plugins
from rayfine_core.errors import UnknownRuntimeError
from rayfine_core.plugins import PluginConflictError


class FakeRuntime(rf.Runtime):
    name = "fake"

    def build(self, request):  # pragma: no cover - not exercised
        raise NotImplementedError

    image_labels = start = health = logs = stop = list_containers = build


def make_plugin(*names: str) -> types.SimpleNamespace:
    @rf.hookimpl
    def rayfine_runtimes():
        return [rf.RuntimeSpec(name=n, factory=FakeRuntime) for n in names]

    return types.SimpleNamespace(rayfine_runtimes=rayfine_runtimes)


def test_import_does_not_build_the_plugin_manager():
    code = "import rayfine_core, rayfine_core.plugins as p; assert p._pm is None; print('ok')"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_docker_is_installed_through_its_entry_point():
    assert "docker" in rf.available_runtimes()
    assert plugins.runtime_registry()["docker"].distribution.startswith("rayfine-docker")


def test_runtime_registered_in_code_is_picked_by_name():
    name = plugins.register(make_plugin("fake"), name="fake-plugin")
    try:
        assert isinstance(rf.get_runtime("fake"), FakeRuntime)
        assert rf.get_runtime("fake") is rf.get_runtime("fake")
    finally:
        plugins.unregister(name)
    assert "fake" not in rf.available_runtimes()


def test_unknown_runtime_lists_choices_and_install_hint():
    with pytest.raises(UnknownRuntimeError) as info:
        rf.get_runtime("nope")
    message = str(info.value)
    assert "Choose one of: " in message and "docker" in message
    assert "pip install 'rayfine-core[nope]'" in message


def test_duplicate_runtime_names_conflict():
    first = plugins.register(make_plugin("twin"), name="first")
    second = plugins.register(make_plugin("twin"), name="second")
    try:
        with pytest.raises(PluginConflictError, match="'first'.*'second'"):
            rf.get_runtime("twin")
    finally:
        plugins.unregister(first)
        plugins.unregister(second)


def test_plugin_whose_hook_raises_is_reported_not_fatal():
    @rf.hookimpl
    def rayfine_runtimes():
        raise RuntimeError("boom")

    name = plugins.register(types.SimpleNamespace(rayfine_runtimes=rayfine_runtimes), name="broken")
    try:
        assert "docker" in rf.available_runtimes()
        assert "boom" in plugins.load_errors()["broken"]
        with pytest.raises(UnknownRuntimeError, match="broken.*boom"):
            rf.get_runtime("nope")
    finally:
        plugins.unregister(name)
        plugins._load_errors.pop("broken", None)


def test_broken_entry_point_is_reported(tmp_path, monkeypatch):
    """A distribution whose rayfine entry point fails to import is skipped with the reason."""
    dist = tmp_path / "brokenplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[rayfine]\nbrokenplug = brokenplug_missing_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.reset()
    try:
        assert "docker" in rf.available_runtimes()
        error = plugins.load_errors()["brokenplug"]
        assert "ModuleNotFoundError" in error and "brokenplug 1.0" in error
    finally:
        monkeypatch.undo()
        plugins.reset()


def test_autoload_can_be_disabled(monkeypatch):
    monkeypatch.setenv("RAYFINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins.reset()
    try:
        assert rf.available_runtimes() == []
    finally:
        monkeypatch.delenv("RAYFINE_DISABLE_PLUGIN_AUTOLOAD")
        plugins.reset()


def test_allowlist(monkeypatch):
    monkeypatch.setenv("RAYFINE_PLUGINS", "docker")
    plugins.reset()
    try:
        assert rf.available_runtimes() == ["docker"]
    finally:
        monkeypatch.delenv("RAYFINE_PLUGINS")
        plugins.reset()
