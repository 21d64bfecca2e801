"""Waiting for a starting environment's pod: a watch on the Job's pods, with a deadline.

A watch reacts to each status change as the kubelet reports it (no polling
interval in the start latency).  Between short watch windows the Job's and
the pod's Warning events are read, so failures that never change a pod's
status (a quota or an admission webhook refusing the pod, a sandbox that
cannot be created) end the wait at once, with the cluster's own words.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping, Optional

from rayfine_core import errors

from . import status
from .api import Kube, KubeError, path

WINDOW = 2.0
"""Seconds per watch request; events are checked between two."""
SANDBOX_FAILURES = 2
"""A pod sandbox failing this many times will not start (e.g. an unsupported RuntimeClass)."""


class StartFailed(errors.StartError):
    """The pod cannot start; ``image_missing`` when the registry has no such image."""

    def __init__(self, message: str, image_missing: bool = False) -> None:
        self.image_missing = image_missing
        super().__init__(message)


def wait_for_pod(
    kube: Kube,
    namespace: str,
    job: str,
    timeout: float,
    on_first_sight: Callable[[Mapping[str, Any]], None],
) -> dict[str, Any]:
    """The Job's pod once its container runs (or already exited).

    :param on_first_sight: called once with the pod when it first appears.
    :raises StartFailed: the pod cannot start (the reason and the cluster's message).
    :raises StartTimeout: not running within ``timeout`` seconds (where it stands, and why).
    """
    deadline = time.monotonic() + timeout
    pods = path("api", "v1", "namespaces", namespace, "pods")
    query = {"labelSelector": f"job-name={job}"}
    seen: Optional[dict[str, Any]] = None
    version: Optional[str] = None
    while True:
        if version is None:
            listing = kube.request("GET", pods, query=query)
            version = str(listing["metadata"]["resourceVersion"])
            for pod in listing.get("items") or ():
                seen = _note(seen, pod, on_first_sight)
                if status.progress(pod).done:
                    return pod
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout(kube, namespace, job, seen, timeout)
        window = max(1, int(min(WINDOW, remaining) + 0.999))
        watch = {**query, "watch": "1", "resourceVersion": version, "timeoutSeconds": window}
        for line in kube.stream(pods, watch, read_timeout=window + 5.0):
            if not line.strip():
                continue
            event = json.loads(line)
            kind, pod = event.get("type"), event.get("object") or {}
            if kind == "ERROR":  # e.g. 410 Gone: the version is too old; list again
                version = None
                break
            version = str((pod.get("metadata") or {}).get("resourceVersion") or version)
            if kind in ("ADDED", "MODIFIED"):
                seen = _note(seen, pod, on_first_sight)
                progress = status.progress(pod)
                if progress.failure:
                    raise StartFailed(
                        f"Pod {pod['metadata']['name']} cannot start: {progress.failure}",
                        progress.image_missing,
                    )
                if progress.done:
                    return pod
            elif kind == "DELETED":
                raise StartFailed(f"Pod {pod['metadata']['name']} was deleted while starting.")
        _check_events(kube, namespace, job, seen)


def _note(
    seen: Optional[dict[str, Any]],
    pod: dict[str, Any],
    on_first_sight: Callable[[Mapping[str, Any]], None],
) -> dict[str, Any]:
    if seen is None:
        on_first_sight(pod)
    return pod


def warnings(kube: Kube, namespace: str, name: str) -> list[Mapping[str, Any]]:
    """Warning events about object ``name``, oldest first."""
    try:
        listing = kube.request(
            "GET",
            path("api", "v1", "namespaces", namespace, "events"),
            query={"fieldSelector": f"involvedObject.name={name},type=Warning"},
        )
    except KubeError:
        return []
    return sorted(listing.get("items") or (), key=lambda e: str(e.get("lastTimestamp") or ""))


def _check_events(kube: Kube, namespace: str, job: str, pod: Optional[Mapping[str, Any]]) -> None:
    if pod is None:
        for event in warnings(kube, namespace, job):
            if event.get("reason") == "FailedCreate":
                raise StartFailed(f"Kubernetes refused to create the pod: {event.get('message')}")
        return
    for event in warnings(kube, namespace, pod["metadata"]["name"]):
        if event.get("reason") != "FailedCreatePodSandBox":
            continue
        message = str(event.get("message") or "")
        hopeless = "not supported" in message or "RuntimeHandler" in message
        if hopeless or int(event.get("count") or 1) >= SANDBOX_FAILURES:
            raise StartFailed(f"The pod's sandbox cannot be created: {message}")


def _timeout(
    kube: Kube, namespace: str, job: str, pod: Optional[Mapping[str, Any]], timeout: float
) -> errors.StartTimeout:
    if pod is None:
        where = "no pod was created"
        name = job
    else:
        name = pod["metadata"]["name"]
        where = f"pod {name} is {status.progress(pod).detail or 'pending'}"
    recent = "; ".join(str(e.get("message")) for e in warnings(kube, namespace, name)[-3:])
    return errors.StartTimeout(
        f"Job {namespace}/{job} did not start within {timeout:g}s: {where}"
        + (f" (events: {recent})" if recent else "")
        + ". Raise RAYFINE_K8S_START_TIMEOUT if the image is just slow to pull."
    )
