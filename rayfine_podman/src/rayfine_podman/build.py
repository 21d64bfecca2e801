"""Build an image through podman's ``/build`` endpoint, streaming its output.

podman-py's ``images.build`` reads the whole output before returning, so
build progress would appear only at the end; the same request is sent here
through the low-level client and read line by line instead.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Iterable

from rayfine_core.errors import ImageBuildError
from rayfine_core.runtime.types import BuildRequest


def stream_build(client: Any, request: BuildRequest) -> None:
    """Run the build; forward output lines; raise ImageBuildError on failure."""
    from podman import api
    from podman.domain.images_manager import ImagesManager

    context = str(request.context_dir)
    params = ImagesManager._render_params(
        dict(
            path=context,
            dockerfile=request.dockerfile,
            tag=request.tag,
            buildargs=request.buildargs,
            labels=request.labels,
            nocache=request.nocache,
            rm=True,
            forcerm=True,
        )
    )
    body = api.create_tar(anchor=context, exclude=api.prepare_containerignore(context))
    try:
        response = client.api.post(
            "/build",
            params=params,
            data=body,
            headers={"Content-type": "application/x-tar"},
            stream=True,
        )
        response.raise_for_status()
        consume(response.iter_lines(), request)
    finally:
        body.close()


def consume(lines: Iterable[bytes], request: BuildRequest) -> None:
    """Forward each ``stream`` line to ``request.on_output``; raise on an ``error`` chunk."""
    tail: deque[str] = deque(maxlen=30)
    for raw in lines:
        if not raw.strip():
            continue
        try:
            chunk = json.loads(raw)
        except ValueError:
            chunk = {"stream": raw.decode(errors="replace")}
        for line in str(chunk.get("stream") or "").splitlines():
            if line.strip():
                tail.append(line)
                if request.on_output:
                    request.on_output(line)
        if chunk.get("error"):
            message = str(chunk["error"]).strip()
            raise ImageBuildError(f"Building {request.tag!r} failed: {message}", "\n".join(tail))
