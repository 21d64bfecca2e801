"""The kubernetes runtime on a real two-node cluster: what only a cluster can show.

The example environment end to end, pods on both nodes, limits and the pod's
security settings, secrets kept out of every place a cluster user can read,
and the backstop that deletes the pods of a client killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("rayfine_kubernetes")

import rayfine_core as rf
from rayfine_core import StartRequest, errors, labels
from rayfine_core.runtime import reaper
from rayfine_kubernetes import names

pytestmark = [pytest.mark.engine, pytest.mark.kubernetes]
REPO = Path(__file__).resolve().parents[2]


def pod_of(env: rf.Environment, kubectl) -> dict:
    namespace, _, pod = names.split_id(env.handle.id)
    return json.loads(kubectl("get", "pod", "-n", namespace, pod, "-o", "json"))


def test_affine_example_end_to_end(k8s_cluster):
    """Build and push environments/affine, run it on the cluster, compare with in-process."""
    tag = "k8s-affine:latest"
    image_id = rf.build_image_from_env(REPO / "environments" / "affine", tag, runtime="kubernetes")
    runtime = rf.get_runtime("kubernetes")
    assert runtime.image_id(tag) == image_id
    assert runtime.image_labels(tag)[labels.ENV_TYPE] == "function_based"
    with rf.load_env(tag, runtime="kubernetes", env_vars={"CHUTES_API_KEY": "not-used"}) as env:
        assert "evaluate" in {m.name for m in env.list_methods()}
        remote = env.evaluate(task_type="sat", num_samples=5, seed=3)
    spec = importlib.util.spec_from_file_location(
        "k8s_affine_env", REPO / "environments" / "affine" / "env.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    local = asyncio.run(module.Actor().evaluate(task_type="sat", num_samples=5, seed=3))
    drop = lambda result: {k: v for k, v in result.items() if k != "elapsed_s"}  # noqa: E731
    assert drop(remote) == drop(local)


def test_pods_land_on_both_nodes(rayfine_image, kubectl):
    image = rayfine_image("kitchen-sink")

    async def start_four():
        envs = await rf.aload_envs(image, 4, runtime="kubernetes")
        try:
            return [e.handle.id for e in envs], await asyncio.gather(
                *(e.add(i) for i, e in enumerate(envs))
            )
        finally:
            await asyncio.gather(*(e.cleanup() for e in envs))

    ids, results = asyncio.run(start_four())
    assert results == [2, 3, 4, 5]
    nodes = set()
    for env_id in ids:
        namespace, _, pod = names.split_id(env_id)
        out = kubectl(
            "get", "pod", "-n", namespace, pod, "-o", "jsonpath={.spec.nodeName}", check=False
        )
        nodes.add(out)
    assert {"n1", "n2"} <= nodes, nodes


def test_memory_and_cpu_limits_and_oom(rayfine_image):
    image = rayfine_image("kitchen-sink")
    runtime = rf.get_runtime("kubernetes")
    with rf.load_env(image, runtime="kubernetes", mem_limit="256m", cpu_limit=0.5) as env:
        limits = env.cgroup_limits()
        assert limits["memory"] == str(256 * 1024 * 1024)
        assert limits["cpu"].split()[0] == "50000"
        # The runtime's death grace (10 s) covers the kubelet's lag in reporting the kill.
        with pytest.raises(errors.ContainerDiedError) as info:
            env.allocate(400)
        assert info.value.oom_killed and info.value.exit_code == 137, info.value
        assert runtime.health(env.handle.id).status == "removed"  # not left behind


def test_pod_is_hardened(rayfine_image, kubectl):
    with rf.load_env(rayfine_image("kitchen-sink"), runtime="kubernetes") as env:
        security = env.security()
        assert security["uid"] == 10001
        assert int(security["CapEff"], 16) == 0 and security["NoNewPrivs"] == "1"
        spec = pod_of(env, kubectl)["spec"]
    container = spec["containers"][0]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_secrets_are_never_readable_from_the_pod_spec_events_or_logs(rayfine_image, kubectl):
    value = f"s3cr3t-{uuid.uuid4().hex}"
    with rf.load_env(
        rayfine_image("kitchen-sink"), runtime="kubernetes", env_vars={"SECRET_KEY": value}
    ) as env:
        assert env.has_secret() and env.env("SECRET_KEY") == value
        namespace, job, pod = names.split_id(env.handle.id)
        secrets = json.loads(kubectl("get", "secrets", "-n", namespace, "-o", "json"))["items"]
        ours = [s for s in secrets if s["metadata"]["name"].startswith(job)]
        assert {s["metadata"]["name"] for s in ours} == {f"{job}-env", f"{job}-token"}
        for secret in ours:  # owned by the pod: the cluster deletes them with it
            (owner,) = secret["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"]) == ("Pod", pod)
        token_b64 = next(s for s in ours if s["metadata"]["name"].endswith("-token"))["data"][
            "token"
        ]
        import base64

        token = base64.b64decode(token_b64).decode()
        readable = "\n".join(
            [
                kubectl("get", "pod", "-n", namespace, pod, "-o", "yaml"),
                kubectl("get", "job", "-n", namespace, job, "-o", "yaml"),
                kubectl("describe", "pod", "-n", namespace, pod),
                kubectl("get", "events", "-n", namespace, "-o", "yaml"),
                kubectl("logs", "-n", namespace, pod),
            ]
        )
        assert value not in readable and token not in readable
        assert "SECRET_KEY" not in kubectl("get", "pod", "-n", namespace, pod, "-o", "yaml")
        assert env.env("RAYFINE_TOKEN") is None
    time.sleep(1)
    left = kubectl("get", "secrets", "-n", namespace, "-o", "name")
    assert job not in left


CLIENT = textwrap.dedent(
    """
    import sys, time
    import rayfine_core as rf
    env = rf.load_env(sys.argv[1], runtime="kubernetes", labels={"rayfine.test": sys.argv[2]})
    print(env.handle.id, flush=True)
    time.sleep(600)
    """
)


def _killed_client(image: str, mark: str, lease: int) -> str:
    """Start an environment from a child process, SIGKILL the child, return the environment's id."""
    environ = {**os.environ, "RAYFINE_K8S_LEASE_SECONDS": str(lease), "RAYFINE_NO_REAP": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CLIENT, image, mark], stdout=subprocess.PIPE, text=True, env=environ
    )
    try:
        assert child.stdout is not None
        env_id = child.stdout.readline().strip()
        assert env_id, "the child did not start its environment"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return env_id


