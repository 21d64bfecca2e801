"""What the runtime is configured with: constructor arguments, else ``RAYFINE_K8S_*`` variables.

* ``KUBECONFIG``: kubeconfig file(s) (``~/.kube/config``); in a pod without one,
  the service account.
* ``RAYFINE_K8S_CONTEXT``: kubeconfig context (the file's current one).
* ``RAYFINE_K8S_NAMESPACE``: namespace of the pods (the context's, else ``default``).
* ``RAYFINE_K8S_ACCESS``: ``proxy`` (through the API server), ``pod-ip``, or
  ``auto`` (pod IP inside the cluster, proxy outside).
* ``RAYFINE_K8S_REGISTRY``: where images are pushed and pulled, ``host[:port][/path]``.
* ``RAYFINE_K8S_LEASE_SECONDS``: the backstop; a pod whose client stopped renewing
  for this long is deleted (300; 0 = off).
* ``RAYFINE_K8S_START_TIMEOUT``: longest wait for scheduling and the image pull (300 s).
* ``RAYFINE_ENGINE_TIMEOUT``: deadline of each API call (30 s).
* ``RAYFINE_K8S_NETWORK_POLICY``: ``1`` when the cluster enforces NetworkPolicy, so
  ``network="none"`` may be asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional

from rayfine_core.errors import ValidationError

ACCESS_MODES = ("auto", "proxy", "pod-ip")


@dataclass(frozen=True)
class Settings:
    """The runtime's configuration, checked once.

    :param kubeconfig: kubeconfig path(s), ``os.pathsep``-separated; None: ``KUBECONFIG``.
    :param context: kubeconfig context; None: the current one.
    :param namespace: namespace of the pods; None: the context's, else ``default``.
    :param access: how clients reach the server: ``auto``, ``proxy`` or ``pod-ip``.
    :param registry: where images live for the cluster (``host[:port][/path]``).
    :param lease_seconds: backstop window; 0 turns the backstop off.
    :param start_timeout: longest wait for a pod to be scheduled and its image pulled.
    :param api_timeout: deadline of each API call.
    :param network_policy: the cluster enforces NetworkPolicy objects.
    """

    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    namespace: Optional[str] = None
    access: str = "auto"
    registry: Optional[str] = None
    lease_seconds: int = 300
    start_timeout: float = 300.0
    api_timeout: float = 30.0
    network_policy: bool = False

    def __post_init__(self) -> None:
        if self.access not in ACCESS_MODES:
            raise ValidationError(
                f"RAYFINE_K8S_ACCESS must be one of {', '.join(ACCESS_MODES)}, got {self.access!r}."
            )
        if self.lease_seconds != 0 and self.lease_seconds < 10:
            raise ValidationError(
                f"RAYFINE_K8S_LEASE_SECONDS must be 0 (off) or >= 10, got {self.lease_seconds}."
            )
        for name in ("start_timeout", "api_timeout"):
            if getattr(self, name) <= 0:
                raise ValidationError(f"{name} must be a positive number of seconds.")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **overrides: object) -> Settings:
        """Settings from ``environ`` (default ``os.environ``); non-None ``overrides`` win."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "kubeconfig": env.get("KUBECONFIG") or None,
            "context": env.get("RAYFINE_K8S_CONTEXT") or None,
            "namespace": env.get("RAYFINE_K8S_NAMESPACE") or None,
            "access": env.get("RAYFINE_K8S_ACCESS") or "auto",
            "registry": (env.get("RAYFINE_K8S_REGISTRY") or "").strip().rstrip("/") or None,
            "lease_seconds": _number(env, "RAYFINE_K8S_LEASE_SECONDS", 300, int),
            "start_timeout": _number(env, "RAYFINE_K8S_START_TIMEOUT", 300.0, float),
            "api_timeout": _number(env, "RAYFINE_ENGINE_TIMEOUT", 30.0, float),
            "network_policy": env.get("RAYFINE_K8S_NETWORK_POLICY") == "1",
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]


def _number(env: Mapping[str, str], name: str, default: float, kind: type) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return kind(raw)  # type: ignore[no-any-return]
    except ValueError:
        raise ValidationError(f"{name} must be a number, got {raw!r}.") from None
