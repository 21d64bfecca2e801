"""The Podman runtime: images and containers through podman-py and podman's API service.

podman-py is imported when the runtime is first used, so listing plugins
needs neither the SDK nor a running service.  Which service is used, and
when one is started, is decided by :class:`~rayfine_podman.service.PodmanService`.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import datetime
from typing import Any, Iterator, Mapping, Optional

from rayfine_core import errors
from rayfine_core.egress.isolation import (
    check_started_under_gvisor,
    gvisor_available,
    gvisor_capabilities,
    podman_service_url,
)
from rayfine_core.runtime.base import Capabilities, Runtime, engine_timeout
from rayfine_core.runtime.engine_api import (
    LazyClient,
    container_record,
    container_state,
    is_bad_reference,
    limit_options,
    ours,
    published_port,
    unreachable_error,
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

from . import logs
from .build import stream_build
from .references import exact_name, matches
from .service import PodmanService, redact

BUILD_TIMEOUT = 3600
"""Seconds a build may stay silent (a long RUN step) before the service counts as lost."""
_FIX = (
    "Check that the podman service still runs (`podman system service`), or set"
    " RAYFINE_PODMAN_URL / CONTAINER_HOST."
)
_NETWORK_MODES = ("none", "host", "bridge", "private", "slirp4netns", "pasta")
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


class PodmanRuntime(Runtime):
    """Runs environments on Podman (``RAYFINE_PODMAN_URL``, ``CONTAINER_HOST``, or a found/started service)."""

    name = "podman"
    # Podman 4.3 on cgroup v1 (this project's CI) reports an OOM kill only as exit code 137.
    capabilities = Capabilities(
        unix_socket=True,
        follow_logs=True,
        oom_flag=False,
        isolation=frozenset({"container", "gvisor"}),
        mounts=True,
        engine_url_option="base_url",
    )

    def __init__(self, base_url: Optional[str] = None) -> None:
        self._service = PodmanService(base_url)
        self._client: LazyClient[Any] = LazyClient(lambda: self._connect(engine_timeout()))
        self._builder: LazyClient[Any] = LazyClient(lambda: self._connect(BUILD_TIMEOUT))
        # Podman 4.3's API ignores a per-container runtime, so gVisor containers are created
        # through a second service whose default runtime is runsc (scripts/install-gvisor.sh).
        self._gvisor: LazyClient[Any] = LazyClient(self._connect_gvisor)
        self._tails: Optional[bool] = None

    @property
    def client(self) -> Any:
        """The ``podman.PodmanClient``, connected (and the service found or started) on first use."""
        return self._client.get()

    def _connect(self, timeout: float) -> Any:
        import podman

        url = self._service.resolve()
        try:
            client = podman.PodmanClient(base_url=url, timeout=int(timeout))
            if not client.ping():
                raise RuntimeError("the service did not answer /_ping")
        except Exception as exc:
            self._service.close()
            raise errors.EngineUnavailableError(
                f"Cannot reach the podman service at {redact(url)}: {exc}. Start it (e.g. `podman system"
                " service --time=0 unix:///run/podman/podman.sock &`, or `systemctl --user start"
                " podman.socket` for rootless podman), or set RAYFINE_PODMAN_URL / CONTAINER_HOST."
            ) from exc
        return client

    # -- images ---------------------------------------------------------------

    def build(self, request: BuildRequest) -> str:
        from podman.errors import APIError

        try:
            with _engine_errors():
                stream_build(self._builder.get(), request)
            return str(self._image(request.tag).id)
        except APIError as exc:
            raise errors.ImageBuildError(
                f"Podman could not build {request.tag!r}: {_explain(exc)}"
            ) from exc

    def image_id(self, image: str) -> str:
        return str(self._image(image).id)

    def image_labels(self, image: str) -> dict[str, str]:
        return dict(self._image(image).labels or {})

    def _image(self, reference: str) -> Any:
        """The local image ``reference`` names, as Docker would resolve it (see :mod:`.references`)."""
        from podman.errors import APIError, ImageNotFound, NotFound

        check_reference(reference)
        try:
            with _engine_errors():
                image = self.client.images.get(reference)
        except (ImageNotFound, NotFound):
            raise _image_not_found(reference) from None
        except APIError as exc:
            _raise_if_unreachable(exc)
            raise errors.RuntimeFailure(
                f"Podman could not inspect image {reference!r}: {_explain(exc)}"
            ) from exc
        if not matches(reference, str(image.id), image.attrs.get("RepoTags") or []):
            raise _image_not_found(reference)
        return image

    # -- containers -----------------------------------------------------------

    def capabilities_for(self, isolation: str) -> Capabilities:
        return (
            gvisor_capabilities(self.capabilities) if isolation == "gvisor" else self.capabilities
        )

    def _connect_gvisor(self) -> Any:
        import podman

        reason = gvisor_available("podman")
        if reason:
            raise errors.ValidationError(f"isolation='gvisor' cannot run here: {reason}")
        url = podman_service_url("gvisor")
        return podman.PodmanClient(base_url=url, timeout=int(engine_timeout()))

    def start(self, request: StartRequest) -> ContainerHandle:
        from podman.errors import APIError

        image = self._image(request.image)
        creator = self._gvisor.get() if request.isolation == "gvisor" else self.client
        created = None
        try:
            with _engine_errors():
                created = creator.containers.create(
                    **self._create_kwargs(request, exact_name(request.image, image))
                )
                if request.isolation == "gvisor":  # never run untrusted code on runc by mistake
                    check_started_under_gvisor("podman", created.attrs)
                created.start()
        except (APIError, errors.StartError) as exc:
            if created is not None:  # never touch a same-named container that is not ours
                self.stop(created.id, timeout=0)
            else:
                self._remove_if_ours(request)
            raise errors.StartError(
                f"Podman could not start {request.name!r}: {_explain(exc)}"
            ) from exc
        endpoint = request.socket_endpoint()
        if endpoint is None:
            with _engine_errors():
                created.reload()
            endpoint = Endpoint(port=published_port(self, created.id, created.attrs, request))
        return ContainerHandle(
            id=created.id, name=request.name, endpoint=endpoint, runtime=self.name
        )

    def _create_kwargs(self, request: StartRequest, image: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            image=image,
            name=request.name,
            environment=request.env,
            labels=request.labels,
            no_new_privileges=True,
            cap_drop=["ALL"],
            command=request.command,
            user=request.user,
        )
        if request.cap_add:
            kwargs["cap_add"] = list(request.cap_add)
        # A user's directory is never relabelled (no "z"/"Z": that would change its SELinux
        # label on the host); nosuid and nodev on every mount.
        volumes: dict[str, dict[str, Any]] = {
            str(m.source): {
                "bind": m.target,
                "mode": "ro" if m.read_only else "rw",
                "extended_mode": ["nosuid", "nodev"],
            }
            for m in request.mounts
        }
        if request.run_dir is not None:
            # "Z": relabel the private dir so SELinux lets the container write it; nosuid and
            # nodev: whatever the container writes there cannot become a setuid file or a device.
            volumes[str(request.run_dir)] = {
                "bind": RUN_MOUNT,
                "mode": "rw",
                "extended_mode": ["Z", "nosuid", "nodev"],
            }
        if volumes:
            kwargs["volumes"] = volumes
        if request.socket_endpoint() is None:
            host = {"ip": "127.0.0.1", **({"port": request.host_port} if request.host_port else {})}
            kwargs["ports"] = {f"{request.container_port}/tcp": host}
        if request.network:
            if request.network in _NETWORK_MODES or ":" in request.network:
                kwargs["network_mode"] = request.network
            else:
                kwargs["networks"] = {request.network: {}}  # a named network, as Docker allows
        kwargs.update(limit_options(request.limits))
        return kwargs

    def health(self, container_id: str) -> ContainerState:
        from podman.errors import APIError, NotFound

        try:
            with _engine_errors():
                return container_state(self.client.containers.get(container_id).attrs["State"])
        except NotFound:
            return ContainerState(running=False, status="removed")
        except APIError as exc:
            # Podman 4.3 answers 500 "does not exist in database" for one being removed.
            if "no such container" in _explain(exc).lower():
                return ContainerState(running=False, status="removed")
            raise errors.RuntimeFailure(
                f"Podman could not inspect {container_id[:12]}: {_explain(exc)}"
            ) from exc

    def logs(self, container_id: str, tail: int = 50) -> str:
        with _engine_errors():
            return logs.read(self.client, container_id, tail, self._server_tails())

    def follow_logs(self, container_id: str, tail: int = 50) -> Iterator[str]:
        return logs.follow(self.client, container_id, tail, self._server_tails())

    def _server_tails(self) -> bool:
        if self._tails is None:
            self._tails = logs.server_tails_correctly(self.version())
        return self._tails

    def stop(self, container_id: str, timeout: float = 5.0) -> None:
        from podman.errors import APIError, NotFound

        try:
            with _engine_errors():
                self._remove(container_id, timeout)
        except NotFound:
            pass
        except APIError as exc:
            # A concurrent removal (cleanup racing a restart) is success too.
            if exc.status_code != 409 and self._exists(container_id):
                raise errors.RuntimeFailure(
                    f"Podman could not remove {container_id[:12]}: {_explain(exc)}"
                ) from exc

    def _exists(self, container_id: str) -> bool:
        with _engine_errors():
            return bool(self.client.containers.exists(container_id))

    def _remove(self, container_id: str, timeout: float) -> None:
        if timeout > 0:
            self.client.api.post(
                f"/containers/{container_id}/stop",
                params={"timeout": max(1, int(timeout))},
            ).raise_for_status()
        # timeout=0: kill now; a forced removal otherwise waits out the stop timeout (10 s).
        self.client.api.delete(
            f"/containers/{container_id}",
            params={"force": True, "v": True, "timeout": 0},
        ).raise_for_status()

    def _remove_if_ours(self, request: StartRequest) -> None:
        """Remove what a failed create left under ``request.name``, never a namesake not ours."""
        from podman.errors import NotFound

        try:
            with _engine_errors():
                found = self.client.containers.get(request.name)
        except NotFound:
            return
        if ours(found.labels or {}, request):
            self.stop(found.id, timeout=0)

    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        # podman-py's list() mangles a list of label filters, so ask the API directly.
        filters = json.dumps({"label": [f"{key}={value}" for key, value in labels.items()]})
        with _engine_errors():
            response = self.client.api.get(
                "/containers/json", params={"all": True, "filters": filters}
            )
            response.raise_for_status()
        return [
            container_record(c, self.name, created=_unix_time(c.get("Created")))
            for c in response.json()
            if all((c.get("Labels") or {}).get(key) == value for key, value in labels.items())
        ]

    def version(self) -> str:
        with _engine_errors():
            return str(self.client.version().get("Version", "unknown"))

    def close(self) -> None:
        for lazy in (self._client, self._builder, self._gvisor):
            client = lazy.reset()
            if client is not None:
                client.close()
        with self._client.lock:  # not while another thread connects to the service
            self._tails = None  # the next service may be another version
            self._service.close()


def _unix_time(value: Any) -> Optional[float]:
    """libpod reports ``Created`` as RFC 3339 with nanoseconds, which ``fromisoformat`` rejects before 3.11."""
    if isinstance(value, (int, float)):
        return float(value)
    match = _RFC3339.match(str(value or ""))
    if match is None:
        return None
    return datetime.strptime(
        match[1] + (match[3] or "Z"), "%Y-%m-%dT%H:%M:%S%z"
    ).timestamp() + float(match[2] or 0)


def _explain(exc: Any) -> str:
    return str(getattr(exc, "explanation", None) or exc)


@contextlib.contextmanager
def _engine_errors() -> Iterator[None]:
    """A lost or frozen service is EngineUnavailableError, a malformed reference ValidationError;
    other API errors pass through."""
    from podman.errors import APIError

    try:
        yield
    except errors.RayfineError:
        raise
    except APIError as exc:
        _raise_if_unreachable(exc)
        if is_bad_reference(_explain(exc)):
            raise errors.ValidationError(f"Podman rejects the reference: {_explain(exc)}") from None
        raise
    except Exception as exc:
        lost = unreachable_error(exc)
        if lost is None:
            raise
        raise errors.EngineUnavailableError(f"Podman: {lost} {_FIX}") from exc


def _raise_if_unreachable(exc: Any) -> None:
    """An APIError without a response means the service itself could not be reached."""
    if getattr(exc, "response", None) is None:
        raise errors.EngineUnavailableError(
            f"Lost the connection to the podman service: {exc}. {_FIX}"
        ) from exc


def _image_not_found(image: str) -> errors.ImageNotFoundError:
    return errors.ImageNotFoundError(
        f"Image {image!r} is not in the local podman storage. Build it first with"
        f" build_image_from_env(ENV_DIR, {image!r}, runtime='podman')"
        " (Rayfine never pulls images implicitly)."
    )
