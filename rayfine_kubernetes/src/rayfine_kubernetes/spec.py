"""The Kubernetes objects of one environment, built from a StartRequest (no I/O).

* a **Job** whose single pod runs the server (``restartPolicy: Never``,
  ``backoffLimit: 0``): the Job's ``activeDeadlineSeconds`` is the backstop
  the client keeps pushing forward (see :mod:`rayfine_kubernetes.deadline`);
* a **Secret** with the environment variables (``envFrom``) and another with
  the token (a file in a read-only volume; ``RAYFINE_TOKEN_FILE``), so no
  value is ever in a pod spec; both are owned by the pod once it exists;
* with ``network="none"`` (where the cluster enforces it) a **NetworkPolicy**
  that lets nothing out and only the server port in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from rayfine_core import StartRequest
from rayfine_core import labels as rf_labels
from rayfine_core.errors import ValidationError

from . import names

CONTAINER = "env"
TOKEN_DIR = "/run/rayfine"
TOKEN_FILE = TOKEN_DIR + "/token"
RUNTIME_CLASSES = {"gvisor": "gvisor", "kata": "kata"}
"""``StartRequest.isolation`` -> RuntimeClass name (``options["runtime_class_name"]`` overrides)."""
_SERVER_VARIABLES = ("RAYFINE_UDS", "RAYFINE_HOST", "RAYFINE_PORT")
_OPTIONS = {
    "namespace": str,
    "node_selector": dict,
    "tolerations": list,
    "runtime_class_name": str,
    "service_account": str,
    "tmp_size": str,
    "read_only_root": bool,
    "start_timeout": (int, float),
}


@dataclass
class Plan:
    """Everything one start creates, by name."""

    namespace: str
    job: str
    env_secret: Optional[str]
    token_secret: Optional[str]
    network_policy: Optional[str]
    objects: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(API collection path, body) in creation order; the Job comes last."""


def check_options(options: Mapping[str, Any]) -> None:
    """ValidationError for an unknown option or one of the wrong type."""
    for key, value in options.items():
        if key not in _OPTIONS:
            raise ValidationError(
                f"Unknown kubernetes option {key!r}. Choose from: {', '.join(sorted(_OPTIONS))}."
            )
        if not isinstance(value, _OPTIONS[key]):  # type: ignore[arg-type]
            raise ValidationError(f"kubernetes option {key!r} has the wrong type: {value!r}.")


def plan(
    request: StartRequest,
    namespace: str,
    image: str,
    lease_seconds: int,
    avoid_nodes: Sequence[str] = (),
) -> Plan:
    """The objects to create for ``request``, running ``image`` (a pinned reference)."""
    options = request.options
    check_options(options)
    job = names.object_name(request.name)
    labels = names.encode_labels(request.labels)
    notes = names.notes(request.labels, request.name, request.image)
    token = request.token
    env = {k: v for k, v in request.env.items() if k not in _SERVER_VARIABLES}
    result = Plan(
        namespace=namespace,
        job=job,
        env_secret=f"{job}-env" if env else None,
        token_secret=f"{job}-token" if token else None,
        network_policy=None,
    )
    meta = {"namespace": namespace, "labels": labels, "annotations": notes}
    if result.env_secret:
        result.objects.append(("secrets", _secret(result.env_secret, meta, env)))
    if result.token_secret and token:
        result.objects.append(("secrets", _secret(result.token_secret, meta, {"token": token})))
    if request.network == "none":
        result.network_policy = f"{job}-isolate"
        result.objects.append(
            ("networkpolicies", _network_policy(result.network_policy, meta, request))
        )
    pod = _pod_spec(request, image, result, options, avoid_nodes)
    result.objects.append(("jobs", _job(job, meta, pod, lease_seconds, request.labels)))
    return result


def _secret(name: str, meta: Mapping[str, Any], data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {**meta, "name": name},
        "type": "Opaque",
        "stringData": dict(data),
    }


def _job(
    name: str,
    meta: Mapping[str, Any],
    pod: dict[str, Any],
    lease_seconds: int,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "completions": 1,
        "parallelism": 1,
        "template": {
            "metadata": {"labels": meta["labels"], "annotations": meta["annotations"]},
            "spec": pod,
        },
    }
    if lease_seconds and labels.get(rf_labels.DETACHED) != "1":
        spec["activeDeadlineSeconds"] = lease_seconds
        # Clusters >= 1.21 also delete the finished Job (and so its pod); 1.20 ignores it.
        spec["ttlSecondsAfterFinished"] = max(lease_seconds, 600)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {**meta, "name": name},
        "spec": spec,
    }


