"""Starting one environment on the cluster, and removing what a failed start left.

Order matters: the Secrets (and a NetworkPolicy) exist before the Job, so
the kubelet never waits on a missing Secret; they are created without an
owner and adopted by the pod the moment it appears (then the garbage
collector deletes them with it).  Anything a failed start created is
removed by name, and only what this start created.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from rayfine_core import ContainerHandle, Endpoint, StartRequest, TLSConfig, errors

from . import names, spec, status, watch
from .api import Kube, KubeError, path
from .deadline import DeadlineKeeper
from .images import Images
from .nodes import Nodes
from .settings import Settings

JOB_LABEL = "rayfine.dev/job"
"""On every object of one environment: what :func:`remove` deletes by."""
_GROUPS = {
    "secrets": ("api", "v1"),
    "jobs": ("apis", "batch", "v1"),
    "networkpolicies": ("apis", "networking.k8s.io", "v1"),
    "pods": ("api", "v1"),
}


def collection(namespace: str, kind: str, *rest: str) -> str:
    return path(*_GROUPS[kind], "namespaces", namespace, kind, *rest)


@dataclass
class Cluster:
    """What a start needs from the runtime."""

    kube: Kube
    images: Images
    nodes: Nodes
    deadlines: DeadlineKeeper
    settings: Settings
    runtime: str


def start(cluster: Cluster, request: StartRequest) -> ContainerHandle:
    """Create the environment's objects and wait until its container runs.

    :raises ValidationError: options, limits or network the cluster cannot honour.
    :raises ImageNotFoundError: the registry has no such image.
    :raises StartError: Kubernetes refused the objects, or the pod cannot start.
    :raises StartTimeout: not scheduled and pulled within the start timeout.
    :raises EngineUnavailableError: the API server or the registry does not answer.
    """
    options = request.options
    spec.check_options(options)
    namespace = names.check_namespace(str(options.get("namespace") or cluster.kube.namespace))
    _check_network(request, cluster.settings)
    image = cluster.images.pinned(request.image)
    plan = spec.plan(
        request, namespace, image, cluster.settings.lease_seconds, cluster.nodes.recently_lost()
    )
    created_at = time.monotonic()
    created = _create(cluster.kube, plan, request.name)
    if "activeDeadlineSeconds" in plan.objects[-1][1]["spec"]:
        cluster.deadlines.track(namespace, plan.job, created_at)
    timeout = float(
        options.get("start_timeout") or request.start_timeout or cluster.settings.start_timeout
    )
    seen: list[str] = []

    def adopt(pod: Mapping[str, Any]) -> None:
        seen.append(str(pod["metadata"]["name"]))
        _adopt(cluster.kube, plan, pod)

    try:
        pod = watch.wait_for_pod(cluster.kube, namespace, plan.job, timeout, adopt)
        endpoint = _endpoint(cluster, namespace, pod, request.container_port)
    except BaseException as exc:
        cluster.deadlines.untrack(namespace, plan.job)
        remove(
            cluster.kube,
            namespace,
            plan.job,
            "",
            grace=0,
            only=created + [("pods", p) for p in seen],
        )
        if isinstance(exc, watch.StartFailed) and exc.image_missing:
            raise errors.ImageNotFoundError(
                f"The cluster cannot pull {request.image!r} ({image}): {exc}."
                " Build and push it with"
                f" build_image_from_env(ENV_DIR, {request.image!r}, runtime='kubernetes')."
            ) from exc
        raise
    return ContainerHandle(
        id=names.container_id(namespace, plan.job, pod["metadata"]["name"]),
        name=request.name,
        endpoint=endpoint,
        runtime=cluster.runtime,
    )


def _check_network(request: StartRequest, settings: Settings) -> None:
    if request.host_port is not None:
        raise errors.ValidationError(
            "http_port (a port on this host) does not exist on Kubernetes: the environment is"
            " reached through the API server or its pod IP (RAYFINE_K8S_ACCESS)."
        )
    if request.network is None:
        return
    if request.network != "none":
        raise errors.ValidationError(
            f"network={request.network!r}: pods have one network on Kubernetes; leave it unset,"
            " or use 'none' where the cluster enforces NetworkPolicy."
        )
    if not settings.network_policy:
        raise errors.ValidationError(
            "network='none' on Kubernetes is a NetworkPolicy that only a cluster whose network"
            " plugin enforces NetworkPolicy honours; if yours does,"
            " set RAYFINE_K8S_NETWORK_POLICY=1."
        )


def _create(kube: Kube, plan: spec.Plan, name: str) -> list[tuple[str, str]]:
    """Create the plan's objects in order; on failure remove those created, and raise."""
    created: list[tuple[str, str]] = []
    try:
        for kind, body in plan.objects:
            body["metadata"]["labels"] = {**body["metadata"]["labels"], JOB_LABEL: plan.job}
            kube.request("POST", collection(plan.namespace, kind), body=body)
            created.append((kind, body["metadata"]["name"]))
    except BaseException as exc:
        remove(kube, plan.namespace, plan.job, "", grace=0, only=created)
        if isinstance(exc, KubeError):
            raise _refused(exc, plan, name) from exc
        raise
    return created


