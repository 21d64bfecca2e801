"""Turn a method's return value into JSON bytes, once, or say exactly why it cannot be.

``json.dumps`` handles the JSON-native types in C; the ``default`` hook below
only runs for the few richer types environments commonly return.  Anything
else is refused with the offending type named, rather than guessed at: that
includes what ``json`` would otherwise change silently (non-string dict keys
such as ``{1: 'a', True: 'b'}``, which it turns into ``{"1": "b"}``), text
that is not valid Unicode, and nesting deeper than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import operator
import pathlib
import sys
from itertools import chain, compress
from typing import Any, List

from .jsonlimits import MAX_DEPTH, exceeds_depth

_SCALARS = frozenset({str, int, float, bool, type(None)})
_DICT = frozenset({dict})
_SEQUENCES = frozenset({list, tuple})
_KNOWN = _SCALARS | _DICT | _SEQUENCES
_SMALL = 4096


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
        text = _ENCODER.encode(value)
    except NotSerializableError:
        raise
    except RecursionError:
        raise _too_deep() from None
    except (TypeError, ValueError) as exc:
        # Raised by json itself, e.g. for a dict keyed by tuples, or a cycle.
        raise NotSerializableError(str(exc), type(value).__name__) from None
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.start + 1]
        raise NotSerializableError(
            f"text holds a lone surrogate {bad!r} (at character {exc.start} of the encoded"
            " result), which is not valid Unicode; decode bytes with errors='replace' or"
            " remove it",
            "str",
        ) from None
    if exceeds_depth(data):
        raise _too_deep()
    if b"{" in data:  # no '{' anywhere: there is no dict whose keys could be wrong
        if len(data) < _SMALL:
            _check_keys_small(value)
        else:
            check_keys(value)
    return data


def check_keys(value: Any) -> None:
    """Refuse dicts (at any depth) whose keys are not strings.

    Walks one nesting level at a time with C-level ``map``/``compress``/``chain``,
    so checking a large result costs a fraction of encoding it, not a Python
    loop per item.
    """
    level: List[Any] = [value]
    while level:
        types = list(map(type, level))
        dicts = list(compress(level, map(_DICT.__contains__, types)))
        sequences = list(compress(level, map(_SEQUENCES.__contains__, types)))
        for item in compress(level, map(operator.not_, map(_KNOWN.__contains__, types))):
            if isinstance(item, dict):  # subclasses: OrderedDict, defaultdict, ...
                dicts.append(item)
            elif isinstance(item, (list, tuple)):
                sequences.append(item)
            # anything else is a rich type: _encode_rich checks its stand-in
        if dicts:
            _check_key_types(dicts)
        children = list(chain(chain.from_iterable(map(dict.values, dicts)), *sequences))
        scalar = map(_SCALARS.__contains__, map(type, children))
        level = list(compress(children, map(operator.not_, scalar)))


def _check_keys_small(value: Any) -> None:
    """:func:`check_keys` for small values, where a plain loop beats setting up the C passes."""
    stack: List[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in item:
                if type(key) is not str and not isinstance(key, str):
                    _check_key_types([item])
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _check_key_types(dicts: List[dict]) -> None:
    for key_type in set(map(type, chain.from_iterable(dicts))):
        if not issubclass(key_type, str):
            key = next(k for k in chain.from_iterable(dicts) if type(k) is key_type)
            raise NotSerializableError(
                f"a dict has the key {_safe_repr(key)} of type {_type_name(key)}; JSON object"
                " keys must be strings (json would silently turn it into a string, so 1 and"
                " '1' would collide): convert the keys yourself, e.g. {str(k): v ...}",
                _type_name(key),
            )


def _too_deep() -> NotSerializableError:
    return NotSerializableError(
        f"the value nests lists/dicts deeper than {MAX_DEPTH} levels", "list"
    )


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"
    return text if len(text) <= 80 else text[:77] + "..."


def _encode_rich(obj: Any) -> Any:
    """``json.dumps`` hook: a JSON-ready stand-in for ``obj``, or raise."""
    # pydantic is looked up, not imported: only an env.py that imported it can
    # return a model, and importing it would slow every server start.
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(obj, pydantic.BaseModel):
        dumped = obj.model_dump(mode="json")
        check_keys(dumped)
        return dumped
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # Shallow, unlike dataclasses.asdict: no deep copy, and nested values
        # come back through this hook anyway.
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        check_keys(fields)
        return fields
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


# Made once: json.dumps with options would build a new encoder on every call.
_ENCODER = json.JSONEncoder(default=_encode_rich, ensure_ascii=False, separators=(",", ":"))


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
