"""Attacks from the security review, replayed on docker and podman: each must fail.

Cross-user attacks run as a throwaway unprivileged user this module creates
(and removes); it has no engine access, as a neighbour on a shared host would
not.  The attacker's code runs with the system Python (/usr/bin/python3).
Traffic goes only to this host's Unix sockets and to containers the tests start.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import rayfine_core as rf
from rayfine_core import errors

pytestmark = pytest.mark.engine

RUNTIMES = ["docker", "podman"]
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def attacker() -> Iterator[pwd.struct_passwd]:
    """A fresh unprivileged local user, removed afterwards."""
    if os.getuid() != 0 or not Path(SYSTEM_PYTHON).exists():
        pytest.skip("creating a throwaway user needs root and a system python3")
    name = f"rfatk{secrets.token_hex(3)}"
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


def as_attacker(user: pwd.struct_passwd, code: str, **env: str) -> dict:
    """Run ``code`` as ``user``; it prints one JSON line, returned here."""
    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env},
        cwd="/tmp",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(params=RUNTIMES)
def runtime(request) -> str:
    return str(request.param)


@pytest.fixture
def kitchen(runtime, sample_image) -> str:
    return sample_image("kitchen-sink", runtime)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A world-writable sticky directory like /tmp (every user can create names in it)."""
    path = Path(tempfile.mkdtemp(prefix="rayfine-sec-", dir="/tmp"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_squatted_private_directory_is_refused(attacker, kitchen, runtime, shared_tmp):
    """Another user creates /tmp/rayfine-<uid> first (no XDG_RUNTIME_DIR: root, cron, CI)."""
    squatted = shared_tmp / f"rayfine-{os.getuid()}"
    made = as_attacker(
        attacker,
        f"""
        import json, os
        os.mkdir({str(squatted)!r}, 0o777); os.chmod({str(squatted)!r}, 0o777)
        print(json.dumps({{"made": True}}))
        """,
    )
    assert made == {"made": True}
    code = f"""
import rayfine_core as rf
try:
    rf.load_env({kitchen!r}, runtime={runtime!r})
except rf.errors.ValidationError as exc:
    print("refused:", exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(shared_tmp), "XDG_RUNTIME_DIR": ""},
        timeout=120,
    ).stdout
    assert "refused:" in out and f"belongs to uid {attacker.pw_uid}" in out, out
    assert not any(squatted.iterdir())  # nothing of ours went in there


def test_another_user_reaches_neither_the_socket_nor_the_token(attacker, kitchen, runtime):
    with rf.load_env(kitchen, runtime=runtime) as env:
        sock = env.handle.endpoint.unix_socket
        assert sock is not None
        tried = as_attacker(
            attacker,
            f"""
            import json, os, socket
            out = {{}}
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect({sock!r}); out["connect"] = "connected"
            except OSError as exc:
                out["connect"] = type(exc).__name__
            try:
                os.listdir(os.path.dirname({sock!r})); out["list"] = "listed"
            except OSError as exc:
                out["list"] = type(exc).__name__
            print(json.dumps(out))
            """,
        )
        assert tried == {"connect": "PermissionError", "list": "PermissionError"}
        assert env.add(1) == 3


ENV_DROPS_SETUID = '''
import os, shutil, stat


def drop(name: str) -> dict:
    """Plant a setuid copy of a shell where the host can see it (the shared run dir)."""
    path = os.path.join("/run/rayfine", name)
    shutil.copy("/bin/sh", path)
    try:
        os.chmod(path, 0o4755)
    except OSError as exc:
        return {"chmod": type(exc).__name__}
    return {"chmod": "done", "uid": os.stat(path).st_uid}
'''


@pytest.mark.parametrize("user", ["10001:10001", "root"])
def test_a_setuid_file_dropped_in_the_run_dir_gives_nobody_anything(
    attacker, runtime, user, tmp_path
):
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "env.py").write_text(ENV_DROPS_SETUID)
    image = f"rayfine-test-setuid:{runtime}"
    rf.build_image_from_env(env_dir, image, quiet=True, runtime=runtime)
    with rf.load_env(image, runtime=runtime, user=user) as env:
        dropped = env.drop("sh-suid")
        planted = Path(env.handle.endpoint.unix_socket or "").parent / "sh-suid"
        info = planted.lstat()
        if user != "root":  # the default: it can only ever be the unprivileged uid's file
            assert info.st_uid != 0 and info.st_uid == 10001, dropped
        # Opted into root, it may be root's; either way the directory keeps every other user out.
        tried = as_attacker(
            attacker,
            f"""
            import json, subprocess
            try:
                out = subprocess.run([{str(planted)!r}, "-c", "id -u"], capture_output=True)
                print(json.dumps({{"ran": out.stdout.decode().strip()}}))
            except OSError as exc:
                print(json.dumps({{"ran": type(exc).__name__}}))
            """,
        )
        assert tried == {"ran": "PermissionError"}


def test_a_neighbour_container_on_the_bridge_gets_401(runtime, kitchen, sample_image):
    """A TCP endpoint is reachable from other containers on the default bridge: the token holds."""
    with rf.load_env(kitchen, runtime=runtime, transport="tcp") as env:
        inspect = subprocess.run(
            [runtime, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", env.handle.id],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not inspect:
            pytest.skip(f"{runtime} gives this container no bridge address")
        probe = (
            "import json, urllib.request, urllib.error\n"
            f"url = 'http://{inspect}:8000/call'\n"
            'request = urllib.request.Request(url, data=b\'{"method": "add", "args": [1]}\')\n'
            "try:\n"
            "    urllib.request.urlopen(request, timeout=10); print('answered')\n"
            "except urllib.error.HTTPError as exc:\n"
            "    print(exc.code)\n"
        )
        out = subprocess.run(
            [runtime, "run", "--rm", "rayfine/python:3.11-bookworm", "python3", "-c", probe],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.stdout.strip() == "401", out.stdout + out.stderr


def test_thousands_of_idle_connections_do_not_lock_callers_out(runtime, kitchen):
    """Idle connections up to the server's cap and beyond: a real caller still gets through."""
    with rf.load_env(kitchen, runtime=runtime) as env:
        path = env.handle.endpoint.unix_socket
        idle: list[socket.socket] = []
        try:
            for _ in range(1500):
                sock = socket.socket(socket.AF_UNIX)
                sock.settimeout(5)
                try:
                    sock.connect(path)
                except OSError:
                    sock.close()
                    break
                idle.append(sock)
            started = time.monotonic()
            assert env.add(1) == 3
            assert time.monotonic() - started < 10
        finally:
            for sock in idle:
                sock.close()


def test_an_invalid_variable_name_never_prints_its_value(tmp_path):
    rayfine = Path(sys.executable).with_name("rayfine")
    out = subprocess.run(
        [str(rayfine), "run", "x:latest", "--env", "API-KEY=S3CRET-VALUE"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "S3CRET-VALUE" not in out.stdout + out.stderr


def test_names_with_a_trailing_newline_are_refused():
    for options in ({"container_name": "ok\n"}, {"env_vars": {"K\n": "v"}}):
        with pytest.raises(errors.ValidationError):
            rf.load_env("x:latest", runtime="docker", **options)
