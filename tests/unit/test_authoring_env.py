"""An env author's environment at run time, offline on the ``process`` runtime.

Dev mode, eager Actors, hidden methods, argument checks, logs, dropped
environments, partial batches.  Where the behaviour needs the server being
rewritten to PROTOCOL.md (``RAYFINE_EAGER``, ``RAYFINE_RELOAD``, env.py's
logging at INFO), the test runs once the installed server implements it and
says so when skipped; the client side is tested against a stub server now.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import weakref
from pathlib import Path
from typing import Callable

import pytest

import rayfine_core as rf
from rayfine_core import BuildRequest, errors, hookimpl, labels
from rayfine_core.cli.dev import DevSession
from rayfine_core.plugins import register, unregister

EPISODE = """
import logging
import os

log = logging.getLogger("episode")


class Actor:
    def __init__(self):
        self.turns = []
        self.eager = os.environ.get("RAYFINE_EAGER")
        self.reload = os.environ.get("RAYFINE_RELOAD")

    def settings(self) -> dict:
        return {"eager": self.eager, "reload": self.reload, "cwd": os.getcwd()}

    def step(self, action: str) -> dict:
        self.turns.append(action)
        return {"observation": f"got {action}", "turns": len(self.turns)}

    def evaluate(self, answers: list[str], weight: float = 1.0, note: str = None) -> float:
        return weight * len(answers)

    def shout(self, text: str) -> str:
        print(f"shout: {text}", flush=True)
        log.info("logged: %s", text)
        return text

    def version(self) -> int:
        return 1

    # named like attributes of the Environment object:
    def name(self) -> str:
        return "the actor's name"

    def cleanup(self) -> str:
        return "the actor's cleanup"

    def logs(self) -> str:
        return "the actor's logs"
