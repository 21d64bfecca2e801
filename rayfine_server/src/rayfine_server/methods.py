"""Find the callable methods of an env module and describe their signatures.

Callable are the public methods of the module's ``Actor`` class (if any) and
the public functions defined in env.py itself.  Imported helpers, classes and
``_private`` names are never exposed: a name is reachable only if the user
wrote it in env.py as part of the environment's surface.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .encoding import NotSerializableError, encode_json
from .typecheck import compile_checks

ACTOR = "actor"
FUNCTION = "function"
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)

# Used when a callable hides its signature (some C-implemented callables do).
_ANY_SIGNATURE = inspect.Signature(
    [
        inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
        inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
    ]
)


@dataclass(frozen=True)
class Method:
    """One callable name of the environment.

    :param name: the name clients call.
    :param kind: ``"actor"`` for Actor methods, ``"function"`` for module functions.
    :param is_async: whether calling it returns a coroutine to await.
    :param signature: as seen by callers (no ``self``), used to check arguments.
    :param signature_text: ``signature`` as text, e.g. ``(x: int, *, scale=1.0)``.
    :param doc: its docstring, if any.
    :param function: the module-level function; ``None`` for Actor methods,
        which are looked up on the instance at call time.
    :param keyword_names: parameters that can be passed by keyword.
    :param accepts_any_keyword: it takes ``**kwargs``.
    :param checks: checks bound arguments against the annotations; returns
        what is wrong, or ``None``.
    """

    name: str
    kind: str
    is_async: bool
    signature: inspect.Signature
    signature_text: str
    doc: Optional[str]
    function: Optional[Callable[..., Any]] = None
    keyword_names: Tuple[str, ...] = ()
    accepts_any_keyword: bool = True
    checks: Optional[Callable[[Mapping[str, Any]], Optional[str]]] = None


def discover_methods(module: ModuleType, actor_class: Optional[type]) -> Dict[str, Method]:
    """All callable methods, by name; Actor methods win over same-named functions."""
    methods = _module_functions(module)
    if actor_class is not None:
        methods.update(_actor_methods(actor_class))
    return dict(sorted(methods.items()))


def constructor(actor_class: type) -> Method:
    """``Actor(...)`` described as a method, to check session arguments against ``__init__``."""
    init = getattr(actor_class, "__init__")  # noqa: B009 - mypy refuses cls.__init__
    if init is object.__init__ and actor_class.__new__ is object.__new__:
        signature = inspect.Signature([])  # inspect cannot always tell on Python 3.9
        return Method(
            "Actor", ACTOR, False, signature, "()", inspect.getdoc(actor_class), None, (), False
        )
    return _method("Actor", ACTOR, actor_class, drop_first=False)


def _module_functions(module: ModuleType) -> Dict[str, Method]:
    """Public functions whose ``__module__`` is env.py itself (not imported ones)."""
    found: Dict[str, Method] = {}
    for name, obj in vars(module).items():
        if name.startswith("_") or not inspect.isfunction(obj):
            continue
        if getattr(obj, "__module__", None) == module.__name__:
            found[name] = _method(name, FUNCTION, obj, drop_first=False, function=obj)
    return found


def _actor_methods(actor_class: type) -> Dict[str, Method]:
    """Public plain, static and class methods of the Actor and its bases (not ``object``)."""
    found: Dict[str, Method] = {}
    for name in dir(actor_class):
        if name.startswith("_"):
            continue
        raw = inspect.getattr_static(actor_class, name)
        if isinstance(raw, staticmethod):
            found[name] = _method(name, ACTOR, raw.__func__, drop_first=False)
        elif isinstance(raw, classmethod):
            found[name] = _method(name, ACTOR, raw.__func__, drop_first=True)
        elif inspect.isfunction(raw):
            found[name] = _method(name, ACTOR, raw, drop_first=True)
        # Anything else (properties, attributes, nested classes) is not callable remotely.
    return found


def _method(
    name: str,
    kind: str,
    func: Callable[..., Any],
    *,
    drop_first: bool,
    function: Optional[Callable[..., Any]] = None,
) -> Method:
    """Describe ``func``; ``drop_first`` removes ``self``/``cls`` from its signature."""
    signature = _signature(func, drop_first=drop_first)
    params = signature.parameters.values()
    return Method(
        name=name,
        kind=kind,
        is_async=inspect.iscoroutinefunction(func),
        signature=signature,
        signature_text=_format_signature(signature),
        doc=inspect.getdoc(func),
        function=function,
        keyword_names=tuple(p.name for p in params if p.kind in _NAMED),
        accepts_any_keyword=any(p.kind == p.VAR_KEYWORD for p in params),
        checks=_checks(func, signature),
    )


def _checks(
    func: Callable[..., Any], signature: inspect.Signature
) -> Optional[Callable[[Mapping[str, Any]], Optional[str]]]:
    """Argument checks from the annotations; none at all if compiling them fails."""
    try:
        return compile_checks(func, signature)
    except Exception:
        return None


def _signature(func: Callable[..., Any], *, drop_first: bool) -> inspect.Signature:
    """The signature callers see: ``self``/``cls`` removed when ``drop_first``."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return _ANY_SIGNATURE
    params = list(signature.parameters.values())
    if (
        drop_first
        and params
        and params[0].kind
        in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
    ):
        params = params[1:]
    return _unquote_annotations(signature.replace(parameters=params))


