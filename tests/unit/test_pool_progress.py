"""Progress and status of pools, offline: callbacks, the terminal bar, status files, the CLI."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import select
import stat
import time

import pytest

import rayfine_core as rf
from rayfine_core.cli import main
from rayfine_core.pool import statusfile
from rayfine_core.pool.progress import Bar, Progress


@pytest.fixture(autouse=True)
def _private_run_root(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))


def test_on_progress_follows_a_fill(kitchen):
    seen: list[Progress] = []
    with rf.load_pool(kitchen, 3, runtime="process", name="unit-prog", on_progress=seen.append):
        pass
    assert seen[0].ready == 0 and any(p.done for p in seen)
    assert all(p.label == "pool unit-prog" and p.total == 3 for p in seen)
    readies = [p.ready for p in seen]
    assert max(readies) == 3


def test_a_callback_that_raises_changes_nothing(kitchen, caplog):
    def broken(progress: Progress) -> None:
        raise RuntimeError("callback bug")

    with rf.load_pool(kitchen, 1, runtime="process", on_progress=broken) as pool:
        with pool.env() as env:
            assert env.add(1) == 3
    assert "callback bug" in caplog.text


def test_aload_envs_reports_progress(kitchen):
    seen: list[Progress] = []

    async def main_():
        envs = await rf.aload_envs(kitchen, 3, runtime="process", on_progress=seen.append)
        await asyncio.gather(*(e.cleanup() for e in envs))

    asyncio.run(main_())
    assert [p.ready for p in seen] == [0, 1, 2, 3] and seen[-1].done
    assert seen[0].starting == 3 and seen[-1].starting == 0 and seen[0].label == kitchen


def test_no_bar_into_a_pipe_or_file(kitchen, capfd):
    assert Bar.wanted(None, io.StringIO()) is None and Bar.wanted(False) is None
    with rf.load_pool(kitchen, 1, runtime="process"):  # stderr is captured: not a terminal
        pass
    assert capfd.readouterr().err == ""


def test_the_bar_on_a_terminal_uses_no_escape_sequences():
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as terminal:
        bar = Bar.wanted(None, terminal)
        assert bar is not None
        for ready in range(4):
            bar.show(Progress("pool demo", 3, ready, 3 - ready, 0, ready * 0.5))
            time.sleep(0.11)
        bar.close(Progress("pool demo", 3, 3, 0, 1, 2.0))
        drawn = ""
        while select.select([master], [], [], 0.5)[0]:
            drawn += os.read(master, 65536).decode()
    os.close(master)
    assert "\x1b" not in drawn and "\r" in drawn and drawn.endswith("\n")
    assert "3/3 ready, 0 starting, 1 failed" in drawn and "[" + "#" * 24 + "]" in drawn


def test_status_files_and_the_cli(kitchen, capsys):
    with rf.load_pool(kitchen, 2, runtime="process", name="unit-cli") as pool:
        with pool.env():
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                records = [r for r in statusfile.read_all() if r["name"] == "unit-cli"]
                if records and records[0]["in_use"] == 1 and records[0]["ready"] == 2:
                    break
                time.sleep(0.1)
            path = statusfile.path_of("unit-cli")
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert main(["pool", "status", "unit-cli", "--runtime", "process", "--json"]) == 0
            shown = json.loads(capsys.readouterr().out)
            (record,) = shown["pools"]
            assert (record["kind"], record["in_use"], record["ready"]) == ("warm", 1, 2)
            assert record["pid"] == os.getpid() and record["image"] == kitchen
            (group,) = shown["containers"]
            assert group["owner"] == f"pid {os.getpid()}" and group["statuses"] == {"running": 3}
            assert main(["pool", "status", "--runtime", "process"]) == 0
            table = capsys.readouterr().out
            assert "unit-cli" in table and "2/2" in table
    assert not statusfile.path_of("unit-cli").exists()
    assert main(["pool", "status", "unit-cli", "--no-containers"]) == 0
    assert "no live pools named unit-cli" in capsys.readouterr().err


def test_stale_status_files_are_dropped():
    path = statusfile.directory() / "999999-ghost.json"
    path.write_text(json.dumps({"name": "ghost", "pid": 999999, "process_start": "1.0"}))
    assert [r for r in statusfile.read_all() if r["name"] == "ghost"] == []
    assert not path.exists()


def test_limits_command(capsys, monkeypatch):
    monkeypatch.setenv("RAYFINE_HOST_MAX_STARTS", "3")
    assert main(["pool", "limits", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["max_starts"] == 3 and shown["usage"]["starts"]["taken"] == 0
    monkeypatch.setenv("RAYFINE_HOST_MAX_STARTS", "zero")
    assert main(["pool", "limits"]) == 2
    assert "RAYFINE_HOST_MAX_STARTS" in capsys.readouterr().err
