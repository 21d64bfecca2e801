"""The Docker runtime: images and containers through the docker SDK.

The SDK is imported when the runtime is first used, so listing plugins
needs neither the SDK's import cost nor a running daemon.  Every request
has a deadline (``RAYFINE_ENGINE_TIMEOUT``; builds get their own, longer
one), and losing the daemon is :class:`EngineUnavailableError` from every
method.
"""

from __future__ import annotations

import codecs
import os
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar

from rayfine_core import errors
from rayfine_core.egress.isolation import (
    check_started_under_gvisor,
    docker_create_options,
    gvisor_available,
    gvisor_capabilities,
)
from rayfine_core.runtime.base import Capabilities, Runtime, engine_timeout
from rayfine_core.runtime.engine_api import (
    LazyClient,
    container_record,
    container_state,
    engine_errors,
    is_bad_reference,
    limit_options,
    ours,
    published_port,
)
from rayfine_core.runtime.types import (
    RUN_MOUNT,
    BuildRequest,
    ContainerHandle,
    ContainerRecord,
    ContainerState,
    Endpoint,
    StartRequest,
    check_reference,
)

from .build_stream import consume_build_stream

T = TypeVar("T")
BUILD_TIMEOUT = 3600
"""Seconds a build may stay silent (a long RUN step) before the daemon counts as lost."""
_FIX = (
    "Start it (e.g. `dockerd &` or `systemctl start docker`), or set DOCKER_HOST /"
    " RAYFINE_DOCKER_HOST."
)


