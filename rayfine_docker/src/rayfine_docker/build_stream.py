"""Turn the engine's JSON build stream into output lines and typed errors."""

from __future__ import annotations

from collections import deque
from typing import Any, Iterable, Mapping

from rayfine_core.errors import ImageBuildError
from rayfine_core.runtime.types import BuildRequest


def consume_build_stream(stream: Iterable[Mapping[str, Any]], request: BuildRequest) -> None:
    """Forward ``stream`` lines to ``request.on_output``; raise on an ``error`` chunk."""
    tail: deque[str] = deque(maxlen=30)
    for chunk in stream:
        text = chunk.get("stream") or chunk.get("status") or ""
        for line in text.splitlines():
            if line.strip():
                tail.append(line)
                if request.on_output:
                    request.on_output(line)
        if "error" in chunk:
            message = str(
                chunk.get("error") or chunk.get("errorDetail", {}).get("message", "build failed")
            )
            raise ImageBuildError(
                f"Building {request.tag!r} failed: {message.strip()}", "\n".join(tail)
            )