def test_sigkilled_client_leaves_no_pod_after_the_backstop(rayfine_image, kubectl):
    """No other Rayfine process runs: the cluster itself deletes the pod and its secrets."""
    lease = 12
    env_id = _killed_client(rayfine_image("kitchen-sink"), uuid.uuid4().hex, lease)
    namespace, job, pod = names.split_id(env_id)
    killed = time.monotonic()
    where = ("get", "pod", "-n", namespace, pod, "--ignore-not-found", "-o")
    assert kubectl(*where, "name").strip()
    deleting = gone = None
    while time.monotonic() < killed + lease + 90 and gone is None:
        stamp = kubectl(*where, "jsonpath={.metadata.deletionTimestamp}", check=False).strip()
        exists = kubectl(*where, "name", check=False).strip()
        if deleting is None and (stamp or not exists):
            deleting = time.monotonic() - killed
        if not exists:
            gone = time.monotonic() - killed
        time.sleep(0.5)
    assert deleting is not None and gone is not None, f"pod {pod} outlived its killed client"
    # The deadline (not anything else) ended it: not before the lease ran out, soon after.
    assert lease - 4 < deleting < lease + 15, deleting
    time.sleep(2)  # the garbage collector follows the pod
    assert job not in kubectl("get", "secrets", "-n", namespace, "-o", "name")
    reason = kubectl(
        "get", "job", "-n", namespace, job, "-o", "jsonpath={.status.conditions[0].reason}"
    )
    assert reason == "DeadlineExceeded"
    rf.get_runtime("kubernetes").stop(env_id, timeout=0)  # the failed Job object itself
    print(f"SIGKILL, lease {lease} s: pod deleted after {deleting:.1f} s, gone after {gone:.1f} s")


def test_orphans_of_a_killed_client_are_reaped_at_once(rayfine_image, kubectl):
    """Before the backstop fires, the next Rayfine process on this host reaps them (labels)."""
    mark = uuid.uuid4().hex
    env_id = _killed_client(rayfine_image("kitchen-sink"), mark, lease=300)
    runtime = rf.get_runtime("kubernetes")
    removed = reaper.reap(runtime)
    assert env_id in {r.id for r in removed}
    assert runtime.list_containers({"rayfine.test": mark}) == []
    namespace, job, _ = names.split_id(env_id)
    assert job not in kubectl("get", "jobs,secrets", "-n", namespace, "-o", "name")


def test_names_and_labels_kubernetes_would_refuse_round_trip(rayfine_image):
    odd = {"rayfine.test": uuid.uuid4().hex, "Team Name": "Ops & Research/ML", "x": "y" * 80}
    name = f"My_Env.{uuid.uuid4().hex[:6]}"
    with rf.load_env(
        rayfine_image("kitchen-sink"), runtime="kubernetes", labels=odd, container_name=name
    ) as env:
        assert env.add(1) == 3
        (record,) = rf.get_runtime("kubernetes").list_containers(odd)
        assert record.name == name and record.labels["Team Name"] == "Ops & Research/ML"
        assert record.labels["x"] == "y" * 80 and record.status == "running"


def test_command_logs_follow_and_exit_code(rayfine_image):
    """A command override runs; logs and the followed stream come from the kubelet; exit 0."""
    runtime = rf.get_runtime("kubernetes")
    script = (
        "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.5)\n"
    )
    request = StartRequest(
        image=rayfine_image("kitchen-sink"),
        name=f"logs-{uuid.uuid4().hex[:8]}",
        command=["python3", "-c", script],
        labels={labels.OWNER: labels.OWNER_VALUE},
    )
    handle = runtime.start(request)
    try:
        followed = list(runtime.follow_logs(handle.id, tail=10))
        assert followed == ["line 0\n", "line 1\n", "line 2\n"]
        deadline = time.monotonic() + 20
        while runtime.health(handle.id).running and time.monotonic() < deadline:
            time.sleep(0.2)
        state = runtime.health(handle.id)
        assert (state.running, state.exit_code, state.oom_killed) == (False, 0, False)
        assert runtime.logs(handle.id, tail=2) == "line 1\nline 2\n"
    finally:
        runtime.stop(handle.id, timeout=0)
    assert runtime.health(handle.id).status == "removed"
