"""Proxy mode: serve an http-based environment (say a FastAPI app) behind the same door.

The app's own command runs as a child listening on ``127.0.0.1:APP_PORT``;
this server keeps the listener, the token, the limits and the timeouts, and
forwards every authenticated request over a pool of keep-alive connections,
streaming bodies both ways (and WebSocket upgrades as a byte tunnel).  Until
the app answers, requests get ``503 app_starting``; once it has exited they
get ``503 env_load_failed`` with its exit code and last output, and the
server itself exits with the app's code a moment later.
"""

from __future__ import annotations

import asyncio
import logging
from typing import List, Optional, Tuple

from .app_process import AppProcess
from .config import ServerConfig
from .errors import APP_STARTING, ENV_LOAD_FAILED, INTERNAL_ERROR, CallError
from .httpparse import MAX_HEAD_BYTES, HttpError, parse_response_head
from .proxy_bodies import (
    DROPPED,
    Streams,
    Tunnel,
    dechunked,
    encode_fields,
    fixed_length,
    header_value,
    length_header,
    rechunked,
    relay,
    response_framing,
    until_close,
)
from .request import Request
from .responses import Response, StreamResponse, status_line

logger = logging.getLogger(__name__)

EXIT_DELAY = 1.0
"""Seconds between noticing the app has exited and exiting with its code."""
STOP_GRACE = 5.0
"""Seconds the app gets to exit after SIGTERM before it is killed."""
_MAX_IDLE = 32


