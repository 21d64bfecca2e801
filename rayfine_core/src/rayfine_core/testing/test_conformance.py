"""Conformance suite: what every runtime must do, tested through the public API.

Run: ``pytest --pyargs rayfine_core.testing --rayfine-runtime NAME``.  A test
that needs something a runtime declares it cannot do (its
:class:`~rayfine_core.Capabilities`) is skipped with the reason, never passed
silently.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from pathlib import Path

import pytest

import rayfine_core as rf
from rayfine_core import errors, labels
from rayfine_core.plugins.manager import get_manager
from rayfine_core.testing.plugin import requires

SECRET = "s3cr3t-value-0f-conformance"


def owned(runtime: str, env_id: str) -> list:
    return rf.get_runtime(runtime).list_containers(
        {labels.OWNER: labels.OWNER_VALUE, labels.RUNTIME: runtime, labels.ENV_ID: env_id}
    )


@pytest.fixture(scope="module")
def sink(rayfine_runtime, rayfine_image, rayfine_load):
    image = rayfine_image("kitchen-sink")
    with rayfine_load(image, env_vars={"SECRET_KEY": SECRET, "GREETING": "hi"}) as env:
        yield env


# -- build ----------------------------------------------------------------------------


def test_build_labels_the_image(rayfine_runtime, rayfine_image):
    image_labels = rf.get_runtime(rayfine_runtime).image_labels(rayfine_image("kitchen-sink"))
    assert image_labels[labels.ENV_TYPE] == "function_based"
    assert image_labels[labels.OWNER] == labels.OWNER_VALUE


def test_unchanged_rebuild_is_skipped(rayfine_runtime, rayfine_image, tmp_path):
    from .envs import ENVS

    (tmp_path / "env.py").write_text(ENVS["kitchen-sink"])
    lines: list[str] = []
    tag = rayfine_image("kitchen-sink")
    image_id = rf.build_image_from_env(
        tmp_path, tag, runtime=rayfine_runtime, on_output=lines.append
    )
    assert any("up to date" in line for line in lines)
    assert image_id == rf.get_runtime(rayfine_runtime).image_id(tag)


def test_bad_dockerfile_is_a_build_error_with_output(
    rayfine_runtime, rayfine_capabilities, tmp_path
):
    requires(rayfine_capabilities, "runs_build_steps", "its builds run no RUN step")
    (tmp_path / "env.py").write_text("def f():\n    return 1\n")
    (tmp_path / "Dockerfile").write_text(
        "ARG RAYFINE_BASE_IMAGE\nFROM ${RAYFINE_BASE_IMAGE}\nRUN exit 7\n"
    )
    with pytest.raises(errors.ImageBuildError) as info:
        rf.build_image_from_env(
            tmp_path, "rayfine-conformance-bad:latest", quiet=True, runtime=rayfine_runtime
        )
    assert "exit 7" in str(info.value) or "7" in str(info.value)


def test_bad_tag_is_rejected_before_building(rayfine_runtime, tmp_path):
    (tmp_path / "env.py").write_text("def f():\n    return 1\n")
    with pytest.raises(errors.ValidationError, match="Invalid image tag"):
        rf.build_image_from_env(tmp_path, "Not A Tag!", runtime=rayfine_runtime)


# -- start, health, call --------------------------------------------------------------


def test_sync_and_async_methods_with_args_and_kwargs(sink):
    assert sink.add(1) == 3
    assert sink.add(1, b=5) == 6
    assert sink.add(a=2, b=2) == 4
    assert sink.echo(1, "x", flag=True) == {"args": [1, "x"], "kwargs": {"flag": True}}
    assert sink.square(3) == 9


def test_actor_keeps_state_between_calls(sink):
    before = sink.counter()
    sink.add(1)
    assert sink.counter() == before + 1


def test_list_methods_reports_signatures_and_docs(sink):
    methods = {m.name: m for m in sink.list_methods()}
    assert {"add", "echo", "square", "fail"} <= set(methods)
    assert "join" not in methods and "_private" not in methods
    assert methods["add"].signature == "(a: int, b: int = 2) -> int"
    assert methods["add"].doc == "Add two numbers."
    assert methods["echo"].is_async


def test_unknown_method(sink):
    with pytest.raises(errors.MethodNotFoundError, match=r"available:.*add"):
        sink.nope()
    with pytest.raises(AttributeError):
        sink._private()


def test_wrong_arguments_fail_before_the_call(sink):
    with pytest.raises(errors.InvalidArgumentsError, match=r"add\(a: int, b: int = 2\)"):
        sink.add(1, 2, 3)


def test_remote_exception_carries_type_message_traceback(sink):
    with pytest.raises(errors.RemoteException) as info:
        sink.fail("custom message")
    assert info.value.remote_type == "ValueError"
    assert info.value.remote_message == "custom message"
    assert "raise ValueError(message)" in (info.value.remote_traceback or "")


def test_unserialisable_result(sink):
    with pytest.raises(errors.ResultNotSerializableError, match="object"):
        sink.unserialisable()
    assert sink.add(1) == 3  # still serving


def test_call_timeout(sink):
    with pytest.raises(errors.CallTimeout):
        sink.sleep(5, timeout=0.5)
    assert sink.add(1) == 3


def test_is_ready(sink):
    assert sink.is_ready()


def test_env_vars_reach_the_environment_and_the_token_does_not(sink, rayfine_capabilities):
    assert sink.env("GREETING") == "hi"
    assert sink.has_secret()
    assert sink.env("RAYFINE_TOKEN") is None
    traces = sink.token_traces()  # what a child process of env.py could read
    assert traces["start_environ"] is False and traces["own_environ"] is False
    if rayfine_capabilities.unix_socket:  # a file in the run dir: the server deletes it
        assert traces["token_file"] is False
    # (Runtimes without a run dir deliver it as a read-only file, e.g. a Kubernetes secret
    # volume: env code can read it there, other users and containers cannot.)


def test_hardened_defaults(sink, rayfine_capabilities, rayfine_isolation):
    requires(rayfine_capabilities, "user", "it cannot drop privileges")
    security = sink.security()
    assert int(security["CapEff"], 16) == 0
    # gVisor's /proc does not report it (runsc itself runs with no_new_privs)
    assert security["NoNewPrivs"] == "1" or rayfine_isolation == "gvisor"
    assert security["uid"] == 10001  # the server runs unprivileged by default


def test_container_is_labelled_as_ours_and_its_runtimes(sink):
    (record,) = owned(sink.runtime_name, sink.id)
    assert record.labels[labels.PID].isdigit()
    assert record.labels[labels.RUNTIME] == sink.runtime_name
    assert record.name == sink.name
    others = rf.get_runtime(sink.runtime_name).list_containers(
        {labels.ENV_ID: sink.id, labels.RUNTIME: "some-other-runtime"}
    )
    assert others == []


def test_secrets_stay_out_of_command_lines_and_reprs(sink, rayfine_capabilities):
    assert SECRET not in repr(sink) and SECRET not in sink.cmdline_of_pid1()
    if rayfine_capabilities.local_host:  # every process of this host, engine helpers included
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                assert SECRET.encode() not in cmdline.read_bytes(), cmdline
            except OSError:
                continue


def test_secrets_stay_out_of_start_errors(rayfine_runtime, rayfine_image, rayfine_load):
    mark = {"rayfine.test": uuid.uuid4().hex}
    with pytest.raises(errors.RayfineError) as info:
        rayfine_load(
            rayfine_image("kitchen-sink"),
            env_vars={"API_KEY": SECRET},
            cap_add=("NOT_A_CAPABILITY",),
            network="no-such-network-rayfine",
            labels=mark,
            start_timeout=20,
        )
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert rf.get_runtime(rayfine_runtime).list_containers(mark) == []


def test_logs_and_follow(sink, rayfine_runtime):
    marker = uuid.uuid4().hex
    sink.shout(marker, times=3)
    deadline = time.monotonic() + 10
    while sink.logs(tail=50).count(marker) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sink.logs(tail=50).count(marker) == 3
    assert sink.logs(tail=1).count(marker) <= 1


def test_follow_logs_streams_until_the_container_stops(
    rayfine_runtime, rayfine_image, rayfine_load
):
    runtime = rf.get_runtime(rayfine_runtime)
    env = rayfine_load(rayfine_image("kitchen-sink"))
    seen: list[str] = []
    container_id = env.handle.id
    follower = threading.Thread(
        target=lambda: seen.extend(runtime.follow_logs(container_id, tail=0)), daemon=True
    )
    try:
        follower.start()
        time.sleep(0.5)
        env.shout("first-line")
        env.shout("second-line")
        deadline = time.monotonic() + 10
        while sum("second-line" in line for line in seen) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        env.cleanup()
    follower.join(15)
    assert not follower.is_alive(), "follow_logs did not end when the container stopped"
    text = "".join(seen)
    assert text.index("first-line") < text.index("second-line")
    assert all(line.endswith("\n") for line in seen[:-1])


def test_engine_loss_is_engine_unavailable_from_every_method(rayfine_runtime, rayfine_capabilities):
    option = rayfine_capabilities.engine_url_option
    if option is None:
        pytest.skip("the runtime declares no engine_url_option to point it at a dead engine")
    factory = get_manager().runtime_registry()[rayfine_runtime].spec.factory
    dead = factory(**{option: "unix:///nonexistent/rayfine-dead-engine.sock"})  # type: ignore[call-arg]
    request = rf.StartRequest(image="x:latest", name=f"rayfine-dead-{uuid.uuid4().hex[:8]}")
    calls = {
        "version": dead.version,
        "image_labels": lambda: dead.image_labels("x:latest"),
        "image_id": lambda: dead.image_id("x:latest"),
        "start": lambda: dead.start(request),
        "health": lambda: dead.health("abc"),
        "logs": lambda: dead.logs("abc"),
        "stop": lambda: dead.stop("abc"),
        "list_containers": lambda: dead.list_containers({labels.OWNER: labels.OWNER_VALUE}),
    }
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(errors.EngineUnavailableError):
            call()
        assert time.monotonic() - started < 35, f"{name} took too long to give up"
    dead.close()


def test_malformed_references_are_validation_errors(rayfine_runtime, rayfine_load):
    for reference in ("Caux-x:latest", "x:", " x", "x\n"):
        with pytest.raises(errors.ValidationError):
            rayfine_load(reference)
        with pytest.raises(errors.ValidationError):
            rf.get_runtime(rayfine_runtime).image_labels(reference)


def test_out_of_memory_is_reported(
    rayfine_runtime, rayfine_image, rayfine_capabilities, rayfine_load
):
    requires(rayfine_capabilities, "memory_limit", "memory cannot be capped")
    with rayfine_load(rayfine_image("kitchen-sink"), mem_limit="64m") as env:
        with pytest.raises(errors.ContainerDiedError) as info:
            env.allocate(400)
    if rayfine_capabilities.oom_flag:
        assert info.value.oom_killed
    else:
        assert info.value.exit_code == 137  # killed; the engine does not say why


def test_env_vars_are_isolated_between_environments(rayfine_runtime, rayfine_image, rayfine_load):
    image = rayfine_image("kitchen-sink")
    with (
        rayfine_load(image, env_vars={"GREETING": "a"}) as a,
        rayfine_load(image, env_vars={"GREETING": "b"}) as b,
    ):
        assert (a.env("GREETING"), b.env("GREETING")) == ("a", "b")
        assert a.name != b.name


def test_concurrent_environments(rayfine_runtime, rayfine_image, rayfine_load):
    image = rayfine_image("kitchen-sink")

    def run(i: int) -> int:
        with rayfine_load(image) as env:
            return env.add(i, b=i)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(run, range(4))) == [0, 2, 4, 6]


def test_many_calls_in_flight_to_one_environment(sink):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: sink.add(i, b=1), range(64)))
    assert results == [i + 1 for i in range(64)]


# -- errors at start ------------------------------------------------------------------


def test_missing_image(rayfine_runtime, rayfine_load):
    with pytest.raises(errors.ImageNotFoundError, match="build"):
        rayfine_load("rayfine-conformance-missing:never")


def test_actor_init_failure(rayfine_runtime, rayfine_image, rayfine_load):
    with rayfine_load(rayfine_image("init-fails")) as env:
        with pytest.raises(errors.ActorInitError, match="init exploded"):
            env.ping()


def test_env_import_failure_fails_fast_and_leaves_nothing(
    rayfine_runtime, rayfine_image, rayfine_load
):
    mark = {"rayfine.test": uuid.uuid4().hex}
    started = time.monotonic()
    with pytest.raises(errors.EnvLoadError, match="cannot import its dependency"):
        rayfine_load(rayfine_image("import-fails"), start_timeout=60, labels=mark)
    assert time.monotonic() - started < 30
    assert rf.get_runtime(rayfine_runtime).list_containers(mark) == []


def test_health_timeout_reports_logs_and_leaves_nothing(
    rayfine_runtime, rayfine_image, rayfine_load
):
    image = rayfine_image("slow-import")
    mark = {"rayfine.test": uuid.uuid4().hex}  # tells this test's container from concurrent runs'
    with pytest.raises(errors.StartTimeout, match="did not become ready within 3s") as info:
        rayfine_load(
            image,
            start_timeout=3,
            env_vars={"API_KEY": "do-not-leak-me"},
            labels=mark,
        )
    assert "do-not-leak-me" not in str(info.value)
    assert rf.get_runtime(rayfine_runtime).list_containers(mark) == []


# -- stop and cleanup -----------------------------------------------------------------


def test_context_manager_removes_the_container(rayfine_runtime, rayfine_image, rayfine_load):
    with rayfine_load(rayfine_image("kitchen-sink")) as env:
        env_id = env.id
        assert owned(rayfine_runtime, env_id)
        assert env_id in rf.list_active_environments()
        assert rf.get_environment(env_id) is env
    assert owned(rayfine_runtime, env_id) == []
    assert env_id not in rf.list_active_environments()
    with pytest.raises(errors.EnvironmentClosedError):
        env.add(1)
    env.cleanup()  # idempotent


def test_cleanup_all_environments(rayfine_runtime, rayfine_image, rayfine_load):
    envs = [rayfine_load(rayfine_image("kitchen-sink")) for _ in range(2)]
    assert rf.cleanup_all_environments() >= 2
    for env in envs:
        assert env.closed and owned(rayfine_runtime, env.id) == []


def test_container_dying_mid_call_is_a_typed_error(rayfine_runtime, rayfine_image, rayfine_load):
    with rayfine_load(rayfine_image("kitchen-sink")) as env:
        with pytest.raises(errors.ContainerDiedError) as info:
            env.die(3)
        assert info.value.exit_code == 3


def test_restart_replaces_a_dead_container(rayfine_runtime, rayfine_image, rayfine_load):
    with rayfine_load(rayfine_image("kitchen-sink"), restart=True) as env:
        with pytest.raises(errors.ContainerDiedError):
            env.die(4)
        assert env.add(1) == 3


# -- http-based environments ----------------------------------------------------------


@pytest.fixture(scope="module")
def http_env(rayfine_runtime, rayfine_image, rayfine_capabilities, rayfine_load):
    requires(rayfine_capabilities, "http_apps", "it cannot serve an app's own command")
    with rayfine_load(rayfine_image("http-app")) as env:
        yield env


def test_http_app_is_built_as_is_and_labelled(rayfine_runtime, rayfine_image, rayfine_capabilities):
    requires(rayfine_capabilities, "http_apps", "it cannot serve an app's own command")
    image_labels = rf.get_runtime(rayfine_runtime).image_labels(rayfine_image("http-app"))
    assert image_labels[labels.ENV_TYPE] == "http_based"


def test_http_routes_are_methods_with_state(http_env):
    assert {m.name for m in http_env.list_methods()} >= {"bump", "fail"}
    assert http_env.bump(name="a") == {"name": "a", "value": 1}
    assert http_env.bump(name="a", by=5) == {"name": "a", "value": 6}
    assert http_env.is_ready()  # the app has no /health: readiness uses its OpenAPI document


def test_http_errors(http_env):
    with pytest.raises(errors.InvalidArgumentsError, match="missing a required argument: 'name'"):
        http_env.bump(by=2)
    with pytest.raises(errors.InvalidArgumentsError, match="positional"):
        http_env.bump("a")
    with pytest.raises(errors.RemoteHTTPError) as info:
        http_env.fail()
    assert info.value.status_code == 409 and "conflict on purpose" in str(info.value)
    with pytest.raises(errors.MethodNotFoundError):
        http_env.no_such_route()


def test_env_type_override_for_an_unlabelled_image(
    rayfine_runtime, rayfine_image, rayfine_capabilities, tmp_path, rayfine_load
):
    requires(rayfine_capabilities, "http_apps", "it cannot serve an app's own command")
    (tmp_path / "Dockerfile").write_text(
        f'FROM {rayfine_image("http-app")}\nLABEL {labels.ENV_TYPE}=""\n'
    )
    runtime = rf.get_runtime(rayfine_runtime)
    tag = f"rayfine-conformance-unlabelled:{rayfine_runtime}"
    runtime.build(rf.BuildRequest(context_dir=tmp_path, dockerfile="Dockerfile", tag=tag))
    with pytest.raises(errors.ValidationError, match="env_type='http_based'"):
        rayfine_load(tag)
    with rayfine_load(tag, env_type="http_based") as env:
        assert env.bump(name="z")["value"] == 1


# -- isolation options ----------------------------------------------------------------


def test_network_none_still_serves_calls(
    rayfine_runtime, rayfine_image, rayfine_capabilities, rayfine_load
):
    requires(rayfine_capabilities, "network_none", "it has no network isolation")
    requires(rayfine_capabilities, "unix_socket", "without a host socket nothing reaches it")
    with rayfine_load(rayfine_image("kitchen-sink"), network="none") as env:
        assert env.add(1) == 3
        assert env.interfaces() == ["lo"]


LIMITS = {  # capability: (load_env argument, what the cgroup then says)
    "memory_limit": ({"mem_limit": "256m"}, "memory", str(256 * 1024 * 1024)),
    "pids_limit": ({"pids_limit": 64}, "pids", "64"),
    "cpu_quota": ({"cpu_limit": 0.5}, "cpu", "50000"),  # half of each 100 ms CFS period
}


@pytest.mark.parametrize("capability", sorted(LIMITS))
def test_resource_limits_are_applied(
    rayfine_image, rayfine_capabilities, rayfine_load, rayfine_isolation, capability
):
    requires(rayfine_capabilities, capability, "that limit is not applied")
    argument, key, expected = LIMITS[capability]
    with rayfine_load(rayfine_image("kitchen-sink"), **argument) as env:
        seen = env.cgroup_limits()[key]
        if seen is None and rayfine_isolation == "gvisor":
            pytest.skip("gVisor shows the container no cgroup files; the engine enforces the limit")
        assert seen is not None and seen.split()[0] == expected  # v2 cpu: "50000 100000"


def test_published_port_is_loopback_only(
    rayfine_runtime, rayfine_image, rayfine_capabilities, rayfine_load
):
    requires(rayfine_capabilities, "host_ports", "it publishes no port on this host")
    with rayfine_load(rayfine_image("kitchen-sink"), transport="tcp") as env:
        endpoint = env.handle.endpoint
        assert endpoint.unix_socket is None and endpoint.host == "127.0.0.1" and endpoint.port
        assert env.add(1) == 3
        # Whoever holds the port on this host (docker-proxy, conmon, the server) binds loopback.
        assert _listeners(endpoint.port) <= {"127.0.0.1"}, _listeners(endpoint.port)


def _listeners(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc, no traffic)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add("127.0.0.1" if address == "0100007F" else address)
    return found


# -- the asyncio face ------------------------------------------------------------------


def test_asyncio_face_many_calls_in_flight_and_cleanup(
    rayfine_runtime, rayfine_image, rayfine_aload
):
    import asyncio

    async def main() -> tuple[list, str]:
        async with rayfine_aload(rayfine_image("kitchen-sink")) as env:
            results = await asyncio.gather(*(env.sleep(0.2) for _ in range(64)))
            assert await env.add(1) == 3 and await env.is_ready()
            return results, env.id

    results, env_id = asyncio.run(main())
    assert results == [0.2] * 64
    assert owned(rayfine_runtime, env_id) == []


# -- sessions --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def episodes(rayfine_image, rayfine_load):
    with rayfine_load(rayfine_image("episodes")) as env:
        yield env


def test_sessions_are_separate_actors(episodes):
    with episodes.session(seed=1) as one, episodes.session(seed=2) as two:
        assert one.reset() == 1 and two.reset() == 2
        assert one.step(5) == {"seed": 1, "steps": 1, "action": 5}
        assert one.step(6)["steps"] == 2 and two.step(7)["steps"] == 1  # state apart
        assert episodes.step(0) == {"seed": 0, "steps": 1, "action": 0}  # the default instance
        listed = {s["id"] for s in episodes.sessions()}
        assert {one.id, two.id} <= listed
    assert {one.id, two.id}.isdisjoint(s["id"] for s in episodes.sessions())
    assert episodes.closed_seeds()[-2:] == [2, 1]  # Actor.close() ran for each, innermost first
    with pytest.raises(errors.SessionClosedError):
        one.step(1)


def test_a_failing_constructor_is_typed_and_the_container_keeps_serving(episodes):
    with pytest.raises(errors.ActorInitError, match="constructor refused seed 9") as info:
        episodes.session(seed=9, fail=True)
    assert "raise ValueError" in (info.value.remote_traceback or "")
    with episodes.session(seed=3) as ok:
        assert ok.reset() == 3


def test_a_timeout_in_one_session_leaves_the_others_alone(episodes):
    with episodes.session(seed=4) as slow, episodes.session(seed=5) as fast:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            stuck = pool.submit(slow.wait, 30, timeout=0.5)
            assert fast.step(1)["seed"] == 5
            with pytest.raises(errors.CallTimeout):
                stuck.result(20)
        assert slow.step(2)["seed"] == 4 and fast.step(3)["steps"] == 2


def test_session_capacity_and_idle_expiry(rayfine_image, rayfine_load):
    image = rayfine_image("episodes")
    with rayfine_load(image, max_sessions=2, session_idle_timeout=1) as env:
        first, second = env.session(seed=1), env.session(seed=2)
        with pytest.raises(errors.SessionCapacityError):
            env.session(seed=3)
        second.close()
        third = env.session(seed=3)  # room again
        time.sleep(2.5)  # idle past the timeout: the server closed them
        with pytest.raises(errors.SessionClosedError, match="idle"):
            first.step(1)
        third.close()
        first.close()  # closing an expired session is fine


def test_unknown_sessions_are_refused(episodes):
    from rayfine_core.environment.sessions import Session

    made_up = Session(episodes._life, "no-such-session", episodes._life._current)
    with pytest.raises(errors.UnknownSessionError):
        made_up.step(1)


def test_many_sessions_from_asyncio(rayfine_image, rayfine_aload):
    import asyncio

    async def main() -> list[dict]:
        async with rayfine_aload(rayfine_image("episodes")) as env:
            sessions = await asyncio.gather(*(env.session(seed=i) for i in range(64)))
            try:
                return await asyncio.gather(*(s.step(i) for i, s in enumerate(sessions)))
            finally:
                await asyncio.gather(*(s.close() for s in sessions))

    results = asyncio.run(main())
    assert [r["seed"] for r in results] == list(range(64))
    assert all(r["steps"] == 1 for r in results)
