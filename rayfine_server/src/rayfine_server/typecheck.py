"""Check JSON arguments against a method's annotations, before any user code runs.

Covers what environments commonly annotate: ``int``, ``float`` (an int is
accepted), ``str``, ``bool``, ``None``, ``list[X]``, ``dict[str, X]``,
``tuple[...]``, ``Optional``/``Union``, ``Literal``, ``Annotated`` and
``Any``.  Anything else (classes, protocols, type variables, annotations that
cannot be resolved) is not checked: a check may only refuse what is surely
wrong.  Checks are compiled once, when env.py is loaded.
"""

from __future__ import annotations

import inspect
import sys
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

# (value, path) -> None when it fits, else (path, expected, value) of the first misfit.
Misfit = Tuple[str, str, Any]
Check = Callable[[Any, str], Optional[Misfit]]

_JSON_SCALARS = (str, int, float, bool, type(None))
_UNION_TYPES: Tuple[Any, ...] = (typing.Union,)
if sys.version_info >= (3, 10):
    import types

    _UNION_TYPES += (types.UnionType,)


def compile_checks(
    func: Callable[..., Any], signature: inspect.Signature
) -> Optional[Callable[[Mapping[str, Any]], Optional[str]]]:
    """A checker for bound arguments (``BoundArguments.arguments``), or ``None`` if
    no parameter has a checkable annotation.  The checker returns what is wrong."""
    hints = _resolved_hints(func, signature)
    checks: List[Tuple[str, Check, str]] = []
    for name, param in signature.parameters.items():
        annotation = hints.get(name, inspect.Parameter.empty)
        check = _compile(annotation)
        if check is None:
            continue
        if param.default is None:  # ``x: int = None``: None is allowed in practice
            check = _either([check, _is_none])
        if param.kind == param.VAR_POSITIONAL:
            check = _each_of(check)
        elif param.kind == param.VAR_KEYWORD:
            check = _each_value(check)
        checks.append((name, check, _text(annotation)))
    if not checks:
        return None

    def run(arguments: Mapping[str, Any]) -> Optional[str]:
        for name, check, expected in checks:
            if name in arguments:
                misfit = check(arguments[name], name)
                if misfit is not None:
                    return _describe(name, expected, misfit)
        return None

    return run


def _describe(name: str, expected: str, misfit: Misfit) -> str:
    path, wanted, value = misfit
    given = f"{_type_name(value)} {_short(value)}"
    if path == name:
        return f"argument {name!r} must be {expected}, got {given}"
    return f"argument {name!r} must be {expected}, but {path} is {given} (expected {wanted})"


def _resolved_hints(func: Callable[..., Any], signature: inspect.Signature) -> Dict[str, Any]:
    """Annotations as objects; string ones (``from __future__ import annotations``) evaluated.

    One annotation that cannot be resolved (a name imported only for type
    checkers, ``int | None`` on Python 3.9) leaves just that parameter unchecked.
    """
    target = getattr(func, "__init__", func) if isinstance(func, type) else func
    try:
        return typing.get_type_hints(target)
    except Exception:
        pass
    namespace = getattr(target, "__globals__", {})
    raw = getattr(target, "__annotations__", None) or {}
    hints: Dict[str, Any] = {}
    for name in signature.parameters:
        if name not in raw:
            continue
        annotation = raw[name]
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, dict(namespace))
            except Exception:
                continue
        hints[name] = annotation
    return hints


