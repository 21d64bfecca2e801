"""The plugin manager: lazy, by-name runtimes, broken plugins reported not fatal, strict hooks."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import rayfine_core as rf
from rayfine_core.errors import PluginError, UnknownRuntimeError
from rayfine_core.plugins import PluginConflictError, get_manager, register, reset, unregister


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


def test_import_loads_no_plugin():
    code = (
        "import sys, rayfine_core; "
        "assert not [m for m in sys.modules if m.startswith(('rayfine_docker', 'rayfine_podman',"
        " 'docker', 'podman'))], sorted(sys.modules); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_entry_point_runtimes_name_their_distribution():
    registry = get_manager().runtime_registry()
    assert registry["docker"].distribution.startswith("rayfine-docker")
    assert registry["process"].distribution.startswith("rayfine-core")


def test_runtime_registered_in_code_is_picked_by_name():
    name = register(make_plugin("fake"), name="fake-plugin")
    try:
        assert isinstance(rf.get_runtime("fake"), FakeRuntime)
        assert rf.get_runtime("fake") is rf.get_runtime("fake")
    finally:
        unregister(name)
    assert "fake" not in rf.available_runtimes()


def test_registering_a_hook_plugin_keeps_the_runtimes_made():
    runtime = rf.get_runtime("process")
    name = register(types.SimpleNamespace(), name="hookless")
    try:
        assert rf.get_runtime("process") is runtime
    finally:
        unregister(name)


def test_unknown_runtime_lists_choices_and_install_hint():
    with pytest.raises(UnknownRuntimeError) as info:
        rf.get_runtime("nope")
    message = str(info.value)
    assert "Choose one of: " in message and "docker" in message and "process" in message
    assert "pip install 'rayfine-core[nope]'" in message


def test_duplicate_runtime_names_conflict():
    first = register(make_plugin("twin"), name="first")
    second = register(make_plugin("twin"), name="second")
    try:
        with pytest.raises(PluginConflictError, match="'first'.*'second'"):
            rf.get_runtime("twin")
    finally:
        unregister(first)
        unregister(second)


def test_plugin_whose_hook_raises_is_reported_not_fatal():
    @rf.hookimpl
    def rayfine_runtimes():
        raise RuntimeError("boom")

    name = register(types.SimpleNamespace(rayfine_runtimes=rayfine_runtimes), name="broken")
    try:
        assert "docker" in rf.available_runtimes()
        assert "boom" in get_manager().load_errors["broken"]
        with pytest.raises(UnknownRuntimeError, match="broken.*boom"):
            rf.get_runtime("nope")
    finally:
        unregister(name)
        get_manager().load_errors.pop("broken", None)


def test_misspelt_hook_is_a_clear_error_naming_the_plugin():
    @rf.hookimpl
    def rayfine_strat(request, runtime):
        pass

    with pytest.raises(PluginError, match=r"'typo'.*'rayfine_strat'.*did you mean 'rayfine_start'"):
        register(types.SimpleNamespace(rayfine_strat=rayfine_strat), name="typo")
    assert get_manager().pm.get_plugin("typo") is None


def test_call_hook_must_be_a_wrapper():
    @rf.hookimpl
    def rayfine_call(call):
        pass

    with pytest.raises(PluginError, match="must be a wrapper"):
        register(types.SimpleNamespace(rayfine_call=rayfine_call), name="not-a-wrapper")


def _entry_point_dist(tmp_path, name: str, module: str, source: str = "") -> None:
    dist = tmp_path / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[rayfine]\n{name} = {module}\n")
    if source:
        (tmp_path / f"{module}.py").write_text(source)


def test_broken_entry_point_is_reported(tmp_path, monkeypatch):
    """A distribution whose rayfine entry point fails to import is skipped with the reason."""
    _entry_point_dist(tmp_path, "brokenplug", "brokenplug_missing_module")
    monkeypatch.syspath_prepend(str(tmp_path))
    reset()
    try:
        assert "docker" in rf.available_runtimes()
        error = get_manager().load_errors["brokenplug"]
        assert "ModuleNotFoundError" in error and "brokenplug 1.0" in error
    finally:
        monkeypatch.undo()
        reset()


def test_entry_point_with_a_misspelt_hook_is_skipped_with_the_reason(tmp_path, monkeypatch):
    source = (
        "from rayfine_core import hookimpl\n"
        "@hookimpl\n"
        "def rayfine_stopp(handle, reason):\n"
        "    pass\n"
    )
    _entry_point_dist(tmp_path, "typoplug", "typoplug_module", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    reset()
    try:
        assert "docker" in rf.available_runtimes()
        error = get_manager().load_errors["typoplug"]
        assert "unknown hook 'rayfine_stopp'" in error and "rayfine_stop" in error
        assert get_manager().pm.get_plugin("typoplug") is None
    finally:
        monkeypatch.undo()
        reset()


def test_autoload_can_be_disabled(monkeypatch):
    monkeypatch.setenv("RAYFINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    reset()
    try:
        assert rf.available_runtimes() == []
    finally:
        monkeypatch.delenv("RAYFINE_DISABLE_PLUGIN_AUTOLOAD")
        reset()


def test_allowlist(monkeypatch):
    monkeypatch.setenv("RAYFINE_PLUGINS", "docker")
    reset()
    try:
        assert rf.available_runtimes() == ["docker"]
    finally:
        monkeypatch.delenv("RAYFINE_PLUGINS")
        reset()


def test_shutdown_stops_environments_before_closing_runtimes():
    order: list[str] = []

    class Closing(FakeRuntime):
        def close(self) -> None:
            order.append("close")

    @rf.hookimpl
    def rayfine_runtimes():
        return [rf.RuntimeSpec(name="closing", factory=Closing)]

    manager = get_manager()
    name = register(types.SimpleNamespace(rayfine_runtimes=rayfine_runtimes), name="closing")
    try:
        rf.get_runtime("closing")
        manager.before_shutdown(lambda: order.append("environments"))
        manager.shutdown()
        assert order == ["environments", "close"]
    finally:
        unregister(name)
        reset()


def test_a_reset_stops_environments_yet_admits_new_starts(kitchen):
    """Only the interpreter's exit closes the registry for good; a manager reset does not."""
    env = rf.load_env(kitchen, runtime="process")
    reset()
    assert env.closed
    with rf.load_env(kitchen, runtime="process") as again:
        assert again.is_ready()
    assert rf.list_active_environments() == []
