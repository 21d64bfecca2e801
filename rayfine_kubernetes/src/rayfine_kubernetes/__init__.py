"""The Kubernetes runtime for Rayfine: ``load_env(image, runtime="kubernetes")``."""

from __future__ import annotations

from .runtime import KubernetesRuntime
from .settings import Settings

__all__ = ["KubernetesRuntime", "Settings"]
