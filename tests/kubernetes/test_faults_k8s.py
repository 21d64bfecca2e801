"""Faults on the cluster: a node lost mid-call, a frozen API server, pods that cannot start.

Each test restores what it broke (the node, the API server) before it ends.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rayfine_kubernetes")

import rayfine_core as rf
from rayfine_core import (
    StartRequest,
    errors,
)
from rayfine_kubernetes import KubernetesRuntime, Settings, names
from rayfine_kubernetes.api import Kube

pytestmark = [pytest.mark.engine, pytest.mark.kubernetes]


def node_of(env_id: str, kubectl) -> str:
    namespace, _, pod = names.split_id(env_id)
    return kubectl("get", "pod", "-n", namespace, pod, "-o", "jsonpath={.spec.nodeName}")


@pytest.fixture
def lose_node(kubectl, cluster_sh):
    """``lose_node(name)`` stops the node's kubelet and dockerd; back (Ready) after the test."""
    lost: list[str] = []

    def lose(node: str) -> None:
        lost.append(node)
        cluster_sh("node-stop", node)

    yield lose
    for node in lost:
        cluster_sh("node-start", node)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if " Ready" in kubectl("get", "node", node, "--no-headers", check=False):
                break
            time.sleep(1)


def test_node_lost_mid_call_is_a_typed_error_and_restart_moves_the_environment(
    rayfine_image, kubectl, lose_node
):
    with rf.load_env(rayfine_image("kitchen-sink"), runtime="kubernetes", restart=True) as env:
        first = node_of(env.handle.id, kubectl)
        outcome: dict[str, Any] = {}

        def long_call() -> None:
            started = time.monotonic()
            try:
                env.block(120, timeout=6)
            except errors.RayfineError as exc:
                outcome["error"], outcome["after"] = exc, time.monotonic() - started

        caller = threading.Thread(target=long_call)
        caller.start()
        time.sleep(1)
        lost_at = time.monotonic()
        lose_node(first)
        caller.join(60)
        # The call's watch (every 5 s) asks the runtime, which finds the node dead (the
        # kubelet does not answer): ContainerDiedError "node-lost", and restart=True starts
        # the environment on the other node.  Had the timeout come first, the next call
        # would find it so.
        error = outcome.get("error")
        assert isinstance(error, (errors.ContainerDiedError, errors.CallTimeout)), outcome
        if isinstance(error, errors.ContainerDiedError):
            assert "node-lost" in str(error)
        else:
            with pytest.raises(errors.ContainerDiedError):
                env.add(1)
        detected = time.monotonic() - lost_at
        assert env.add(1) == 3
        second = node_of(env.handle.id, kubectl)
        assert second != first
        print(f"node {first} lost: typed error, then on {second} {detected:.1f} s after the loss")
    assert detected < 30


def test_node_lost_mid_call_without_timeout(rayfine_image, kubectl, lose_node):
    with rf.load_env(rayfine_image("kitchen-sink"), runtime="kubernetes") as env:
        node = node_of(env.handle.id, kubectl)
        result: dict[str, Any] = {}

        def long_call() -> None:
            try:
                env.block(60)
            except errors.RayfineError as exc:
                result["error"] = exc

        caller = threading.Thread(target=long_call, daemon=True)
        caller.start()
        time.sleep(1)
        lose_node(node)
        caller.join(20)
        assert isinstance(result.get("error"), errors.ContainerDiedError)


@pytest.fixture
def frozen_api_server(k8s_cluster):
    """``(freeze, thaw)``: SIGSTOP / SIGCONT the API server (connections hang, nothing answers)."""
    pid = int(Path("/tmp/rayfine-k8s/pids/kube-apiserver").read_text())
    frozen = []

    def freeze() -> None:
        os.kill(pid, signal.SIGSTOP)
        frozen.append(pid)

    def thaw() -> None:
        if frozen:
            os.kill(frozen.pop(), signal.SIGCONT)
            time.sleep(1)

    yield freeze, thaw
    thaw()


def test_api_server_loss_is_engine_unavailable_from_every_method_within_the_deadline(
    rayfine_image, frozen_api_server
):
    freeze, thaw = frozen_api_server
    with rf.load_env(rayfine_image("kitchen-sink"), runtime="kubernetes") as env:
        runtime = KubernetesRuntime(settings=Settings.from_env(api_timeout=2.0))
        handle_id = env.handle.id
        runtime.version()
        freeze()
        mark = {"rayfine.test": uuid.uuid4().hex}
        request = StartRequest(
            image=rayfine_image("kitchen-sink"),
            name=f"frozen-{mark['rayfine.test'][:8]}",
            labels=mark,
        )
        calls = {
            "version": runtime.version,
            "health": lambda: runtime.health(handle_id),
            "logs": lambda: runtime.logs(handle_id),
            "list_containers": lambda: runtime.list_containers({"rayfine.owner": "rayfine"}),
            "stop": lambda: runtime.stop("default/nothing-here/"),
            "start": lambda: runtime.start(request),
        }
        for name, call in calls.items():
            started = time.monotonic()
            with pytest.raises(errors.EngineUnavailableError, match="did not answer"):
                call()
            assert time.monotonic() - started < 6, name  # each API call's deadline holds
        assert env.add(1) == 3  # the pod itself is fine: only the control plane is gone
        runtime.close()
        thaw()
    runtime = rf.get_runtime("kubernetes")
    for record in runtime.list_containers(mark):  # a create the frozen server ran after all
        runtime.stop(record.id, timeout=0)