class ProxyApp:
    """Forwards requests to the app started from ``config.app_command``.

    :param config: the server's settings (``app_command``, ``app_port``, ``token``).
    """

    def __init__(self, config: ServerConfig) -> None:
        assert config.app_command, "proxy mode needs RAYFINE_APP_COMMAND"
        self._process = AppProcess(config.app_command)
        self._port = config.app_port
        self._authority = f"127.0.0.1:{config.app_port}"
        self._token = config.token
        self._idle: List[Streams] = []
        self._answered = False
        self._start_error: Optional[CallError] = None
        self._stop: Optional[asyncio.Future[int]] = None
        self._exiting = False

    # --- life -------------------------------------------------------------------------

    def start(self, stop: asyncio.Future[int]) -> None:
        """Start the app; its exit (or failure to start) will resolve ``stop``."""
        self._stop = stop
        try:
            self._process.start()
        except OSError as exc:
            command = " ".join(self._process.command)
            self._start_error = CallError(
                ENV_LOAD_FAILED,
                f"Could not start the app ({command}): {exc.strerror or exc}",
                type_name=type(exc).__name__,
            )
            logger.error("%s", self._start_error.message)
            self._exit_soon(127)

    def tick(self) -> None:
        """Called about once a second: notice the app's exit."""
        code = self._process.poll()
        if code is not None and not self._exiting:
            logger.error("The app exited with code %d; stopping", code)
            self._exit_soon(code)

    def _exit_soon(self, code: int) -> None:
        self._exiting = True
        if self._stop is not None:
            asyncio.get_running_loop().call_later(EXIT_DELAY, _resolve, self._stop, code)

    async def shutdown(self) -> None:
        """Close pooled connections and stop the app (SIGTERM, then SIGKILL)."""
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()
        await self._process.stop(STOP_GRACE)

    # --- requests ---------------------------------------------------------------------

    async def handle(self, request: Request) -> Response | StreamResponse:
        """Forward ``request`` to the app and stream its answer back."""
        failure = self._failure()
        if failure is not None:
            return failure.to_response()
        try:
            streams = await self._connect()
        except OSError as exc:
            failure = self._failure()
            if failure is not None:
                return failure.to_response()
            if not self._answered:
                return CallError(
                    APP_STARTING,
                    f"The app is starting: nothing answers on {self._authority} yet"
                    f" ({exc.strerror or exc})",
                ).to_response()
            message = f"The app stopped accepting connections on {self._authority}: {exc}"
            return CallError(INTERNAL_ERROR, message, status=502).to_response()
        self._answered = True
        try:
            return await self._exchange(request, streams)
        except BaseException:
            streams[1].close()
            raise

    def _failure(self) -> Optional[CallError]:
        if self._start_error is not None:
            return self._start_error
        code = self._process.poll()
        if code is None:
            return None
        return CallError(
            ENV_LOAD_FAILED,
            f"The app ({' '.join(self._process.command)}) exited with code {code}",
            type_name="AppExited",
            traceback=self._process.tail() or None,
        )

    async def _connect(self) -> Streams:
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return await asyncio.open_connection("127.0.0.1", self._port, limit=MAX_HEAD_BYTES + 4)

    def _release(self, streams: Streams, reusable: bool) -> None:
        if reusable and len(self._idle) < _MAX_IDLE and not streams[1].is_closing():
            self._idle.append(streams)
        else:
            streams[1].close()

    async def _exchange(self, request: Request, streams: Streams) -> Response | StreamResponse:
        reader, writer = streams
        head = request.head
        upgrade = _wants_upgrade(request)
        writer.write(self._request_head(request, upgrade))
        await self._send_body(request, writer)
        status, fields = await _read_head(reader)
        while 100 <= status < 200 and status != 101:  # 100 Continue, 103 Early Hints
            status, fields = await _read_head(reader)
        if status == 101 and upgrade:
            response_head = status_line(status) + encode_fields(
                fields, keep=("upgrade", "connection")
            )
            return StreamResponse(response_head, None, close=True, tunnel=Tunnel(streams))
        length, chunked = response_framing(head.method, status, fields)
        closes = "close" in header_value(fields, "connection").lower()
        response_head = status_line(status) + encode_fields(fields)
        if length == 0:
            self._release(streams, not closes)
            return StreamResponse(response_head + length_header(head.method, fields, 0), None)
        if length is not None:
            body = fixed_length(reader, length)
            response_head += b"content-length: %d\r\n" % length
        elif head.version == "1.0":  # cannot be chunked: the end is the close
            return StreamResponse(response_head, relay(streams, until_close(reader), None), True)
        else:  # re-framed as chunked, so the client's connection survives the response
            body = dechunked(reader) if chunked else until_close(reader)
            response_head += b"transfer-encoding: chunked\r\n"
            body = rechunked(body)
        reusable = not closes and (length is not None or chunked)
        return StreamResponse(
            response_head, relay(streams, body, self._release if reusable else None)
        )

    def _request_head(self, request: Request, upgrade: bool) -> bytes:
        head = request.head
        lines = [f"{head.method} {head.target} HTTP/1.1", f"host: {self._authority}"]
        for name, value in head.fields:
            if name in DROPPED or (name == "authorization" and self._is_our_token(value)):
                continue
            lines.append(f"{name}: {value}")
        if upgrade:
            lines += [f"upgrade: {head.headers['upgrade']}", "connection: upgrade"]
        else:
            lines.append("connection: keep-alive")
        if head.chunked:
            lines.append("transfer-encoding: chunked")
        elif head.content_length is not None:
            lines.append(f"content-length: {head.content_length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _is_our_token(self, authorization: str) -> bool:
        scheme, _, credentials = authorization.partition(" ")
        return scheme.lower() == "bearer" and credentials.strip() == self._token

    async def _send_body(self, request: Request, writer: asyncio.StreamWriter) -> None:
        head = request.head
        if not head.has_body:
            await writer.drain()
            return
        async for piece in request.body.stream(request.resume_reading):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if head.chunked else piece)
            await writer.drain()
        if head.chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()


def _resolve(stop: asyncio.Future[int], code: int) -> None:
    if not stop.done():
        stop.set_result(code)


async def _read_head(reader: asyncio.StreamReader) -> Tuple[int, List[Tuple[str, str]]]:
    try:
        data = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        raise HttpError(502, "The app closed the connection without answering") from None
    except asyncio.LimitOverrunError:
        raise HttpError(502, f"The app's response head exceeds {MAX_HEAD_BYTES} bytes") from None
    return parse_response_head(data[:-4])


def _wants_upgrade(request: Request) -> bool:
    headers = request.head.headers
    return "upgrade" in headers and "upgrade" in headers.get("connection", "").lower()
