"""The methods an environment offers, and the check of a call's arguments against them."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Optional, Sequence

from .. import errors
from ..runtime.types import EnvType
from ..transport.protocol import MethodInfo
from ..transport.signatures import check_arguments, to_signature

CallMethod = Callable[[str, Sequence[Any], Optional[Mapping[str, Any]], Optional[float]], Any]
"""A face's ``call_method(method, args, kwargs, timeout)``."""


def method_caller(
    call_method: CallMethod, name: str, info: Optional[MethodInfo]
) -> Callable[..., Any]:
    """``face.<name>``: runs env method ``name`` through ``call_method`` (blocking or a
    coroutine function, as ``call_method`` is), named and documented as the method."""

    def remote_method(*args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
        return call_method(name, args, kwargs, timeout)

    remote_method.__name__ = name
    remote_method.__doc__ = info.doc if info else None
    return remote_method


class Catalogue:
    """Method descriptions by name, with their signatures rebuilt for client-side checks."""

    def __init__(self, methods: Optional[Mapping[str, MethodInfo]] = None) -> None:
        self._methods: dict[str, MethodInfo] = dict(methods or {})
        self._signatures: dict[str, Optional[inspect.Signature]] = {
            name: to_signature(info) for name, info in self._methods.items()
        }

    def __bool__(self) -> bool:
        return bool(self._methods)

    def names(self) -> list[str]:
        return sorted(self._methods)

    def all(self) -> list[MethodInfo]:
        return list(self._methods.values())

    def get(self, name: str) -> Optional[MethodInfo]:
        return self._methods.get(name)

    def check(
        self, env_type: EnvType, method: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Optional[MethodInfo]:
        """The method's description, once its arguments are known to fit.

        Unknown methods are refused here only for function-based environments
        (an http-based app may have routes its OpenAPI document does not list).

        :raises MethodNotFoundError: no such method (the message lists them).
        :raises InvalidArgumentsError: the arguments do not bind to the signature.
        """
        info = self._methods.get(method)
        if info is None:
            if self._methods and env_type is EnvType.FUNCTION_BASED:
                raise errors.MethodNotFoundError(
                    "AttributeError",
                    f"no method {method!r}; available: {', '.join(self.names())}",
                    method=method,
                )
            return None
        check_arguments(info, self._signatures.get(method), args, kwargs)
        return info
