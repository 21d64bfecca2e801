"""Podman runtime for Rayfine."""

from .runtime import PodmanRuntime

__all__ = ["PodmanRuntime"]