def _refused(exc: KubeError, plan: spec.Plan, name: str) -> errors.RayfineError:
    if exc.status == 409:
        return errors.StartError(
            f"Container name {name!r} is in use in namespace {plan.namespace} (object {plan.job});"
            " pick another container_name or stop the other environment."
        )
    if exc.status in (401, 403):
        return errors.StartError(
            f"Kubernetes refused to create {name!r} in namespace {plan.namespace}:"
            f" {exc.api_message}."
            " The account needs create/get/list/watch/patch/delete on pods, pods/log, jobs,"
            " secrets (see rayfine_kubernetes/README.md)."
        )
    return errors.StartError(f"Kubernetes refused to create {name!r}: {exc.api_message}")


def _adopt(kube: Kube, plan: spec.Plan, pod: Mapping[str, Any]) -> None:
    """Make the pod own the Secrets and NetworkPolicy: deleted with it, by the cluster."""
    owner = {"metadata": {"ownerReferences": [spec.owner_reference(pod)]}}
    for kind, name in (
        ("secrets", plan.env_secret),
        ("secrets", plan.token_secret),
        ("networkpolicies", plan.network_policy),
    ):
        if name:
            kube.request(
                "PATCH",
                collection(plan.namespace, kind, name),
                body=owner,
                content_type="application/merge-patch+json",
            )


def _endpoint(cluster: Cluster, namespace: str, pod: Mapping[str, Any], port: int) -> Endpoint:
    access = cluster.settings.access
    if access == "auto":
        inside = cluster.kube.in_cluster
        access = "pod-ip" if inside else "proxy"
    name = str(pod["metadata"]["name"])
    if access == "proxy":
        return proxy_endpoint(cluster.kube, namespace, name, port)
    address = (pod.get("status") or {}).get("podIP")
    if not address:
        state = status.state(pod)
        raise errors.StartError(
            f"Pod {name} exited before it had an address (exit code {state.exit_code})", ""
        )
    return Endpoint(host=str(address), port=port)


def proxy_endpoint(kube: Kube, namespace: str, pod: str, port: int) -> Endpoint:
    """The pod's server through the API server's pod proxy, with this process's credentials."""
    creds = kube.credentials()
    url = urlsplit(creds.server)
    https = url.scheme == "https"
    tls = None
    if https:
        tls = TLSConfig(
            ca_file=creds.ca_file,
            cert_file=creds.cert_file,
            key_file=creds.key_file,
            server_hostname=creds.server_hostname,
            verify=creds.verify,
        )
    prefix = url.path.rstrip("/") + path(
        "api", "v1", "namespaces", namespace, "pods", f"{pod}:{port}", "proxy"
    )
    return Endpoint(
        scheme=url.scheme,
        host=url.hostname or "",
        port=url.port or (443 if https else 80),
        path_prefix=prefix,
        headers=creds.headers,
        tls=tls,
    )


def remove(
    kube: Kube,
    namespace: str,
    job: str,
    pod: str,
    grace: int,
    only: list[tuple[str, str]] | None = None,
) -> None:
    """Delete an environment's Job, pod, Secrets and NetworkPolicy; missing ones are fine.

    The Job goes first (else its controller would replace the pod), in the
    background (the garbage collector removes what it still owns).

    :param only: delete just these (kind, name) objects (a start that failed half-way).
    """
    targets = only if only is not None else [("jobs", job)]
    for kind, name in sorted(targets, key=lambda t: t[0] != "jobs"):
        query = {"gracePeriodSeconds": 0} if kind == "pods" else {"propagationPolicy": "Background"}
        _delete(kube, collection(namespace, kind, name), query)
    if only is not None:
        return
    if pod:
        _delete(kube, collection(namespace, "pods", pod), {"gracePeriodSeconds": max(0, grace)})
    mine = {"labelSelector": f"{JOB_LABEL}={job}"}  # never a namesake Rayfine did not create
    _delete(kube, collection(namespace, "secrets"), mine)
    # Without the right to manage NetworkPolicies this start could not have made one.
    _delete(kube, collection(namespace, "networkpolicies"), mine, forbidden_is_fine=True)


def _delete(
    kube: Kube, where: str, query: Mapping[str, Any], forbidden_is_fine: bool = False
) -> None:
    try:
        kube.request("DELETE", where, query=query)
    except KubeError as exc:
        if exc.status != 404 and not (forbidden_is_fine and exc.status == 403):
            raise errors.RuntimeFailure(
                f"Kubernetes could not delete {where}: {exc.api_message}"
            ) from exc
