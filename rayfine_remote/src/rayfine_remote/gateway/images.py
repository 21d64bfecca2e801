"""The gateway's image routes: inspect an allow-listed image, build one for a client that may.

A build's upload is spooled to a temporary file (capped), unpacked in a
worker thread by :mod:`.unpack`, and built by the gateway's runtime in
another; its output lines stream back as NDJSON (``{"line": ...}``), then
``{"image_id": ...}`` or ``{"error": {...}}``.  At most
:data:`BUILDS_AT_ONCE` builds run at once; the rest wait.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from rayfine_core import errors
from rayfine_core.runtime.types import BuildRequest, check_reference

from ..messages import error_of_exception
from . import asgi, policy
from .asgi import Receive, Scope, Send
from .lifecycle import not_found
from .tokens import Client
from .unpack import unpack

if TYPE_CHECKING:
    from .app import Gateway

BUILDS_AT_ONCE = 2
_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


async def inspect(
    gateway: Gateway, client: Client, scope: Scope, receive: Receive, send: Send
) -> None:
    """``POST /v1/images/inspect {"image"}`` -> ``{"labels", "id"}``."""
    try:
        image = json.loads(await asgi.read_body(receive, 64 * 1024)).get("image")
    except (ValueError, AttributeError):
        image = None
    if not isinstance(image, str):
        raise errors.ValidationError('Inspect takes {"image": "name:tag"}.')
    check_reference(image)
    policy.check_image(client, image)
    runtime = gateway.engine.runtime

    def look() -> dict[str, Any]:
        return {"labels": runtime.image_labels(image), "id": runtime.image_id(image)}

    try:
        answer = await gateway.engine.run(look)
    except errors.ImageNotFoundError as exc:
        raise errors.ImageNotFoundError(not_found(image)) from exc
    await asgi.send_json(send, 200, answer)


async def build(
    gateway: Gateway, client: Client, scope: Scope, receive: Receive, send: Send
) -> None:
    """``POST /v1/images/build``: a tar in, NDJSON out."""
    if not client.build:
        policy.check_build(client, "")  # raises, saying what to ask for
    scratch = Path(tempfile.mkdtemp(prefix="rayfine-gw-build-"))
    try:
        with tempfile.TemporaryFile(dir=scratch) as spool:
            await _receive_upload(receive, spool, gateway.config.max_context_bytes)
            spool.seek(0)
            meta, context = await gateway.engine.run(
                unpack, spool, scratch, gateway.config.max_context_bytes
            )
        request = _request(client, meta, context)
        gateway.audit.log("build", client=client.name, tag=request.tag)
        async with _build_slots():
            await _run_build(gateway, request, send)
    finally:
        await gateway.engine.run(shutil.rmtree, scratch, True)


async def _receive_upload(receive: Receive, spool: Any, limit: int) -> None:
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asgi.ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise asgi.BodyTooLarge
        spool.write(chunk)
        more = bool(message.get("more_body"))


def _request(client: Client, meta: dict[str, Any], context: Path) -> BuildRequest:
    tag = meta.get("tag")
    dockerfile = meta.get("dockerfile")
    if not isinstance(tag, str) or not isinstance(dockerfile, str):
        raise errors.ValidationError("The build settings need a tag and a dockerfile.")
    check_reference(tag)
    policy.check_build(client, tag)
    normal = posixpath.normpath(dockerfile)
    if dockerfile.startswith("/") or normal.startswith("..") or not (context / normal).is_file():
        raise errors.ValidationError(f"The Dockerfile {dockerfile!r} is not in the build context.")
    return BuildRequest(
        context_dir=context,
        dockerfile=normal,
        tag=tag,
        buildargs=_strings(meta.get("buildargs"), "buildargs"),
        labels=_strings(meta.get("labels"), "labels"),
        nocache=bool(meta.get("nocache")),
    )


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise errors.ValidationError(f"{what} must be an object of strings.")
    return dict(value)


async def _run_build(gateway: Gateway, request: BuildRequest, send: Send) -> None:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[Optional[str]] = asyncio.Queue()

    def emit(line: str) -> None:  # called from the build's thread
        loop.call_soon_threadsafe(lines.put_nowait, line)

    request.on_output = emit
    building = asyncio.ensure_future(gateway.engine.run(gateway.engine.runtime.build, request))
    building.add_done_callback(lambda _: lines.put_nowait(None))
    await asgi.start_stream(send, b"application/x-ndjson")
    while True:
        line = await lines.get()
        if line is None:
            break
        await asgi.send_piece(send, _event({"line": line}))
    while not lines.empty():  # lines queued after the build ended, before the sentinel ran
        late = lines.get_nowait()
        if late is not None:
            await asgi.send_piece(send, _event({"line": late}))
    try:
        image_id = building.result()
    except errors.RayfineError as exc:
        await asgi.send_piece(send, _event(error_of_exception(exc)[1]))
    else:
        await asgi.send_piece(send, _event({"image_id": image_id}))
    await asgi.end_stream(send)


def _event(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


def _build_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    if loop not in _slots:
        _slots[loop] = asyncio.Semaphore(BUILDS_AT_ONCE)
    return _slots[loop]