class DockerRuntime(Runtime):
    """Runs environments on a Docker Engine (``DOCKER_HOST`` or ``RAYFINE_DOCKER_HOST``)."""

    name = "docker"
    capabilities = Capabilities(
        unix_socket=True,
        follow_logs=True,
        isolation=frozenset({"container", "gvisor"}),
        mounts=True,
        engine_url_option="base_url",
    )

    def __init__(self, base_url: Optional[str] = None) -> None:
        self._base_url = base_url or os.environ.get("RAYFINE_DOCKER_HOST")
        self._client: LazyClient[Any] = LazyClient(lambda: self._connect(engine_timeout()))
        self._builder: LazyClient[Any] = LazyClient(lambda: self._connect(BUILD_TIMEOUT))
        self._gvisor: Optional[str] = None  # why gVisor cannot run here ("" once checked fine)

    @property
    def client(self) -> Any:
        """The ``docker.DockerClient``, connected on first use."""
        return self._client.get()

    def _connect(self, timeout: float) -> Any:
        import docker

        try:
            if self._base_url:
                client = docker.DockerClient(base_url=self._base_url, timeout=int(timeout))
            else:
                client = docker.from_env(timeout=int(timeout))
            client.ping()
        except Exception as exc:
            where = self._base_url or os.environ.get("DOCKER_HOST") or "the local socket"
            raise errors.EngineUnavailableError(
                f"Cannot reach the Docker daemon at {where}: {type(exc).__name__}. {_FIX}"
            ) from exc
        return client

    def _do(self, action: Callable[[], T]) -> T:
        """Run an engine request; a lost daemon is EngineUnavailableError, a bad reference ValidationError."""
        from docker.errors import APIError

        with engine_errors("Docker", _FIX):
            try:
                return action()
            except APIError as exc:
                if exc.status_code == 400 and is_bad_reference(str(exc.explanation or exc)):
                    raise errors.ValidationError(
                        f"Docker rejects the image reference: {exc.explanation}"
                    ) from None
                raise

    # -- images ---------------------------------------------------------------

    def build(self, request: BuildRequest) -> str:
        from docker.errors import APIError

        builder = self._builder.get()

        def run() -> str:
            stream = builder.api.build(
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
            return str(builder.images.get(request.tag).id)

        try:
            return self._do(run)
        except APIError as exc:
            raise errors.ImageBuildError(
                f"Docker could not build {request.tag!r}: {exc.explanation or exc}"
            ) from exc

    def image_id(self, image: str) -> str:
        return str(self._image(image).id)

    def image_labels(self, image: str) -> dict[str, str]:
        return dict(self._image(image).labels or {})

    def _image(self, image: str) -> Any:
        from docker.errors import ImageNotFound

        check_reference(image)
        try:
            return self._do(lambda: self.client.images.get(image))
        except ImageNotFound:
            raise _image_not_found(image) from None

    # -- containers -----------------------------------------------------------

    def capabilities_for(self, isolation: str) -> Capabilities:
        return (
            gvisor_capabilities(self.capabilities) if isolation == "gvisor" else self.capabilities
        )

    def start(self, request: StartRequest) -> ContainerHandle:
        from docker.errors import APIError, ImageNotFound

        check_reference(request.image)
        if request.isolation == "gvisor":
            self._require_gvisor()
        kwargs = self._run_kwargs(request)
        try:
            container = self._do(lambda: self.client.containers.create(**kwargs))
        except ImageNotFound:
            raise _image_not_found(request.image) from None
        except APIError as exc:
            self._remove_if_ours(request)
            raise errors.StartError(
                f"Docker could not create {request.name!r}: {exc.explanation or exc}"
            ) from exc
        try:
            if request.isolation == "gvisor":  # never run untrusted code on runc by mistake
                check_started_under_gvisor("docker", container.attrs)
            self._do(container.start)
        except (APIError, errors.StartError) as exc:
            self.stop(container.id, timeout=0)
            detail = getattr(exc, "explanation", None) or exc
            raise errors.StartError(f"Docker could not start {request.name!r}: {detail}") from exc
        endpoint = request.socket_endpoint()
        if endpoint is None:
            self._do(container.reload)
            endpoint = Endpoint(port=published_port(self, container.id, container.attrs, request))
        return ContainerHandle(
            id=container.id, name=request.name, endpoint=endpoint, runtime=self.name
        )

    def _remove_if_ours(self, request: StartRequest) -> None:
        """Remove what a failed start left under ``request.name``, never a namesake we did not create."""
        from docker.errors import NotFound

        try:
            found = self._do(lambda: self.client.api.inspect_container(request.name))
        except NotFound:
            return
        if ours((found.get("Config") or {}).get("Labels") or {}, request):
            self.stop(found["Id"], timeout=0)

    def _run_kwargs(self, request: StartRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            image=request.image,
            name=request.name,
            environment=request.env,
            labels=request.labels,
            security_opt=["no-new-privileges:true"],
            cap_drop=["ALL"],
            cap_add=list(request.cap_add) or None,
            command=request.command,
            user=request.user,
        )
        volumes: dict[str, dict[str, str]] = {
            str(m.source): {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
            for m in request.mounts
        }
        if request.run_dir is not None:
            volumes[str(request.run_dir)] = {"bind": RUN_MOUNT, "mode": "rw"}
        if volumes:
            kwargs["volumes"] = volumes
        if request.socket_endpoint() is None:
            kwargs["ports"] = {f"{request.container_port}/tcp": ("127.0.0.1", request.host_port)}
        if request.network:
            kwargs["network_mode"] = request.network
        kwargs.update(limit_options(request.limits))
        kwargs.update(docker_create_options(request.isolation))
        return kwargs

    def _require_gvisor(self) -> None:
        if self._gvisor is None:
            self._gvisor = gvisor_available("docker", self.client) or ""
        if self._gvisor:
            raise errors.ValidationError(f"isolation='gvisor' cannot run here: {self._gvisor}")

    def health(self, container_id: str) -> ContainerState:
        from docker.errors import NotFound

        try:
            inspected = self._do(lambda: self.client.api.inspect_container(container_id))
        except NotFound:
            return ContainerState(running=False, status="removed")
        return container_state(inspected["State"])

    def logs(self, container_id: str, tail: int = 50) -> str:
        from docker.errors import APIError, NotFound

        try:
            raw = self._do(lambda: self.client.api.logs(container_id, tail=tail))
        except NotFound:
            return ""
        except APIError as exc:
            if exc.status_code == 409:  # "dead or marked for removal": as good as gone
                return ""
            raise errors.RuntimeFailure(
                f"Docker could not read the logs of {container_id[:12]}: {exc.explanation}"
            ) from exc
        return bytes(raw).decode(errors="replace")

    def follow_logs(self, container_id: str, tail: int = 50) -> Iterator[str]:
        from docker.errors import APIError, NotFound

        try:
            stream = self._do(
                lambda: self.client.api.logs(
                    container_id, stream=True, follow=True, tail=max(tail, 0)
                )
            )
        except NotFound:
            return
        except APIError as exc:
            if exc.status_code == 409:  # being removed: nothing more will come
                return
            raise errors.RuntimeFailure(
                f"Docker could not read the logs of {container_id[:12]}: {exc.explanation}"
            ) from exc
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        with engine_errors("Docker", _FIX):
            for chunk in stream:  # ends when the container stops
                pending += decoder.decode(chunk)
                *lines, pending = pending.split("\n")
                yield from (line + "\n" for line in lines)
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending

    def stop(self, container_id: str, timeout: float = 5.0) -> None:
        from docker.errors import APIError, NotFound

        def run() -> None:
            if timeout > 0:
                self.client.api.stop(container_id, timeout=max(1, int(timeout)))
            self.client.api.remove_container(container_id, force=True, v=True)

        try:
            self._do(run)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise errors.RuntimeFailure(
                    f"Docker could not remove {container_id[:12]}: {exc.explanation}"
                ) from exc

    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        found = self._do(lambda: self.client.api.containers(all=True, filters=filters))
        return [container_record(c, self.name, created=c.get("Created")) for c in found]

    def version(self) -> str:
        return str(self._do(self.client.version).get("Version", "unknown"))

    def close(self) -> None:
        for lazy in (self._client, self._builder):
            client = lazy.reset()
            if client is not None:
                client.close()


def _image_not_found(image: str) -> errors.ImageNotFoundError:
    return errors.ImageNotFoundError(
        f"Image {image!r} is not in the local Docker engine. Build it first with"
        f" build_image_from_env(ENV_DIR, {image!r}) or `rayfine build ENV_DIR -t {image}`"
        " (Rayfine never pulls images implicitly)."
    )
