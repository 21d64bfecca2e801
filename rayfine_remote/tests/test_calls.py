"""Remote mode through a gateway: the same Environment, errors, timeouts and cleanup as local mode."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

import rayfine_core as rf
from rayfine_core import errors
from rayfine_core.runtime.types import Endpoint
from rayfine_core.testing.process_runtime import ProcessRuntime
from rayfine_core.transport.client import AsyncClient


def engine() -> ProcessRuntime:
    runtime = rf.get_runtime("process")
    assert isinstance(runtime, ProcessRuntime)
    return runtime


def test_calls_and_cleanup(gateway, connect, sink):
    with rf.load_env(sink, env_vars={"GREETING": "hi"}, **connect()) as env:
        assert env.runtime_name == "remote"
        assert env.add(1) == 3 and env.add(2, b=5) == 7 and env.square(3) == 9
        assert env.env("GREETING") == "hi" and env.env("RAYFINE_TOKEN") is None
        assert env.echo(1, "x", flag=True) == {"args": [1, "x"], "kwargs": {"flag": True}}
        assert {m.name for m in env.list_methods()} >= {"add", "echo", "square"}
        assert env.is_ready()
        env.shout("remote-marker")
        deadline = time.monotonic() + 5
        while "remote-marker" not in env.logs(10) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "remote-marker" in env.logs(10)
        (record,) = gateway.served.gateway.table.of("alice")
        container = record.handle.id
        assert engine().health(container).running
    assert env.closed and gateway.served.gateway.table.of("alice") == []
    assert engine().health(container).status == "removed"
    with pytest.raises(errors.EnvironmentClosedError):
        env.add(1)


def test_typed_errors_carry_remote_tracebacks(gateway, connect, sink):
    with rf.load_env(sink, **connect()) as env:
        with pytest.raises(errors.RemoteException) as info:
            env.fail("custom")
        assert info.value.remote_type == "ValueError"
        assert "raise ValueError(message)" in info.value.remote_traceback
        with pytest.raises(errors.MethodNotFoundError):
            env.nope()
        with pytest.raises(errors.InvalidArgumentsError):
            env.add(1, 2, 3)
        with pytest.raises(errors.ResultNotSerializableError):
            env.unserialisable()
        with pytest.raises(errors.CallTimeout):
            env.sleep(5, timeout=0.5)
        assert env.add(1) == 3


def test_container_death_and_restart(gateway, connect, sink):
    with rf.load_env(sink, restart=True, **connect()) as env:
        with pytest.raises(errors.ContainerDiedError) as info:
            env.die(3)
        assert info.value.exit_code == 3
        assert env.add(1) == 3  # a fresh container
        assert len(gateway.served.gateway.table.of("alice")) == 1


def test_asyncio_many_in_flight(gateway, connect, remote_image):
    image = remote_image("marker", MARKER_ENV)

    async def main() -> None:
        async with rf.aload_env(image, **connect()) as env:
            answers = await asyncio.gather(*(env.echo(i) for i in range(256)))
            assert answers == [{"args": [i], "kwargs": {}} for i in range(256)]

    asyncio.run(main())


def test_cancellation_ends_the_call_as_in_local_mode(gateway, connect, remote_image, tmp_path):
    """Whatever the server does with a call whose client hung up, remote mode does the same."""
    image = remote_image("marker", MARKER_ENV)
    local = "rayfine-remote-marker:local"
    rf.build_image_from_env(_env_dir(tmp_path), local, quiet=True, runtime="process")

    async def cancelled_call_finished(**where: object) -> bool:
        mark = tmp_path / f"mark-{where.get('mode', 'local')}"
        async with rf.aload_env(**where) as env:
            task = asyncio.ensure_future(env.mark_later(str(mark), 1.0))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(1.5)
            assert await env.echo(1) == {"args": [1], "kwargs": {}}  # still serving
        return mark.exists()

    remote = asyncio.run(cancelled_call_finished(image=image, **connect()))
    assert remote == asyncio.run(cancelled_call_finished(image=local, runtime="process"))


def test_a_client_hanging_up_closes_the_servers_connection(gateway, connect, sink, tmp_path):
    """The gateway's half of cancellation: the call's connection to the server is closed."""
    started, closed = threading.Event(), threading.Event()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "silent.sock"))
    listener.listen()

    def silent_server() -> None:  # reads one request, never answers, notices the close
        connection, _ = listener.accept()
        received = b""
        while b"\r\n\r\n" not in received:
            received += connection.recv(65536)
        started.set()
        while connection.recv(65536):
            pass
        closed.set()

    threading.Thread(target=silent_server, daemon=True).start()

    async def main() -> None:
        async with rf.aload_env(sink, **connect()) as env:
            (record,) = gateway.served.gateway.table.of("alice")
            record.upstream = AsyncClient(Endpoint(unix_socket=str(tmp_path / "silent.sock")))
            task = asyncio.ensure_future(env.add(1))
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, started.wait, 5)
            task.cancel()
            assert await loop.run_in_executor(None, closed.wait, 5)

    asyncio.run(main())
    listener.close()


def _env_dir(tmp_path):
    directory = tmp_path / "marker-env"
    directory.mkdir()
    (directory / "env.py").write_text(MARKER_ENV)
    return directory


MARKER_ENV = """
import asyncio, pathlib

async def mark_later(path: str, seconds: float) -> bool:
    await asyncio.sleep(seconds)
    pathlib.Path(path).write_text("done")
    return True

async def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}
"""


def test_options_of_remote_mode(gateway, connect, sink, monkeypatch):
    monkeypatch.delenv("RAYFINE_REMOTE_URL")
    with pytest.raises(errors.ValidationError, match="needs the gateway's url"):
        rf.load_env(sink, mode="remote")
    with pytest.raises(errors.ValidationError, match="mode='remote'"):
        rf.load_env(sink, url=gateway.url)
    with pytest.raises(errors.ValidationError, match="Refusing plain HTTP"):
        rf.load_env(sink, mode="remote", url="http://198.51.100.7:8443", token="x")
    with pytest.raises(errors.ValidationError, match="64 hex digits"):
        rf.load_env(sink, mode="remote", url="https://127.0.0.1:1#sha256=abc", token="x")
    assert "token" not in repr(
        rf.environment.options.EnvOptions(sink, mode="remote", url=gateway.url, token="s3cr3t")
    )


def test_gateway_out_of_reach_is_engine_unavailable(sink):
    with pytest.raises(errors.EngineUnavailableError, match="Cannot reach the Rayfine gateway"):
        rf.load_env(sink, mode="remote", url="https://127.0.0.1:9#sha256=" + "0" * 64, token="x")


def test_wrong_pin_is_refused(gateway, connect, sink):
    url = gateway.url.split("#")[0] + "#sha256=" + "ab" * 32
    with pytest.raises(errors.EngineUnavailableError, match="failed the TLS check"):
        rf.load_env(sink, mode="remote", url=url, token=gateway.tokens["alice"])