def _compile(annotation: Any) -> Optional[Check]:
    """The check for ``annotation``; ``None`` when anything is accepted or it is unknown."""
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is object:
        return None
    if annotation is None or annotation is type(None):
        return _is_none
    scalar = _SCALARS.get(annotation)
    if scalar is not None:
        return scalar
    supertype = getattr(annotation, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return _compile(supertype)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:  # reached only when get_type_hints could not strip it
        return _compile(args[0])
    if origin is list:
        return _list_of(_compile(args[0]) if args else None)
    if origin is dict:
        return _dict_of(_compile(args[1]) if len(args) == 2 else None)
    if origin is tuple:
        return _tuple_of(args)
    if origin in _UNION_TYPES:
        members = [_compile(arg) for arg in args]
        return None if any(m is None for m in members) else _either(members)  # type: ignore[arg-type]
    if origin is typing.Literal:
        return _literal(args)
    if _is_typed_dict(annotation):
        return _SCALARS[dict]
    return None


def _instance(kinds: Tuple[type, ...], expected: str, exclude_bool: bool = False) -> Check:
    def check(value: Any, path: str) -> Optional[Misfit]:
        if isinstance(value, kinds) and not (exclude_bool and isinstance(value, bool)):
            return None
        return path, expected, value

    return check


def _is_none(value: Any, path: str) -> Optional[Misfit]:
    return None if value is None else (path, "None", value)


_SCALARS: Dict[Any, Check] = {
    bool: _instance((bool,), "bool"),
    int: _instance((int,), "int", exclude_bool=True),
    float: _instance((int, float), "float", exclude_bool=True),
    str: _instance((str,), "str"),
    list: _instance((list,), "list"),
    List: _instance((list,), "list"),
    dict: _instance((dict,), "dict"),
    Dict: _instance((dict,), "dict"),
    tuple: _instance((list, tuple), "tuple"),
    Tuple: _instance((list, tuple), "tuple"),
}
_FAST_ELEMENT: Dict[Check, Set[type]] = {
    _SCALARS[str]: {str},
    _SCALARS[bool]: {bool},
    _SCALARS[int]: {int},
    _SCALARS[float]: {int, float},
}


def _list_of(element: Optional[Check]) -> Check:
    is_list = _SCALARS[list]
    exact = _FAST_ELEMENT.get(element) if element is not None else None

    def check(value: Any, path: str) -> Optional[Misfit]:
        misfit = is_list(value, path)
        if misfit is not None or element is None:
            return misfit
        if exact is not None and set(map(type, value)) <= exact:  # the common case, in C
            return None
        for index, item in enumerate(value):
            misfit = element(item, f"{path}[{index}]")
            if misfit is not None:
                return misfit
        return None

    return check


def _dict_of(values: Optional[Check]) -> Check:
    is_dict = _SCALARS[dict]

    def check(value: Any, path: str) -> Optional[Misfit]:
        misfit = is_dict(value, path)
        if misfit is not None or values is None:
            return misfit
        for key, item in value.items():
            misfit = values(item, f"{path}[{key!r}]")
            if misfit is not None:
                return misfit
        return None

    return check


def _tuple_of(args: Tuple[Any, ...]) -> Check:
    is_sequence = _SCALARS[tuple]
    if len(args) == 2 and args[1] is Ellipsis:
        return _list_of(_compile(args[0]))
    if args == ((),):  # tuple[()] in older spellings
        args = ()
    items = [_compile(arg) for arg in args]

    def check(value: Any, path: str) -> Optional[Misfit]:
        misfit = is_sequence(value, path)
        if misfit is not None:
            return misfit
        if len(value) != len(items):
            return path, f"{len(items)} items", value
        for index, (item, item_check) in enumerate(zip(value, items)):
            if item_check is not None:
                misfit = item_check(item, f"{path}[{index}]")
                if misfit is not None:
                    return misfit
        return None

    return check


def _either(members: List[Check]) -> Check:
    def check(value: Any, path: str) -> Optional[Misfit]:
        first: Optional[Misfit] = None
        for member in members:
            misfit = member(value, path)
            if misfit is None:
                return None
            first = first or misfit
        return first

    return check


def _literal(values: Tuple[Any, ...]) -> Optional[Check]:
    if not all(type(v) in _JSON_SCALARS for v in values):
        return None  # enum members and the like cannot arrive as JSON: leave it to the method
    allowed = {(type(v), v) for v in values}
    expected = "one of " + ", ".join(repr(v) for v in values)

    def check(value: Any, path: str) -> Optional[Misfit]:
        try:
            ok = (type(value), value) in allowed
        except TypeError:  # unhashable: a list or dict is never a literal
            ok = False
        return None if ok else (path, expected, value)

    return check


def _each_of(check: Check) -> Check:
    def each(values: Any, path: str) -> Optional[Misfit]:
        for index, value in enumerate(values):
            misfit = check(value, f"{path}[{index}]")
            if misfit is not None:
                return misfit
        return None

    return each


def _each_value(check: Check) -> Check:
    def each(values: Any, path: str) -> Optional[Misfit]:
        for key, value in values.items():
            misfit = check(value, f"{path}[{key!r}]")
            if misfit is not None:
                return misfit
        return None

    return each


def _is_typed_dict(annotation: Any) -> bool:
    return (
        isinstance(annotation, type)
        and issubclass(annotation, dict)
        and hasattr(annotation, "__total__")
    )


def _text(annotation: Any) -> str:
    if annotation is type(None):
        return "None"
    if typing.get_origin(annotation) is typing.Annotated:
        return _text(typing.get_args(annotation)[0])
    if hasattr(annotation, "__supertype__"):  # NewType: a function before Python 3.10
        return str(getattr(annotation, "__name__", annotation))
    try:
        return inspect.formatannotation(annotation).replace("typing.", "")
    except Exception:
        return f"<{type(annotation).__name__}>"


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return f"({text})" if len(text) <= 40 else f"({text[:37]}...)"