"""


def runtime():
    return rf.get_runtime("process")


def gone(container_id: str, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if runtime().health(container_id).status == "removed":
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def episode_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("episode")
    (root / "env.py").write_text(EPISODE)
    return root


@pytest.fixture(scope="module")
def episode(episode_dir: Path) -> str:
    tag = "unit-authoring-episode:latest"
    rf.build_image_from_env(episode_dir, tag, runtime="process", quiet=True)
    return tag


@pytest.fixture
def load(episode: str) -> Callable[..., rf.Environment]:
    """load_env(episode, runtime="process", **kw) without the hidden-method warning."""

    def start(**kwargs) -> rf.Environment:
        with pytest.warns(rf.HiddenMethodWarning):
            return rf.load_env(episode, runtime="process", **kwargs)

    return start


# -- silent wrong arguments -----------------------------------------------------------------


def test_values_that_cannot_fit_the_annotation_are_refused_before_the_call(load):
    with load() as env:
        with pytest.raises(errors.InvalidArgumentsError) as info:
            env.evaluate(answers="12")  # would score each character
        text = str(info.value)
        assert "argument 'answers' must be list[str], got str '12'" in text
        assert "expected evaluate(answers: list[str], weight: float = 1.0" in text
        with pytest.raises(errors.InvalidArgumentsError, match="'action' must be str, got int 12"):
            env.step(action=12)
        with pytest.raises(errors.InvalidArgumentsError, match=r"'actoin'.*did you mean 'action'"):
            env.step(actoin="x")
        assert env.evaluate(answers=["1", "2"], weight=2) == 4.0  # an int fits float
        assert env.evaluate(answers=[], note=None) == 0.0  # `note: str = None` takes None
        assert env.step(action="12")["turns"] == 1
        assert "shout" not in env.logs()  # nothing refused ever reached the container


# -- actor methods hidden by attributes ---------------------------------------------------------


def test_hidden_methods_warn_once_and_stay_callable(episode):
    with pytest.warns(rf.HiddenMethodWarning) as caught:
        env = rf.load_env(episode, runtime="process")
    try:
        assert len(caught) == 1
        message = str(caught[0].message)
        assert "cleanup, logs, name" in message and "env.methods.cleanup(...)" in message
        assert caught[0].filename == __file__  # points at the caller's load_env line
        assert env.name.startswith("rayfine-")  # still the container's name
        assert env.methods.name() == "the actor's name"
        assert env.methods.cleanup() == "the actor's cleanup"
        assert env.methods.logs() == "the actor's logs"
        assert env.call_method("name") == "the actor's name"
        assert {"name", "cleanup", "step"} <= set(dir(env.methods))
        handle = env.handle
    finally:
        env.cleanup()  # the Environment's own cleanup: removes the container
    assert gone(handle.id, 0.1)


def test_no_warning_without_clashes(kitchen, recwarn):
    with rf.load_env(kitchen, runtime="process") as env:
        assert env.methods.add(1) == 3
    assert not [w for w in recwarn if issubclass(w.category, rf.HiddenMethodWarning)]


# -- a broken Actor fails load_env ----------------------------------------------------------------

STUB_SERVER = r'''
"""Answers /health as PROTOCOL.md says a server with RAYFINE_EAGER=1 and a raising Actor does."""
import http.server, json, os, socketserver

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if os.environ.get("RAYFINE_EAGER") == "1":
            status, body = 503, {"error": {"kind": "actor_init_failed", "type": "KeyError",
                "message": "'API_KEY'", "traceback": "Traceback (most recent call last):\n"
                "  File \"/app/env.py\", line 5, in __init__\nKeyError: 'API_KEY'\n"}}
        elif self.path == "/methods":
            status, body = 200, {"methods": []}
        else:
            status, body = 200, {"status": "ok"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

path = os.environ["RAYFINE_UDS"]
if os.path.exists(path):
    os.unlink(path)
Server(path, Handler).serve_forever()
'''


@pytest.fixture(scope="module")
def stub_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    context = tmp_path_factory.mktemp("stub")
    (context / "stub.py").write_text(STUB_SERVER)
    (context / "Dockerfile").write_text(
        'FROM scratch\nWORKDIR /app\nCOPY stub.py /app/stub.py\nCMD ["python3", "/app/stub.py"]\n'
    )
    tag = "unit-authoring-eager-stub:latest"
    image_labels = {labels.OWNER: labels.OWNER_VALUE, labels.ENV_TYPE: "function_based"}
    runtime().build(BuildRequest(context, "Dockerfile", tag, {}, image_labels))
    return tag


def test_eager_load_fails_with_the_actors_traceback(stub_image):
    """The client half of eager=True, against a server answering as PROTOCOL.md says."""
    before = {c.id for c in runtime().list_containers({labels.OWNER: labels.OWNER_VALUE})}
    with pytest.raises(errors.ActorInitError) as info:
        rf.load_env(stub_image, runtime="process", eager=True)
    assert info.value.remote_type == "KeyError" and "API_KEY" in str(info.value)
    assert "env.py" in str(info.value.remote_traceback)
    after = {c.id for c in runtime().list_containers({labels.OWNER: labels.OWNER_VALUE})}
    assert after == before  # nothing left behind
    with rf.load_env(stub_image, runtime="process") as env:  # lazy: loads "fine"
        assert env.is_ready()


def test_eager_asks_the_server_to_construct_at_start(load):
    with load(eager=True) as env:
        assert env.settings()["eager"] == "1"
    with load() as env:
        assert env.settings()["eager"] is None


def test_eager_with_the_real_server(tmp_path):
    (tmp_path / "env.py").write_text(
        "import os\nclass Actor:\n    def __init__(self):\n        self.key = os.environ['API_KEY']\n"
        "    def go(self) -> int:\n        return 1\n"
    )
    rf.build_image_from_env(tmp_path, "unit-authoring-eager:latest", runtime="process", quiet=True)
    with pytest.raises(errors.ActorInitError, match="API_KEY"):
        rf.load_env("unit-authoring-eager:latest", runtime="process", eager=True)
    with rf.load_env(
        "unit-authoring-eager:latest", runtime="process", eager=True, env_vars={"API_KEY": "k"}
    ) as env:
        assert env.go() == 1


# -- dev mode -------------------------------------------------------------------------------------


def test_dev_runs_the_directory_itself(load, tmp_path, episode_dir):
    live = tmp_path / "live"
    live.mkdir()
    (live / "env.py").write_text(EPISODE.replace("return 1", "return 2"))
    with load(dev=live) as env:
        settings = env.settings()
        assert env.version() == 2  # the directory's code, not the image's
        assert settings["reload"] == "1" and Path(settings["cwd"]) == live.resolve()
    with pytest.raises(errors.ValidationError, match=r"no env\.py"):
        rf.load_env("unit-authoring-episode:latest", runtime="process", dev=tmp_path)


def test_dev_session_makes_an_edit_live_without_a_build(tmp_path):
    root = tmp_path / "devenv"
    root.mkdir()
    (root / "env.py").write_text("class Actor:\n    def version(self) -> int:\n        return 1\n")
    session = DevSession(root, "process", "unit-authoring-dev", {}, False, None)
    session.start()
    try:
        image_id = runtime().image_id(session.image)
        assert rf.attach("unit-authoring-dev").version() == 1
        (root / "env.py").write_text(
            "class Actor:\n    def version(self) -> int:\n        return 2\n"
            "    def added(self) -> str:\n        return 'new'\n"
        )
        session.apply([root / "env.py"])
        env = rf.attach("unit-authoring-dev")
        assert env.version() == 2 and env.added() == "new"
        assert runtime().image_id(session.image) == image_id  # no build happened
        (root / "env.py").write_text("class Actor(:\n")  # a syntax error: reported, not fatal
        session.apply([root / "env.py"])
        (root / "env.py").write_text(
            "class Actor:\n    def version(self) -> int:\n        return 3\n"
        )
        session.apply([root / "env.py"])
        assert rf.attach("unit-authoring-dev").version() == 3
    finally:
        session.stop()
    with pytest.raises(errors.UnknownEnvironmentError):
        rf.attach("unit-authoring-dev")


def test_dev_reload_refreshes_the_client_catalogue(episode, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    (live / "env.py").write_text(EPISODE)
    with pytest.warns(rf.HiddenMethodWarning):
        env = rf.load_env(episode, runtime="process", dev=live)
    with env:
        (live / "env.py").write_text(EPISODE + "\n    def added(self) -> int:\n        return 7\n")
        deadline = time.monotonic() + 10
        while True:
            try:
                assert env.added() == 7
                break
            except errors.MethodNotFoundError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


# -- long work made visible: logs ------------------------------------------------------------------


def test_logs_follow_yields_new_lines_and_ends_with_the_container(load):
    env = load()
    lines: list[str] = []
    # tail=100: the lines printed before the follower started are in it too (no race)
    follower = threading.Thread(target=lambda: lines.extend(env.logs(tail=100, follow=True)))
    follower.start()
    env.shout("one")
    env.shout("two")
    deadline = time.monotonic() + 10
    while "shout: two" not in lines and time.monotonic() < deadline:
        time.sleep(0.05)
    env.cleanup()
    follower.join(10)
    assert not follower.is_alive()  # the iterator ended with the container
    shouts = [line for line in lines if line.startswith("shout:")]
    assert shouts == ["shout: one", "shout: two"]  # without their newline


def test_async_logs_follow(episode):
    async def main() -> list[str]:
        with pytest.warns(rf.HiddenMethodWarning):
            env = await rf.aload_env(episode, runtime="process")
        seen: list[str] = []

        async def follow() -> None:
            async for line in env.logs(tail=100, follow=True):
                seen.append(line)

        task = asyncio.ensure_future(follow())
        await env.shout("async one")
        while "shout: async one" not in seen:
            await asyncio.sleep(0.05)
        assert "shout: async one" in await env.logs()
        await env.cleanup()
        await asyncio.wait_for(task, 10)
        return seen

    assert [line for line in asyncio.run(main()) if line.startswith("shout")] == [
        "shout: async one"
    ]


def test_env_logging_at_info_is_visible_by_default(load):
    with load() as env:
        env.shout("visible")
        time.sleep(0.3)
        text = env.logs()
    assert "shout: visible" in text and "logged: visible" in text


# -- a dropped environment stops its container ----------------------------------------------------


def test_rebinding_the_variable_stops_the_old_container(load):
    env = load()  # a notebook cell ...
    old, ref = env.handle, weakref.ref(env)
    env = load()  # ... run again
    assert ref() is None  # nothing (not the registry) keeps the old face alive
    assert gone(old.id)
    assert env.id in rf.list_active_environments() and env.version() == 1
    env.cleanup()


def test_detached_and_attached_environments_outlive_their_objects(load):
    env = load(labels={labels.DETACHED: "1"})
    env.detach()
    handle, name = env.handle, env.name
    del env
    gc.collect()
    time.sleep(0.3)
    assert runtime().health(handle.id).running
    with pytest.warns(rf.HiddenMethodWarning):
        again = rf.attach(name)
    del again
    gc.collect()
    time.sleep(0.3)
    assert runtime().health(handle.id).running
    with pytest.warns(rf.HiddenMethodWarning):
        rf.attach(name).cleanup()
    assert gone(handle.id)


# -- batches: partial results, progress -------------------------------------------------------------


class FailSecondStart:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    @hookimpl
    def rayfine_start(self, request, runtime):
        with self.lock:
            self.count += 1
            if self.count == 2:
                raise errors.PluginError("refused by the test")


def test_aload_envs_can_keep_what_started(kitchen, caplog):
    name = register(FailSecondStart(), name="test-fail-second")
    caplog.set_level(logging.INFO, logger="rayfine")
    try:
        envs, failures = asyncio.run(
            rf.aload_envs(kitchen, 3, keep_started=True, runtime="process")
        )
    finally:
        unregister(name)
    try:
        assert len(envs) == 2 and len(failures) == 1
        assert isinstance(failures[0], errors.PluginError)
        assert all(asyncio.run(env.is_ready()) for env in envs)
        text = caplog.text
        assert f"starting 3 environments of {kitchen}" in text
        assert f"2 of 3 environments of {kitchen} started (1 failed)" in text
    finally:
        for env in envs:
            asyncio.run(env.cleanup())


def test_aload_envs_is_all_or_nothing_by_default(kitchen):
    name = register(FailSecondStart(), name="test-fail-second")
    before = set(rf.list_active_environments())
    try:
        with pytest.raises(errors.PluginError):
            asyncio.run(rf.aload_envs(kitchen, 3, runtime="process"))
    finally:
        unregister(name)
    assert set(rf.list_active_environments()) == before
