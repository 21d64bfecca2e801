"""Container output through podman's ``/logs`` endpoint.

Podman before 4.7 garbles partial lines (output flushed before its newline,
as ``print`` does with ``PYTHONUNBUFFERED``) when asked for a tail: it glues
them to the wrong line or drops them (containers/podman#19562).  With such a
service the whole log is read and the tail is taken here.
"""

from __future__ import annotations

import codecs
from typing import Any, Iterator, Optional

FIXED_IN = (4, 7)


def server_tails_correctly(version: str) -> bool:
    """True if a podman service of this version returns correct tails."""
    try:
        return tuple(int(part) for part in version.split("-")[0].split(".")[:2]) >= FIXED_IN
    except ValueError:
        return False


def read(client: Any, container_id: str, tail: int, server_tails: bool) -> str:
    """The last ``tail`` lines of output ("" if the container is gone)."""
    from podman import api

    response = _get(client, container_id, tail if server_tails else None, follow=False)
    if response is None:
        return ""
    text = b"".join(api.frames(response)).decode(errors="replace")
    if server_tails:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[len(lines) - tail :] if tail > 0 else [])


def follow(client: Any, container_id: str, tail: int, server_tails: bool) -> Iterator[str]:
    """Yield the last ``tail`` lines, then each new line, until the container stops."""
    from podman import api

    skip = 0
    if not server_tails:  # the stream starts at the beginning: skip what precedes the tail
        skip = max(0, _count_lines(client, container_id) - max(tail, 0))
    response = _get(client, container_id, max(tail, 0) if server_tails else None, follow=True)
    if response is None:
        return
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for frame in api.stream_frames(response):  # ends when the container stops
        assert isinstance(frame, bytes), "stream_frames without demux yields bytes"
        pending += decoder.decode(frame)
        *lines, pending = pending.split("\n")
        for line in lines:
            if skip:
                skip -= 1
            else:
                yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def _count_lines(client: Any, container_id: str) -> int:
    from podman import api

    response = _get(client, container_id, None, follow=False)
    return 0 if response is None else len(b"".join(api.frames(response)).splitlines())


def _get(client: Any, container_id: str, tail: Optional[int], follow: bool) -> Any:
    from podman.errors import NotFound

    params: dict[str, Any] = {"stdout": True, "stderr": True, "follow": follow}
    if tail is not None:
        params["tail"] = tail
    response = client.api.get(f"/containers/{container_id}/logs", params=params, stream=follow)
    try:
        response.raise_for_status()
    except NotFound:
        return None
    return response