def test_unreachable_api_server_fails_fast(tmp_path, k8s_cluster):
    config = Path(k8s_cluster["KUBECONFIG"]).read_text().replace(":6443", ":6449")
    (tmp_path / "kubeconfig").write_text(config)
    runtime = KubernetesRuntime(kubeconfig=str(tmp_path / "kubeconfig"))
    started = time.monotonic()
    with pytest.raises(errors.EngineUnavailableError, match="kubectl cluster-info"):
        runtime.version()
    assert time.monotonic() - started < 3


def _quota_enforced(k8s_cluster: dict[str, str], namespace: str) -> bool:
    """The API server refuses a pod for the quota (its admission cache lags a new quota)."""
    command = [k8s_cluster["RAYFINE_K8S_KUBECTL"], "run", "quota-probe", "--image=probe"]
    command += ["--restart=Never", "--dry-run=server", "-n", namespace]
    probe = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "exceeded quota" in probe.stderr


def test_missing_runtime_class_or_quota_fails_fast_and_leaves_nothing(
    rayfine_image, kubectl, k8s_cluster
):
    """Pods the cluster refuses (quota) or cannot create (a sandbox handler dockershim lacks)."""
    runtime = rf.get_runtime("kubernetes")
    namespace = f"rf-quota-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    try:
        kubectl("create", "quota", "nopods", "-n", namespace, "--hard=pods=0")
        kubectl("create", "serviceaccount", "default", "-n", namespace, check=False)
        deadline = time.monotonic() + 30
        while not _quota_enforced(k8s_cluster, namespace):  # else a start may slip in first
            assert time.monotonic() < deadline, "the API server never enforced the new quota"
            time.sleep(0.2)
        request = StartRequest(
            image=rayfine_image("kitchen-sink"), name="quota", labels={"t": namespace}
        )
        request.options = {"namespace": namespace}  # type: ignore[attr-defined]
        started = time.monotonic()
        with pytest.raises(errors.StartError, match="exceeded quota"):
            runtime.start(request)
        assert time.monotonic() - started < 15
        assert (
            kubectl("get", "jobs,pods,secrets", "-n", namespace, "-o", "name").count("quota") == 0
        )
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    handler = json.dumps(
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": "gvisor"},
            "handler": "runsc",
        }
    )
    Path("/tmp/rayfine-k8s/runtimeclass.json").write_text(handler)
    kubectl("apply", "-f", "/tmp/rayfine-k8s/runtimeclass.json")
    request = StartRequest(image=rayfine_image("kitchen-sink"), name=f"gv-{uuid.uuid4().hex[:6]}")
    request.isolation = "gvisor"  # type: ignore[attr-defined]
    started = time.monotonic()
    with pytest.raises(errors.StartError, match="sandbox"):
        runtime.start(request)
    assert time.monotonic() - started < 30
    assert request.name not in kubectl("get", "jobs,pods", "-o", "name")
    kubectl("delete", "runtimeclass", "gvisor")


def test_proxy_endpoint_reaches_the_server_through_the_api_server(rayfine_image, kubectl):
    """The pod proxy reaches the server; the API server's Authorization is never the token."""
    import urllib3

    from rayfine_kubernetes.starting import proxy_endpoint

    with rf.load_env(rayfine_image("kitchen-sink"), runtime="kubernetes") as env:
        namespace, job, pod = names.split_id(env.handle.id)
        kube = Kube(Settings.from_env())
        creds = kube.credentials()
        prefix = f"/api/v1/namespaces/{namespace}/pods/{pod}:8000/proxy"
        endpoint = proxy_endpoint(kube, namespace, pod, 8000)
        assert endpoint.path_prefix == prefix
        secret = json.loads(kubectl("get", "secret", "-n", namespace, f"{job}-token", "-o", "json"))
        token = base64.b64decode(secret["data"]["token"]).decode()
        http = urllib3.PoolManager(ca_certs=creds.ca_file)
        headers = dict(creds.headers)
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            answer = http.request(
                "GET",
                creds.server + prefix + "/health",
                headers={**headers, "X-Rayfine-Token": token},
            )
            timings.append(time.perf_counter() - started)
        body = json.loads(answer.data)
        assert answer.status == 200, body  # the server reads X-Rayfine-Token (PROTOCOL.md)
        bare = http.request("GET", creds.server + prefix + "/health", headers=headers)
        assert bare.status == 401 and json.loads(bare.data)["error"]["kind"] == "unauthorized"
        timings.sort()
        print(f"proxy GET /health: median {timings[10] * 1000:.2f} ms (status {answer.status})")
        kube.close()


def test_proxy_access_end_to_end(rayfine_image):
    """Through the API server only: start, call, stop (runs once the core's client speaks proxy)."""
    import secrets as tokens

    from rayfine_core.transport.client import Client
    from rayfine_core.transport.protocol import decode_result, encode_call

    runtime = KubernetesRuntime(access="proxy")
    token = tokens.token_urlsafe(16)
    request = StartRequest(image=rayfine_image("kitchen-sink"), name=f"proxy-{token[:6].lower()}")
    request.token = token
    handle = runtime.start(request)
    try:
        assert handle.endpoint.path_prefix
        client = Client(handle.endpoint, token)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if client.request("GET", "/health", timeout=5).status_code == 200:
                    break
            except errors.RayfineError:
                pass
            time.sleep(0.1)
        body = encode_call("add", [1], {}, None)
        assert decode_result(*_status_and_body(client.request("POST", "/call", body)), "add") == 3
    finally:
        runtime.stop(handle.id, timeout=0)
        runtime.close()


def _status_and_body(response) -> tuple[int, bytes]:
    return response.status_code, response.content
