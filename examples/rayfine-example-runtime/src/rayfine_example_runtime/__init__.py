"""An example third-party Rayfine runtime: a labelling wrapper around another runtime."""

from .runtime import ExampleRuntime

__all__ = ["ExampleRuntime"]