def _unquote_annotations(signature: inspect.Signature) -> inspect.Signature:
    """Show string annotations (``from __future__ import annotations``) as written, unquoted.

    They are not evaluated: that could run code or fail on names only a type
    checker sees.
    """
    params = [
        p.replace(annotation=_Verbatim(p.annotation)) if isinstance(p.annotation, str) else p
        for p in signature.parameters.values()
    ]
    returns = signature.return_annotation
    if isinstance(returns, str):
        returns = _Verbatim(returns)
    return signature.replace(parameters=params, return_annotation=returns)


def _format_signature(signature: inspect.Signature) -> str:
    """``str(signature)``, even when a default's or annotation's ``repr`` raises."""
    try:
        return str(signature)
    except Exception:
        params = [_printable(param) for param in signature.parameters.values()]
        returns = signature.return_annotation
        if returns is not signature.empty:
            returns = _Verbatim(_format_annotation(returns))
        return str(signature.replace(parameters=params, return_annotation=returns))


def _printable(param: inspect.Parameter) -> inspect.Parameter:
    """``param`` with its default and annotation replaced by their safe text."""
    changes: Dict[str, Any] = {}
    if param.default is not param.empty:
        changes["default"] = _Verbatim(_safe_repr(param.default))
    if param.annotation is not param.empty:
        changes["annotation"] = _Verbatim(_format_annotation(param.annotation))
    return param.replace(**changes)


class _Verbatim:
    """Shows as the given text wherever ``repr`` is taken."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def describe_method(method: Method) -> Dict[str, Any]:
    """The JSON description ``GET /methods`` lists for one method."""
    return {
        "name": method.name,
        "kind": method.kind,
        "is_async": method.is_async,
        "signature": method.signature_text,
        "doc": method.doc,
        "params": [_describe_param(p) for p in method.signature.parameters.values()],
    }


def _describe_param(param: inspect.Parameter) -> Dict[str, Any]:
    """Name, kind, whether required, default and annotation of one parameter."""
    variadic = param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    has_default = param.default is not inspect.Parameter.empty
    has_annotation = param.annotation is not inspect.Parameter.empty
    return {
        "name": param.name,
        "kind": param.kind.name,
        "required": not variadic and not has_default,
        "default": _json_default(param.default) if has_default else None,
        "annotation": _format_annotation(param.annotation) if has_annotation else None,
    }


def _json_default(value: Any) -> Any:
    """The default as JSON if it has an encoding, else its ``repr`` string."""
    try:
        return json.loads(encode_json(value))
    except NotSerializableError:
        return _safe_repr(value)


def _format_annotation(annotation: Any) -> str:
    """An annotation as text (``int``, ``list[str]``, or a string annotation as written)."""
    try:
        return inspect.formatannotation(annotation)
    except Exception:
        return f"<{type(annotation).__name__} object>"


def _safe_repr(value: Any) -> str:
    """``repr(value)``, or a placeholder when user code's ``__repr__`` raises."""
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"
