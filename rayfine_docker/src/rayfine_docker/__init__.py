"""Docker Engine runtime for Rayfine."""

from .runtime import DockerRuntime

__all__ = ["DockerRuntime"]
