"""Turn a method's return value into JSON bytes, once.

``json.dumps`` handles the JSON-native types in C; the ``default`` hook below
only runs for the few richer types environments commonly return.  Anything
else is refused with the offending type named, rather than guessed at.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import pathlib
import sys
from typing import Any


class NotSerializableError(TypeError):
    """A value (or something inside it) has no JSON encoding."""

    def __init__(self, message: str, type_name: str) -> None:
        super().__init__(message)
        self.type_name = type_name


def encode_json(value: Any) -> bytes:
    """Encode ``value`` as UTF-8 JSON.

    NaN and infinities are written as ``NaN``/``Infinity`` like Python's own
    ``json`` does, because both ends are Python and rewards can be NaN.

    :raises NotSerializableError: naming the first type that cannot be encoded.
    """
    try:
        text = json.dumps(value, default=_encode_rich, ensure_ascii=False, separators=(",", ":"))
    except NotSerializableError:
        raise
    except (TypeError, ValueError) as exc:
        # Raised by json itself, e.g. for a dict keyed by tuples, or a cycle.
        raise NotSerializableError(str(exc), type(value).__name__) from None
    return text.encode("utf-8")


def _encode_rich(obj: Any) -> Any:
    """``json.dumps`` hook: a JSON-ready stand-in for ``obj``, or raise."""
    # pydantic is looked up, not imported: only an env.py that imported it can
    # return a model, and importing it would slow every server start.
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(obj, pydantic.BaseModel):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # Shallow, unlike dataclasses.asdict: no deep copy, and nested values
        # come back through this hook anyway.
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return _sorted_if_possible(obj)
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raise NotSerializableError(
            f"{type(obj).__name__} is not JSON-serialisable; return text instead "
            "(for example base64.b64encode(data).decode())",
            type(obj).__name__,
        )
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):
        # numpy scalars and arrays (np.float32 rewards are common); duck-typed
        # so the server never imports numpy itself.
        return obj.tolist()
    name = _type_name(obj)
    raise NotSerializableError(f"Object of type {name} is not JSON-serialisable", name)


def _sorted_if_possible(items: Any) -> list:
    """Sets have no order; sort them when possible so results are reproducible."""
    try:
        return sorted(items)
    except TypeError:
        return list(items)


def _type_name(obj: Any) -> str:
    """``int`` for builtins, ``module.Class`` otherwise."""
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
