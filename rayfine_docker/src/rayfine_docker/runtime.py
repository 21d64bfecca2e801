"""The Docker runtime: images and containers through the docker SDK.

The SDK is imported when the runtime is first used, so listing plugins
needs neither the SDK's import cost nor a running daemon.
"""

from __future__ import annotations

import codecs
import os
import threading
from typing import Any, Iterator, Mapping, Optional

from rayfine_core import errors
from rayfine_core.runtime import Runtime
from rayfine_core.types import (
    BuildRequest,
    ContainerHandle,
    ContainerRecord,
    ContainerState,
    Endpoint,
    StartRequest,
)

from .build_stream import consume_build_stream

SOCKET_MOUNT = "/run/rayfine"


class DockerRuntime(Runtime):
    """Runs environments on a Docker Engine (``DOCKER_HOST`` or ``RAYFINE_DOCKER_HOST``)."""

    name = "docker"

    def __init__(self, base_url: Optional[str] = None) -> None:
        self._base_url = base_url or os.environ.get("RAYFINE_DOCKER_HOST")
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        import docker

        try:
            client = docker.DockerClient(base_url=self._base_url) if self._base_url else docker.from_env()
            client.ping()
        except Exception as exc:
            where = self._base_url or os.environ.get("DOCKER_HOST") or "the local socket"
            raise errors.EngineUnavailableError(
                f"Cannot reach the Docker daemon at {where}: {exc}. Start it (e.g. `dockerd &` or"
                " `systemctl start docker`), or set DOCKER_HOST / RAYFINE_DOCKER_HOST."
            ) from exc
        return client

    # -- images ---------------------------------------------------------------

    def build(self, request: BuildRequest) -> str:
        from docker.errors import APIError

        try:
            stream = self.client.api.build(
                path=str(request.context_dir), dockerfile=request.dockerfile, tag=request.tag,
                buildargs=request.buildargs, labels=request.labels or None, nocache=request.nocache,
                rm=True, forcerm=True, decode=True,
            )
            consume_build_stream(stream, request)
            return self.client.images.get(request.tag).id
        except APIError as exc:
            raise errors.ImageBuildError(f"Docker could not build {request.tag!r}: {exc.explanation or exc}") from exc

    def image_id(self, image: str) -> str:
        from docker.errors import ImageNotFound

        try:
            return str(self.client.images.get(image).id)
        except ImageNotFound:
            raise _image_not_found(image) from None

    def image_labels(self, image: str) -> dict[str, str]:
        from docker.errors import ImageNotFound

        try:
            return dict(self.client.images.get(image).labels or {})
        except ImageNotFound:
            raise _image_not_found(image) from None

    # -- containers -----------------------------------------------------------

    def start(self, request: StartRequest) -> ContainerHandle:
        from docker.errors import APIError, ImageNotFound

        kwargs = self._run_kwargs(request)
        try:
            container = self.client.containers.run(**kwargs)
        except ImageNotFound:
            raise _image_not_found(request.image) from None
        except APIError as exc:
            self._remove_if_ours(request)
            raise errors.StartError(f"Docker could not start {request.name!r}: {exc.explanation or exc}") from exc
        if request.socket_dir is not None:
            endpoint = Endpoint(unix_socket=str(request.socket_dir / "server.sock"))
        else:
            endpoint = Endpoint(port=self._published_port(container, request))
        return ContainerHandle(id=container.id, name=request.name, endpoint=endpoint, runtime=self.name)

    def _remove_if_ours(self, request: StartRequest) -> None:
        """Remove what a failed start left under ``request.name``, never a namesake we did not create."""
        from docker.errors import NotFound

        try:
            found = self.client.api.inspect_container(request.name)
        except NotFound:
            return
        if (found.get("Config") or {}).get("Labels", {}) == request.labels:
            self.stop(found["Id"], timeout=0)

    def _run_kwargs(self, request: StartRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            image=request.image, name=request.name, detach=True, environment=request.env,
            labels=request.labels, security_opt=["no-new-privileges:true"], cap_drop=["ALL"],
            cap_add=list(request.cap_add) or None, command=request.command,
        )
        if request.socket_dir is not None:
            kwargs["volumes"] = {str(request.socket_dir): {"bind": SOCKET_MOUNT, "mode": "rw"}}
        else:
            kwargs["ports"] = {f"{request.container_port}/tcp": ("127.0.0.1", request.host_port)}
        if request.network:
            kwargs["network_mode"] = request.network
        limits = request.limits
        if limits.mem_limit:
            kwargs["mem_limit"] = limits.mem_limit
            kwargs["memswap_limit"] = limits.mem_limit  # no swap beyond the cap: OOM is visible
        if limits.cpu_limit:
            kwargs["nano_cpus"] = int(limits.cpu_limit * 1e9)
        if limits.pids_limit:
            kwargs["pids_limit"] = limits.pids_limit
        return kwargs

    def _published_port(self, container: Any, request: StartRequest) -> int:
        container.reload()
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{request.container_port}/tcp")
        if not bindings:
            logs = self.logs(container.id)
            self.stop(container.id, timeout=0)
            raise errors.StartError(f"Container {request.name!r} exited before its port was published", logs)
        return int(bindings[0]["HostPort"])

    def health(self, container_id: str) -> ContainerState:
        from docker.errors import NotFound

        try:
            state = self.client.api.inspect_container(container_id)["State"]
        except NotFound:
            return ContainerState(running=False, status="removed")
        return ContainerState(
            running=bool(state.get("Running")), exit_code=state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")), status=state.get("Status", ""),
        )

    def logs(self, container_id: str, tail: int = 50) -> str:
        from docker.errors import NotFound

        try:
            return self.client.api.logs(container_id, tail=tail).decode(errors="replace")
        except NotFound:
            return ""

    def follow_logs(self, container_id: str, tail: int = 50) -> Iterator[str]:
        from docker.errors import NotFound

        try:
            stream = self.client.api.logs(container_id, stream=True, follow=True, tail=max(tail, 0))
        except NotFound:
            return
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        for chunk in stream:  # ends when the container stops
            pending += decoder.decode(chunk)
            *lines, pending = pending.split("\n")
            yield from (line + "\n" for line in lines)
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending

    def stop(self, container_id: str, timeout: float = 5.0) -> None:
        from docker.errors import APIError, NotFound

        try:
            if timeout > 0:
                self.client.api.stop(container_id, timeout=max(1, int(timeout)))
            self.client.api.remove_container(container_id, force=True, v=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise errors.RuntimeFailure(f"Docker could not remove {container_id[:12]}: {exc.explanation}") from exc

    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        return [
            ContainerRecord(
                id=c["Id"], name=(c.get("Names") or ["?"])[0].lstrip("/"), image=c.get("Image", ""),
                status=c.get("State", ""), labels=c.get("Labels") or {}, runtime=self.name,
                created=c.get("Created"),
            )
            for c in self.client.api.containers(all=True, filters=filters)
        ]

    def version(self) -> str:
        return str(self.client.version().get("Version", "unknown"))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _image_not_found(image: str) -> errors.ImageNotFoundError:
    return errors.ImageNotFoundError(
        f"Image {image!r} is not in the local Docker engine. Build it first with"
        f" build_image_from_env(ENV_DIR, {image!r}) or `rayfine build ENV_DIR -t {image}`"
        " (Rayfine never pulls images implicitly)."
    )
