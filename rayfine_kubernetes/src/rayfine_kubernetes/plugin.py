"""Entry point of the ``kubernetes`` runtime (group ``rayfine``)."""

from __future__ import annotations

from typing import Iterator

from rayfine_core import RuntimeSpec, hookimpl


@hookimpl
def rayfine_runtimes() -> Iterator[RuntimeSpec]:
    from .runtime import KubernetesRuntime

    yield RuntimeSpec(
        name="kubernetes",
        factory=KubernetesRuntime,
        description="Kubernetes: one pod per environment (kubeconfig or in-cluster)",
    )