def _pod_spec(
    request: StartRequest,
    image: str,
    plan: Plan,
    options: Mapping[str, Any],
    avoid_nodes: Sequence[str],
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",  # the reference is pinned by digest
        "ports": [{"name": "rayfine", "containerPort": request.container_port}],
        "env": _plain_env(request, plan),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": bool(options.get("read_only_root", True)),
            "capabilities": {"drop": ["ALL"], "add": _capabilities(request.cap_add)},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if request.command is not None:
        container["args"] = list(request.command)  # like docker's command: replaces CMD
    if plan.env_secret:
        container["envFrom"] = [{"secretRef": {"name": plan.env_secret}}]
    resources = _resources(request)
    if resources:
        container["resources"] = {"limits": resources, "requests": dict(resources)}
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": str(options.get("tmp_size", "1Gi"))}}
    ]
    security = _pod_security(request.user)
    if plan.token_secret:
        group_readable = "fsGroup" in security
        volumes.append(
            {
                "name": "token",
                "secret": {
                    "secretName": plan.token_secret,
                    "items": [{"key": "token", "path": "token"}],
                    "defaultMode": 0o440 if group_readable else 0o444,
                },
            }
        )
        container["volumeMounts"].append(
            {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True}
        )
    service_account = options.get("service_account")
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": bool(service_account),
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
        "securityContext": security,
        "containers": [container],
        "volumes": volumes,
        "topologySpreadConstraints": [_spread()],
    }
    if service_account:
        pod["serviceAccountName"] = service_account
    if options.get("node_selector"):
        pod["nodeSelector"] = {str(k): str(v) for k, v in options["node_selector"].items()}
    if options.get("tolerations"):
        pod["tolerations"] = list(options["tolerations"])
    runtime_class = _runtime_class(request, options)
    if runtime_class:
        pod["runtimeClassName"] = runtime_class
    if avoid_nodes:
        term = {
            "matchFields": [
                {"key": "metadata.name", "operator": "NotIn", "values": sorted(avoid_nodes)}
            ]
        }
        pod["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
            }
        }
    return pod


def _plain_env(request: StartRequest, plan: Plan) -> list[dict[str, str]]:
    """The only variables in the pod spec: where to listen and where the token file is."""
    env = [
        {"name": "RAYFINE_HOST", "value": "0.0.0.0"},
        {"name": "RAYFINE_PORT", "value": str(request.container_port)},
    ]
    if plan.token_secret:
        env.append({"name": "RAYFINE_TOKEN_FILE", "value": TOKEN_FILE})
    if "HOME" not in request.env:
        env.append({"name": "HOME", "value": "/tmp"})  # the root filesystem is read-only
    return env


def _pod_security(user: Optional[str]) -> dict[str, Any]:
    security: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if user is None:
        return security
    match = re.fullmatch(r"(\d+)(?::(\d+))?", str(user))
    if not match:
        raise ValidationError(
            f"user must be numeric 'uid' or 'uid:gid' on Kubernetes, got {user!r}"
            " (a pod's securityContext takes numbers only)."
        )
    uid = int(match.group(1))
    security["runAsUser"] = uid
    security["runAsNonRoot"] = uid != 0
    if match.group(2) is not None:
        gid = int(match.group(2))
        security["runAsGroup"] = gid
        security["fsGroup"] = gid  # the token file is group-readable, by this group only
    return security


def _capabilities(cap_add: Sequence[str]) -> list[str]:
    caps = []
    for cap in cap_add:
        name = str(cap).upper()
        name = name[4:] if name.startswith("CAP_") else name
        if not re.fullmatch(r"[A-Z_]+", name):
            raise ValidationError(f"Invalid capability {cap!r}.")
        caps.append(name)
    return caps


def _resources(request: StartRequest) -> dict[str, str]:
    limits = request.limits
    if limits.pids_limit is not None:
        raise ValidationError(
            "pids_limit is not available on Kubernetes: a pod's process limit is a node setting"
            " (the kubelet's podPidsLimit). Leave pids_limit unset for runtime='kubernetes'."
        )
    resources = {}
    if limits.mem_limit:
        resources["memory"] = memory_quantity(str(limits.mem_limit))
    if limits.cpu_limit:
        resources["cpu"] = f"{max(1, round(float(limits.cpu_limit) * 1000))}m"
    return resources


def memory_quantity(value: str) -> str:
    """Docker's ``512m`` / ``2g`` / ``1.5g`` / ``1024`` as a Kubernetes quantity."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([bkmgBKMG]?)", value.strip())
    if not match:
        raise ValidationError(f"mem_limit must look like '512m' or '2g', got {value!r}.")
    number, unit = match.groups()
    suffix = {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi"}[unit.lower()]
    if "." in number and not suffix:
        raise ValidationError(f"mem_limit in bytes must be a whole number, got {value!r}.")
    return number + suffix


def _runtime_class(request: StartRequest, options: Mapping[str, Any]) -> Optional[str]:
    if options.get("runtime_class_name"):
        return str(options["runtime_class_name"])
    isolation = request.isolation
    if isolation == "container":
        return None
    if isolation not in RUNTIME_CLASSES:
        raise ValidationError(
            f"Unknown isolation {isolation!r}. Choose one of: container,"
            f" {', '.join(RUNTIME_CLASSES)}"
            " (or name a RuntimeClass with options={'runtime_class_name': ...})."
        )
    return RUNTIME_CLASSES[isolation]


def _spread() -> dict[str, Any]:
    """Prefer spreading Rayfine pods over nodes (a preference: never blocks scheduling)."""
    return {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {rf_labels.OWNER: rf_labels.OWNER_VALUE}},
    }


def _network_policy(name: str, meta: Mapping[str, Any], request: StartRequest) -> dict[str, Any]:
    env_id = request.labels.get(rf_labels.ENV_ID, "")
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {**meta, "name": name},
        "spec": {
            "podSelector": {"matchLabels": {rf_labels.ENV_ID: names.label_value(env_id)}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": request.container_port}]}],
            "egress": [],
        },
    }


def owner_reference(pod: Mapping[str, Any]) -> dict[str, Any]:
    """An ownerReference to ``pod``: the object is garbage-collected when the pod is deleted."""
    meta = pod["metadata"]
    return {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}
