"""What a pod's status means to Rayfine (no I/O).

Readiness, exit codes and OOM kills come from
``status.containerStatuses[].state``; a pod that can never start (image
missing, bad configuration) is recognised by the reason its container waits.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from rayfine_core import ContainerRecord, ContainerState

from . import names
from .spec import CONTAINER

FATAL_WAITING = {
    "ErrImagePull": "the image could not be pulled",
    "ImagePullBackOff": "the image could not be pulled",
    "InvalidImageName": "the image reference is invalid",
    "ErrImageNeverPull": "the image is not on the node",
    "CreateContainerConfigError": "the container's configuration is invalid",
    "CreateContainerError": "the container could not be created",
    "RunContainerError": "the container could not be started",
}
"""Reasons a container waits that will not resolve by waiting longer."""


@dataclass(frozen=True)
class StartProgress:
    """Where a starting pod is: ``done`` (running or exited), ``failure``, or still waiting."""

    done: bool = False
    failure: Optional[str] = None
    image_missing: bool = False
    detail: str = ""


def container_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == CONTAINER:
            return status  # type: ignore[no-any-return]
    return {}


def progress(pod: Mapping[str, Any]) -> StartProgress:
    """How far a pod has come since it was created."""
    status = pod.get("status") or {}
    state = container_status(pod).get("state") or {}
    if "running" in state or "terminated" in state:
        return StartProgress(done=True)
    if status.get("phase") in ("Failed", "Succeeded"):
        return StartProgress(done=True)
    waiting = state.get("waiting") or {}
    reason = str(waiting.get("reason") or "")
    message = str(waiting.get("message") or "")
    if reason in FATAL_WAITING:
        if reason == "ErrImagePull" and not _permanent_pull_error(message):
            return StartProgress(detail=f"{reason}: {message}")  # maybe a registry hiccup
        return StartProgress(
            failure=f"{FATAL_WAITING[reason]} ({reason}: {message})",
            image_missing=reason in ("ErrImagePull", "ImagePullBackOff") and _not_found(message),
        )
    for condition in status.get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return StartProgress(detail=f"not scheduled: {condition.get('message', '')}")
    return StartProgress(detail=reason or str(status.get("phase") or "Pending"))


def _not_found(message: str) -> bool:
    text = message.lower()
    return "not found" in text or "manifest unknown" in text or "does not exist" in text


def _permanent_pull_error(message: str) -> bool:
    text = message.lower()
    return _not_found(text) or "unauthorized" in text or "denied" in text


def state(pod: Optional[Mapping[str, Any]]) -> ContainerState:
    """The :class:`ContainerState` a pod's status reports (None: the pod is gone)."""
    if pod is None:
        return ContainerState(running=False, status="removed")
    status = pod.get("status") or {}
    container = container_status(pod).get("state") or {}
    terminated = container.get("terminated")
    if terminated:
        return ContainerState(
            running=False,
            exit_code=terminated.get("exitCode"),
            oom_killed=terminated.get("reason") == "OOMKilled",
            status="exited",
        )
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return ContainerState(running=False, status="removing")
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded"):
        # Killed before its container reported (deadline, eviction): no exit code.
        return ContainerState(running=False, status=str(status.get("reason") or phase).lower())
    if "running" in container:
        return ContainerState(running=True, status="running")
    return ContainerState(running=True, status="created")  # pending: not dead yet


def record(
    job: Mapping[str, Any], pod: Optional[Mapping[str, Any]], runtime: str
) -> ContainerRecord:
    """A :class:`ContainerRecord` for a Rayfine Job (and its pod, if it has one)."""
    meta = job.get("metadata") or {}
    notes = meta.get("annotations") or {}
    pod_name = str(((pod or {}).get("metadata") or {}).get("name") or "")
    shown = state(pod).status if pod is not None else _job_status(job)
    return ContainerRecord(
        id=names.container_id(str(meta.get("namespace")), str(meta.get("name")), pod_name),
        name=str(notes.get(names.NAME_ANNOTATION) or meta.get("name")),
        image=str(notes.get(names.IMAGE_ANNOTATION) or ""),
        status=shown,
        labels=names.original_labels(meta),
        runtime=runtime,
        created=timestamp(meta.get("creationTimestamp")),
    )


def _job_status(job: Mapping[str, Any]) -> str:
    status = job.get("status") or {}
    if status.get("active"):
        return "created"
    for condition in status.get("conditions") or ():
        if condition.get("status") == "True" and condition.get("type") in ("Failed", "Complete"):
            return "exited"
    return "created"


def timestamp(value: Any) -> Optional[float]:
    """Unix time from an RFC 3339 timestamp as the API server writes them (UTC, ``Z``)."""
    if not value:
        return None
    try:
        return float(calendar.timegm(time.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None
