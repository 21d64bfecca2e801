"""The Kubernetes runtime: one pod per environment, on any cluster a kubeconfig reaches.

Images are built by the local Docker engine and pushed to a registry the
cluster pulls from (:mod:`.images`); each environment is a Job with one pod,
its variables and token in Secrets the pod owns (:mod:`.spec`,
:mod:`.starting`); clients reach the server through the API server's pod
proxy or at the pod IP; a client that dies stops renewing its Jobs'
deadlines and the cluster deletes their pods (:mod:`.deadline`).

Every method raises :class:`~rayfine_core.errors.EngineUnavailableError`
when the API server (or the registry) does not answer within
``RAYFINE_ENGINE_TIMEOUT`` seconds.
"""

from __future__ import annotations

import codecs
from typing import Any, ClassVar, Iterator, Mapping, Optional

from rayfine_core import (
    BuildRequest,
    Capabilities,
    ContainerHandle,
    ContainerRecord,
    ContainerState,
    Runtime,
    StartRequest,
)

from . import names, starting, status
from .api import Kube, KubeError, path
from .deadline import DeadlineKeeper
from .images import Images
from .nodes import Nodes
from .settings import Settings
from .spec import CONTAINER


class KubernetesRuntime(Runtime):
    """Runs environments as pods (configuration: see :mod:`rayfine_kubernetes.settings`)."""

    name = "kubernetes"
    capabilities: ClassVar[Capabilities] = Capabilities(
        unix_socket=False,  # the pod is on another machine: no host directory to share
        host_ports=False,  # reached through the API server or the pod IP instead
        network_none=False,  # only as a NetworkPolicy, where the cluster enforces them (opt-in)
        memory_limit=True,
        cpu_quota=True,
        pids_limit=False,  # a kubelet setting (podPidsLimit), not a pod's
        oom_flag=True,
        follow_logs=True,
        builds=True,  # with the local Docker engine, then pushed
        user=True,
        isolation=frozenset({"container"}),  # gvisor/kata: RuntimeClasses, where clusters have them
        local_host=False,
        death_grace=10.0,  # the kubelet's status lags the connection drop
        http_apps=True,
        runs_build_steps=True,  # the local Docker engine builds
    )

    def __init__(
        self,
        *,
        kubeconfig: Optional[str] = None,
        context: Optional[str] = None,
        namespace: Optional[str] = None,
        access: Optional[str] = None,
        registry: Optional[str] = None,
        lease_seconds: Optional[int] = None,
        settings: Optional[Settings] = None,
    ) -> None:
        self.settings = settings or Settings.from_env(
            kubeconfig=kubeconfig,
            context=context,
            namespace=namespace,
            access=access,
            registry=registry,
            lease_seconds=lease_seconds,
        )
        self._kube = Kube(self.settings)
        self._images = Images(self.settings.registry, self.settings.api_timeout)
        self._nodes = Nodes(self._kube)
        self._deadlines = DeadlineKeeper(self._renew, self.settings.lease_seconds)
        self._cluster = starting.Cluster(
            self._kube, self._images, self._nodes, self._deadlines, self.settings, self.name
        )

    @property
    def api(self) -> Kube:
        """This runtime's connection to the API server (for tools and tests: raw JSON requests)."""
        return self._kube

    # -- images -----------------------------------------------------------------

    def pinned_image(self, image: str) -> str:
        """``registry/repository@sha256:...``: the exact image a start of ``image`` now runs."""
        return self._images.pinned(image)

    def build(self, request: BuildRequest) -> str:
        """Build with the local Docker engine and push to the registry; the image id.

        :raises ValidationError: no registry configured (``RAYFINE_K8S_REGISTRY``).
        :raises ImageBuildError: the build or the push failed.
        """
        return self._images.build(request)

    def image_labels(self, image: str) -> dict[str, str]:
        """Labels of ``image`` as the registry has it.

        :raises ImageNotFoundError: not in the registry. :raises ValidationError: malformed.
        """
        return self._images.labels(image)

    def image_id(self, image: str) -> str:
        """The image's id (its config digest, as Docker reports it) in the registry."""
        return self._images.image_id(image)

    # -- environments -----------------------------------------------------------

    def start(self, request: StartRequest) -> ContainerHandle:
        """Create the environment's Job and wait until its container runs (see :mod:`.starting`)."""
        return starting.start(self._cluster, request)

    def health(self, container_id: str) -> ContainerState:
        """The pod's state; ``status="node-lost"`` (not running) when its node stopped answering."""
        namespace, _job, pod_name = names.split_id(container_id)
        if not pod_name:
            return ContainerState(running=False, status="removed")
        pod = self._get_pod(namespace, pod_name)
        state = status.state(pod)
        if pod is not None and state.running:
            node = (pod.get("spec") or {}).get("nodeName")
            if self._nodes.is_lost(namespace, pod_name, node):
                return ContainerState(running=False, status="node-lost")
        return state

    def logs(self, container_id: str, tail: int = 50) -> str:
        """The last ``tail`` lines of the server's output ("" if gone or not started)."""
        namespace, _, pod = names.split_id(container_id)
        if not pod:
            return ""
        try:
            return self._kube.request_text(
                self._log_path(namespace, pod), {"container": CONTAINER, "tailLines": max(tail, 0)}
            )
        except KubeError:  # gone, not started, or its node unreachable
            return ""

    def follow_logs(self, container_id: str, tail: int = 50) -> Iterator[str]:
        """The last ``tail`` lines, then each new line until the container stops (streamed)."""
        namespace, _, pod = names.split_id(container_id)
        if not pod:
            return
        query = {"container": CONTAINER, "follow": "true", "tailLines": max(tail, 0)}
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            for line in self._kube.stream(self._log_path(namespace, pod), query, read_timeout=None):
                yield decoder.decode(line)
        except KubeError:
            return

    def stop(self, container_id: str, timeout: float = 5.0) -> None:
        """Delete the Job, the pod (``timeout`` seconds of grace; 0 = at once) and its Secrets."""
        namespace, job, pod = names.split_id(container_id)
        self._deadlines.untrack(namespace, job)
        starting.remove(self._kube, namespace, job, pod, grace=int(timeout))

    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        """Environments (Jobs, with their pods) in the runtime's namespace carrying ``labels``."""
        namespace = self._kube.namespace
        query = {"labelSelector": names.selector(labels)}
        jobs = self._kube.request("GET", starting.collection(namespace, "jobs"), query=query)
        pods = self._kube.request("GET", starting.collection(namespace, "pods"), query=query)
        newest: dict[str, Any] = {}
        for pod in sorted(
            pods.get("items") or (), key=lambda p: p["metadata"]["creationTimestamp"]
        ):
            newest[(pod["metadata"].get("labels") or {}).get("job-name", "")] = pod
        records = [
            status.record(job, newest.get(job["metadata"]["name"]), self.name)
            for job in jobs.get("items") or ()
        ]
        wanted = dict(labels)
        return [r for r in records if all(r.labels.get(k) == v for k, v in wanted.items())]

    # -- the engine -------------------------------------------------------------

    def version(self) -> str:
        """The API server's version (``v1.20.2``)."""
        return str(self._kube.request("GET", "/version").get("gitVersion", "unknown"))

    def close(self) -> None:
        """Stop renewing deadlines and close the connections."""
        self._deadlines.close()
        self._images.close()
        self._kube.close()

    # -- helpers ----------------------------------------------------------------

    def _get_pod(self, namespace: str, pod: str) -> Optional[dict[str, Any]]:
        try:
            return self._kube.request("GET", starting.collection(namespace, "pods", pod))  # type: ignore[no-any-return]
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    @staticmethod
    def _log_path(namespace: str, pod: str) -> str:
        return path("api", "v1", "namespaces", namespace, "pods", pod, "log")

    def _renew(self, namespace: str, job: str, seconds: int) -> None:
        try:
            self._kube.request(
                "PATCH",
                starting.collection(namespace, "jobs", job),
                body={"spec": {"activeDeadlineSeconds": seconds}},
                content_type="application/merge-patch+json",
            )
        except KubeError as exc:
            if exc.status == 404:  # stopped meanwhile
                self._deadlines.untrack(namespace, job)
                return
            raise
