"""How deep and how big JSON text is, measured on the bytes before any parsing.

``json.loads`` recurses once per nesting level, so a deep enough document
raises ``RecursionError`` (or, in some interpreters, exhausts the C stack);
and it turns a small text into many objects (an 8-byte ``{"k":1},`` becomes a
dict of about 200 bytes), so a 60 MiB body of tiny objects takes gigabytes.
Measuring the text first turns both into ordinary refusals; for the usual
small document it costs a few ``bytes.count`` calls.
"""

from __future__ import annotations

import re
from typing import Union

MAX_DEPTH = 512
"""Arrays and objects nested deeper than this are refused, in requests and in results."""

Text = Union[bytes, bytearray]

_KEEP = b'"[]{},:'
_DROP = bytes(c for c in range(256) if c not in _KEEP)
_QUOTED = re.compile(rb'"[^"]*"')  # once escapes are gone, a string has no inner quote
_BRACKETS_ONLY = bytes.maketrans(b"{}", b"[]")
_WINDOW = 1 << 20


def exceeds_depth(data: Text, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text ``data`` nests arrays/objects deeper than ``limit``.

    Brackets inside strings do not count.  Unclosed brackets count as nesting
    (a parser would descend into them before noticing the text is malformed).
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = structure(data).translate(_BRACKETS_ONLY, b",:")
    # Each round removes every innermost pair; text nested N deep needs N rounds.
    for depth in range(limit + 1):
        if not brackets:
            return False
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):  # only "]]][[[" is left: the openers nest
            return depth + brackets.count(b"[") > limit
        brackets = shorter
    return True


def items(data: Text, limit: int) -> int:
    """About how many values the text holds (arrays, objects, elements, members).

    Exact up to ``limit``; above it, the count outside strings.  Each value
    becomes at least one Python object when parsed.
    """
    count = _openers_and_separators(data)
    if count <= limit:
        return count
    return _openers_and_separators(structure(data))


def structure(data: Text) -> bytes:
    """The characters ``[ ] { } , :`` of ``data`` that are outside its strings, in order.

    Strings are cut out a window (about 1 MiB) at a time: one substitution
    over the whole text would build an object per string, gigabytes for a
    body of millions of tiny strings.
    """
    text = data
    if b"\\" in text:  # drop escapes first, so that every quote left delimits a string
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = bytes(text.translate(None, _DROP))
    if b'"' not in kept:
        return kept
    pieces = []
    start = 0
    while start < len(kept):
        end = min(start + _WINDOW, len(kept))
        if kept.count(b'"', start, end) % 2:  # the window ends inside a string: finish it
            close = kept.find(b'"', end)
            end = len(kept) if close < 0 else close + 1
        pieces.append(_QUOTED.sub(b"", kept[start:end]))
        start = end
    return b"".join(pieces)


def _openers_and_separators(data: Text) -> int:
    return data.count(b"[") + data.count(b"{") + data.count(b",") + data.count(b":")
