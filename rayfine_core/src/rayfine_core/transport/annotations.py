"""Read an annotation given as text (``list[str]``, ``str | None``) and test values against it.

The server describes each parameter's annotation as text; nothing of env.py
is imported on the client.  Only what JSON can carry is understood (``str``,
``int``, ``float``, ``bool``, ``None``, lists, tuples, dicts, ``Literal``,
unions); anything else (a class of env.py, a ``Sequence``, a forward
reference) accepts every value and is left to the server.  The rules are
Python's, not a coercing validator's: ``1`` fits ``float``, ``"1"`` fits
neither ``int`` nor ``list[str]``.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from typing import Any, Optional

_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "bytes": (),  # JSON has none: whatever arrives is the server's business
}
_LISTS = {"list", "List", "tuple", "Tuple", "set", "Set", "frozenset", "FrozenSet"}
_DICTS = {"dict", "Dict"}
_ANY = {"Any", "object"}


@dataclass(frozen=True)
class Kind:
    """One parsed annotation: ``name`` (``str``, ``list``, ``union``, ``literal``, ``any``, ...)."""

    name: str
    args: tuple[Kind, ...] = ()
    values: tuple[Any, ...] = ()

    def accepts(self, value: Any) -> bool:
        """True if ``value`` (decoded JSON, or what a caller passes) fits."""
        if self.name == "any":
            return True
        if self.name == "none":
            return value is None
        if self.name == "union":
            return any(arg.accepts(value) for arg in self.args)
        if self.name == "literal":
            return any(value == v and type(value) is type(v) for v in self.values)
        if self.name in _SCALARS:
            allowed = _SCALARS[self.name]
            if not allowed:
                return True
            if self.name == "int" and isinstance(value, bool):
                return True  # Python's rule: a bool is an int
            return isinstance(value, allowed)
        if self.name == "list":
            if not isinstance(value, (list, tuple)):
                return False
            args = self.args
            if len(args) == 2 and args[1].name == "ellipsis":  # tuple[int, ...]
                args = args[:1]
            if len(args) > 1:  # tuple[int, str]: one of each, in order
                return len(value) == len(args) and all(a.accepts(v) for a, v in zip(args, value))
            return not args or all(args[0].accepts(v) for v in value)
        if self.name == "dict":
            if not isinstance(value, dict):
                return False
            if len(self.args) == 2:
                key, item = self.args
                return all(key.accepts(k) and item.accepts(v) for k, v in value.items())
            return True
        return True

    def __str__(self) -> str:
        if self.name == "union":
            return " | ".join(str(a) for a in self.args)
        if self.name == "literal":
            return f"Literal[{', '.join(repr(v) for v in self.values)}]"
        if self.name == "none":
            return "None"
        if self.args:
            return f"{self.name}[{', '.join(str(a) for a in self.args)}]"
        return self.name


ANY = Kind("any")


@functools.lru_cache(maxsize=1024)
def parse(text: Optional[str]) -> Kind:
    """The :class:`Kind` an annotation's text describes (:data:`ANY` if it cannot be read)."""
    if not text:
        return ANY
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError):
        return ANY
    try:
        return _kind(node)
    except (ValueError, RecursionError):
        return ANY


def _kind(node: ast.expr) -> Kind:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([_kind(node.left), _kind(node.right)])
    if isinstance(node, ast.Constant):
        if node.value is None:
            return Kind("none")
        if node.value is Ellipsis:
            return Kind("ellipsis")
        if isinstance(node.value, str):  # a quoted forward reference
            return parse(node.value)
        return ANY
    name = _name(node)
    if name is not None:
        return _named(name, ())
    if isinstance(node, ast.Subscript):
        base = _name(node.value)
        inner = node.slice
        items = list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
        if base == "Literal":
            return Kind("literal", values=tuple(ast.literal_eval(item) for item in items))
        if base in ("Annotated",):
            return _kind(items[0])
        if base is None:
            return ANY
        return _named(base, tuple(_kind(item) for item in items))
    return ANY


def _name(node: ast.expr) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("typing", "builtins", "typing_extensions", "t")
    ):
        return node.attr
    return None


def _named(name: str, args: tuple[Kind, ...]) -> Kind:
    if name in ("None", "NoneType"):
        return Kind("none")
    if name == "Optional" and len(args) == 1:
        return _union([args[0], Kind("none")])
    if name == "Union":
        return _union(list(args))
    if name in _SCALARS:
        return Kind(name)
    if name in _LISTS:
        return Kind("list", args)
    if name in _DICTS:
        return Kind("dict", args)
    if name in _ANY:
        return ANY
    return ANY  # a class of env.py, a Sequence, a TypeVar: the server judges


def _union(kinds: list[Kind]) -> Kind:
    flat: list[Kind] = []
    for kind in kinds:
        flat += list(kind.args) if kind.name == "union" else [kind]
    if any(kind.name == "any" for kind in flat):
        return ANY
    return Kind("union", tuple(dict.fromkeys(flat)))


def describe(value: Any) -> str:
    """``str '12'``, ``int 3``, ``list of 2``: what a caller passed, briefly."""
    kind = type(value).__name__
    if isinstance(value, (list, tuple, dict)):
        return f"{kind} of {len(value)}"
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"
