"""Reading images from a registry (the Docker Registry HTTP API v2), as the cluster will see them.

Only what the runtime needs: resolve a tag to its manifest digest (pods are
pinned to it, so a node never runs a stale image cached under the same tag)
and read the image config (labels, id).  Credentials come from Docker's
``config.json`` (``auths``), trust from ``RAYFINE_K8S_REGISTRY_CA``, else
Docker's ``/etc/docker/certs.d/HOST/ca.crt``, else the system's CAs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlencode

from rayfine_core import errors

MANIFEST_TYPES = ",".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
_INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_BODY = re.compile(
    rf"(?P<repo>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?"
)
_HOST = re.compile(r"[a-zA-Z0-9.-]+(?::[0-9]+)?")


@dataclass(frozen=True)
class Reference:
    """An image in a registry: ``registry/repository`` with a tag or a digest."""

    registry: str
    repository: str
    tag: str = "latest"
    digest: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}" + (
            f"@{self.digest}" if self.digest else f":{self.tag}"
        )

    def pinned(self, digest: str) -> str:
        return f"{self.registry}/{self.repository}@{digest}"

    @property
    def version(self) -> str:
        return self.digest or self.tag


def parse(image: str, default_registry: Optional[str]) -> Reference:
    """Where ``image`` lives: its own registry if it names one, else ``default_registry``.

    :raises ValidationError: a malformed reference, or no registry to put it in.
    """
    first, slash, rest = str(image).partition("/")
    names_registry = bool(slash) and ("." in first or ":" in first or first == "localhost")
    registry, body = (first, rest) if names_registry else (None, str(image))
    match = _BODY.fullmatch(body)
    if match is None or (registry is not None and not _HOST.fullmatch(registry)):
        raise errors.ValidationError(
            f"Invalid image reference {image!r}: use name[:tag] or registry/name[:tag]."
        )
    repository = match.group("repo")
    if registry is None:
        if not default_registry:
            raise errors.ValidationError(
                f"Image {image!r} names no registry, and the cluster pulls from one: set"
                " RAYFINE_K8S_REGISTRY (e.g. registry.example.com/team) to a registry this host"
                " pushes to and the cluster's nodes pull from, or use a full reference"
                " (registry.example.com/team/name:tag)."
            )
        registry, _, prefix = default_registry.partition("/")
        repository = f"{prefix}/{repository}" if prefix else repository
    return Reference(registry, repository, match.group("tag") or "latest", match.group("digest"))


class Registry:
    """A small registry client; one per runtime, thread-safe."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._pools: dict[str, Any] = {}
        self._tokens: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def manifest(self, ref: Reference) -> tuple[str, dict[str, Any]]:
        """``(digest, manifest)`` of ``ref``; for a multi-platform index, this platform's manifest.

        The digest is the one to pin pods to (the index's, if it is one: each
        node then picks its own platform).
        :raises ImageNotFoundError: the registry does not have it.
        """
        response = self._get(ref, f"/v2/{ref.repository}/manifests/{ref.version}", MANIFEST_TYPES)
        digest = response.headers.get("Docker-Content-Digest") or ref.digest or ""
        manifest = json.loads(response.data)
        if manifest.get("mediaType") in _INDEX_TYPES or "manifests" in manifest:
            chosen = _platform_manifest(manifest.get("manifests") or [])
            if chosen is None:
                raise errors.ImageNotFoundError(f"{ref} has no linux/amd64 image.")
            platform_ref = Reference(ref.registry, ref.repository, digest=chosen)
            inner = self._get(ref, f"/v2/{ref.repository}/manifests/{chosen}", MANIFEST_TYPES)
            return digest, json.loads(self._checked(platform_ref, inner).data)
        return digest, manifest

    def config(self, ref: Reference) -> tuple[str, str, dict[str, Any]]:
        """``(manifest digest, image id, config)``; the id is the config's digest, as Docker's."""
        digest, manifest = self.manifest(ref)
        config_digest = str((manifest.get("config") or {}).get("digest") or "")
        if not config_digest:
            raise errors.ImageNotFoundError(f"{ref} is not an image (its manifest has no config).")
        blob = self._get(ref, f"/v2/{ref.repository}/blobs/{config_digest}", "*/*")
        return digest, config_digest, json.loads(blob.data)

    def _get(self, ref: Reference, path: str, accept: str) -> Any:
        headers = {"Accept": accept}
        token = self._tokens.get((ref.registry, ref.repository))
        if token:
            headers["Authorization"] = token
        response = self._request(ref, "GET", self._url(ref, path), headers)
        if response.status == 401:
            challenge = response.headers.get("WWW-Authenticate", "")
            headers["Authorization"] = self._authorize(ref, challenge)
            response = self._request(ref, "GET", self._url(ref, path), headers)
        return self._checked(ref, response)

    def _checked(self, ref: Reference, response: Any) -> Any:
        if response.status == 404:
            raise errors.ImageNotFoundError(f"The registry {ref.registry} has no image {ref}.")
        if response.status in (401, 403):
            raise errors.RuntimeFailure(
                f"The registry {ref.registry} refused access to {ref} (HTTP {response.status})."
                f" Log in with `docker login {ref.registry}`."
            )
        if response.status >= 400:
            raise errors.EngineUnavailableError(
                f"The registry {ref.registry} failed on {ref} (HTTP {response.status})."
            )
        return response

    def _authorize(self, ref: Reference, challenge: str) -> str:
        scheme, _, params = challenge.partition(" ")
        credentials = docker_credentials(ref.registry)
        if scheme.lower() == "basic" and credentials:
            return "Basic " + credentials
        if scheme.lower() != "bearer":
            raise errors.RuntimeFailure(
                f"The registry {ref.registry} wants {scheme or 'unknown'} authentication;"
                f" log in with `docker login {ref.registry}`."
            )
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = {"service": fields.get("service", ""), "scope": f"repository:{ref.repository}:pull"}
        headers = {"Authorization": "Basic " + credentials} if credentials else {}
        response = self._request(
            ref, "GET", f"{fields.get('realm', '')}?{urlencode(query)}", headers
        )
        if response.status != 200:
            raise errors.RuntimeFailure(
                f"The registry {ref.registry}'s token service refused access to {ref}"
                f" (HTTP {response.status}); log in with `docker login {ref.registry}`."
            )
        body = json.loads(response.data)
        token = "Bearer " + str(body.get("token") or body.get("access_token") or "")
        self._tokens[(ref.registry, ref.repository)] = token
        return token

    def _url(self, ref: Reference, path: str) -> str:
        scheme = "http" if ref.registry in insecure_registries() else "https"
        return f"{scheme}://{ref.registry}{path}"

    def _request(self, ref: Reference, method: str, url: str, headers: dict[str, str]) -> Any:
        import urllib3

        try:
            return self._pool(ref.registry).request(
                method,
                url,
                headers=headers,
                timeout=urllib3.Timeout(connect=min(self._timeout, 10.0), read=self._timeout),
                retries=False,
                redirect=True,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise errors.EngineUnavailableError(
                f"The registry {ref.registry} did not answer ({type(exc).__name__}: {exc})."
                " Check RAYFINE_K8S_REGISTRY and that this host can reach it"
                " (and trusts it: RAYFINE_K8S_REGISTRY_CA)."
            ) from exc

    def _pool(self, registry: str) -> Any:
        import urllib3

        with self._lock:
            pool = self._pools.get(registry)
            if pool is None:
                ca = registry_ca(registry)
                pool = (
                    urllib3.PoolManager(maxsize=16, ca_certs=ca)
                    if ca
                    else urllib3.PoolManager(maxsize=16)
                )
                self._pools[registry] = pool
            return pool

    def close(self) -> None:
        with self._lock:
            pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.clear()


def _platform_manifest(manifests: list[dict[str, Any]]) -> Optional[str]:
    for entry in manifests:
        platform = entry.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            return str(entry.get("digest"))
    return None


def registry_ca(registry: str) -> Optional[str]:
    """The CA file for ``registry``: ``RAYFINE_K8S_REGISTRY_CA``, else Docker's certs.d one."""
    explicit = os.environ.get("RAYFINE_K8S_REGISTRY_CA")
    if explicit:
        return explicit
    docker = Path("/etc/docker/certs.d") / registry / "ca.crt"
    return str(docker) if docker.is_file() else None


def insecure_registries() -> set[str]:
    """Registries spoken to over plain HTTP (``RAYFINE_K8S_REGISTRY_INSECURE``, comma-separated)."""
    raw = os.environ.get("RAYFINE_K8S_REGISTRY_INSECURE", "")
    return {item.strip() for item in raw.split(",") if item.strip()}


def docker_credentials(registry: str) -> Optional[str]:
    """``base64(user:password)`` for ``registry`` from Docker's config.json, if it has one."""
    directory = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    try:
        auths = json.loads((Path(directory) / "config.json").read_text()).get("auths") or {}
    except (OSError, ValueError):
        return None
    for key in (registry, f"https://{registry}", f"http://{registry}"):
        entry = auths.get(key) or {}
        if entry.get("auth"):
            return str(entry["auth"])
        if entry.get("username") and entry.get("password"):
            raw = f"{entry['username']}:{entry['password']}".encode()
            return base64.b64encode(raw).decode()
    return None
