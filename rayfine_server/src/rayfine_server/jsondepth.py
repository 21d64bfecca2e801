"""How deeply JSON text nests, measured on the bytes before (or after) any parsing.

``json.loads`` and ``json.dumps`` recurse once per level, so a deep enough
document raises ``RecursionError`` (or, in some interpreters, exhausts the C
stack).  Checking the text first turns that into an ordinary refusal at a
fixed, documented depth, and costs two ``bytes.count`` calls for the usual
small document.
"""

from __future__ import annotations

import re
from typing import Union

MAX_DEPTH = 512
"""Arrays and objects nested deeper than this are refused, in requests and in results."""

# A JSON string, unrolled so that an unterminated one cannot backtrack exponentially.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")


def exceeds_depth(data: Union[bytes, bytearray], limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text ``data`` nests arrays/objects deeper than ``limit``.

    Brackets inside strings do not count.  Unclosed brackets count as nesting
    (a parser would descend into them before noticing the text is malformed).
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(_SQUARE, _NOT_BRACKETS)
    # Each round removes every innermost pair; text nested N deep needs N rounds.
    for depth in range(limit + 1):
        if not brackets:
            return False
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):  # only "]]][[[" is left: the openers nest
            return depth + brackets.count(b"[") > limit
        brackets = shorter
    return True
