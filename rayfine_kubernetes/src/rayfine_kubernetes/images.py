"""Images for the cluster: built by the local Docker engine, pushed, read back from the registry.

A cluster's nodes pull images; they never see this host's engine.  So
``build`` builds with the ``docker`` runtime (its client, its credentials)
and pushes the tag to ``RAYFINE_K8S_REGISTRY``; ``labels`` and ``image_id``
read the registry, the place the nodes pull from; ``pinned`` resolves a tag
to the digest a pod is started with.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from rayfine_core import BuildRequest, errors

from .registry import Reference, Registry, parse


class Images:
    """The image side of the runtime; thread-safe."""

    def __init__(self, default_registry: Optional[str], timeout: float) -> None:
        self._default = default_registry
        self.registry = Registry(timeout)

    def reference(self, image: str) -> Reference:
        """Where the cluster finds ``image`` (ValidationError: malformed, or no registry set)."""
        return parse(image, self._default)

    def labels(self, image: str) -> dict[str, str]:
        _, _, config = self._config(image)
        return dict((config.get("config") or {}).get("Labels") or {})

    def image_id(self, image: str) -> str:
        _, image_id, _ = self._config(image)
        return image_id

    def pinned(self, image: str) -> str:
        """``registry/repository@sha256:...`` for what ``image`` names now."""
        ref = self.reference(image)
        try:
            digest, _ = self.registry.manifest(ref)
        except errors.ImageNotFoundError as exc:
            raise _not_found(image, exc) from None
        return ref.pinned(digest) if digest else str(ref)

    def _config(self, image: str) -> tuple[str, str, dict[str, Any]]:
        try:
            return self.registry.config(self.reference(image))
        except errors.ImageNotFoundError as exc:
            raise _not_found(image, exc) from None

    def build(self, request: BuildRequest) -> str:
        """Build with the local Docker engine, then push; return the image id.

        :raises ValidationError: no registry to push to (checked before building).
        :raises ImageBuildError: the build or the push failed (with the engine's message).
        :raises EngineUnavailableError: the Docker engine is unreachable.
        """
        from rayfine_core import get_runtime

        target = self.reference(request.tag)
        docker = get_runtime("docker")
        image_id = docker.build(request)
        push(docker.client, request.tag, target, request.on_output)  # type: ignore[attr-defined]
        return image_id

    def close(self) -> None:
        self.registry.close()


def _not_found(image: str, cause: Exception) -> errors.ImageNotFoundError:
    return errors.ImageNotFoundError(
        f"{cause} Build and push it with build_image_from_env(ENV_DIR, {image!r},"
        f" runtime='kubernetes') or `rayfine build ENV_DIR -t {image} --runtime kubernetes`"
        " (Rayfine never pulls from elsewhere implicitly)."
    )


def push(
    client: Any, local: str, target: Reference, on_output: Optional[Callable[[str], None]]
) -> None:
    """Tag ``local`` as ``target`` and push it with the Docker engine ``client``."""
    from docker.errors import APIError

    repository = f"{target.registry}/{target.repository}"
    emit = on_output or (lambda line: None)
    emit(f"rayfine: pushing {repository}:{target.tag}")
    try:
        client.api.tag(local, repository, target.tag)
        for event in client.api.push(repository, target.tag, stream=True, decode=True):
            if event.get("error"):
                raise errors.ImageBuildError(
                    f"Pushing {repository}:{target.tag} failed: {event['error']}. Check that this"
                    f" host can push to {target.registry} (docker login; its CA in"
                    f" /etc/docker/certs.d/{target.registry}/ca.crt)."
                )
            status = event.get("status", "")
            if event.get("aux", {}).get("Digest"):
                emit(f"rayfine: pushed {repository}@{event['aux']['Digest']}")
            elif status in ("Pushed", "Layer already exists", "Mounted from"):
                emit(f"rayfine: {event.get('id', '')}: {status}")
    except APIError as exc:
        raise errors.ImageBuildError(
            f"Pushing {repository}:{target.tag} failed: {exc.explanation or exc}"
        ) from exc
