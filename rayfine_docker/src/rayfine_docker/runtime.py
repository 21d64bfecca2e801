"""The Docker runtime: images and containers through the docker SDK.

The SDK is imported when the runtime is first used, so listing plugins
needs neither the SDK's import cost nor a running daemon.
"""

from __future__ import annotations

import codecs
import os
from typing import Any, Iterator, Mapping, Optional

from rayfine_core import errors
from rayfine_core.engine_api import (
    LazyClient,
    container_record,
    container_state,
    limit_options,
    published_port,
)
from rayfine_core.runtime import Runtime
from rayfine_core.types import (
    SOCKET_MOUNT,
    BuildRequest,
    ContainerHandle,
    ContainerRecord,
    ContainerState,
    Endpoint,
    StartRequest,
)

from .build_stream import consume_build_stream


class DockerRuntime(Runtime):
    """Runs environments on a Docker Engine (``DOCKER_HOST`` or ``RAYFINE_DOCKER_HOST``)."""

    name = "docker"

    def __init__(self, base_url: Optional[str] = None) -> None:
        self._base_url = base_url or os.environ.get("RAYFINE_DOCKER_HOST")
        self._client: LazyClient[Any] = LazyClient(self._connect)

    @property
    def client(self) -> Any:
        """The ``docker.DockerClient``, connected on first use."""
        return self._client.get()

    def _connect(self) -> Any:
        import docker

        try:
            client = (
                docker.DockerClient(base_url=self._base_url)
                if self._base_url
                else docker.from_env()
            )
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
                path=str(request.context_dir),
                dockerfile=request.dockerfile,
                tag=request.tag,
                buildargs=request.buildargs,
                labels=request.labels or None,
                nocache=request.nocache,
                rm=True,
                forcerm=True,
                decode=True,
            )
            consume_build_stream(stream, request)
            return self.client.images.get(request.tag).id
        except APIError as exc:
            raise errors.ImageBuildError(
                f"Docker could not build {request.tag!r}: {exc.explanation or exc}"
            ) from exc

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
            raise errors.StartError(
                f"Docker could not start {request.name!r}: {exc.explanation or exc}"
            ) from exc
        endpoint = request.socket_endpoint()
        if endpoint is None:
            container.reload()
            endpoint = Endpoint(port=published_port(self, container.id, container.attrs, request))
        return ContainerHandle(
            id=container.id, name=request.name, endpoint=endpoint, runtime=self.name
        )

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
            image=request.image,
            name=request.name,
            detach=True,
            environment=request.env,
            labels=request.labels,
            security_opt=["no-new-privileges:true"],
            cap_drop=["ALL"],
            cap_add=list(request.cap_add) or None,
            command=request.command,
        )
        if request.socket_dir is not None:
            kwargs["volumes"] = {str(request.socket_dir): {"bind": SOCKET_MOUNT, "mode": "rw"}}
        else:
            kwargs["ports"] = {f"{request.container_port}/tcp": ("127.0.0.1", request.host_port)}
        if request.network:
            kwargs["network_mode"] = request.network
        kwargs.update(limit_options(request.limits))
        return kwargs

    def health(self, container_id: str) -> ContainerState:
        from docker.errors import NotFound

        try:
            return container_state(self.client.api.inspect_container(container_id)["State"])
        except NotFound:
            return ContainerState(running=False, status="removed")

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
                raise errors.RuntimeFailure(
                    f"Docker could not remove {container_id[:12]}: {exc.explanation}"
                ) from exc

    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        return [
            container_record(c, self.name, created=c.get("Created"))
            for c in self.client.api.containers(all=True, filters=filters)
        ]

    def version(self) -> str:
        return str(self.client.version().get("Version", "unknown"))

    def close(self) -> None:
        client = self._client.reset()
        if client is not None:
            client.close()


def _image_not_found(image: str) -> errors.ImageNotFoundError:
    return errors.ImageNotFoundError(
        f"Image {image!r} is not in the local Docker engine. Build it first with"
        f" build_image_from_env(ENV_DIR, {image!r}) or `rayfine build ENV_DIR -t {image}`"
        " (Rayfine never pulls images implicitly)."
    )
