"""Progress of many starts: a callback for programs, a one-line bar for people at a terminal.

:class:`Progress` is what ``on_progress=`` callbacks receive.  :class:`Bar`
draws it on stderr, only when stderr is a terminal (``progress=None``, the
default) or when asked (``progress=True``); it redraws one line with a
carriage return and never writes an escape sequence, so a pipe or a log file
gets nothing from it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional, TextIO, TypeVar

log = logging.getLogger("rayfine")
T = TypeVar("T")
WIDTH = 24
REDRAW_EVERY = 0.1


@dataclass(frozen=True)
class Progress:
    """How far a set of starts has come."""

    label: str
    """What is being started: the pool's name, or the image."""
    total: int
    """Environments wanted."""
    ready: int
    starting: int
    failed: int
    """Starts that failed so far (a pool retries them)."""
    elapsed: float
    """Seconds since the starts began."""

    @property
    def done(self) -> bool:
        return self.ready >= self.total


ProgressCallback = Callable[[Progress], None]


def tell(callback: Optional[ProgressCallback], progress: Progress) -> None:
    """Call a user's callback; what it raises is logged, never lets a start fail."""
    if callback is None:
        return
    try:
        callback(progress)
    except Exception as exc:
        log.warning("rayfine: on_progress callback raised %s: %s", type(exc).__name__, exc)


class Bar:
    """A progress line on a terminal; safe to update from several threads."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._width = 0

    @classmethod
    def wanted(cls, progress: Optional[bool], stream: Optional[TextIO] = None) -> Optional[Bar]:
        """A bar on ``stream`` (stderr) if ``progress`` is True, or None and it is a terminal."""
        stream = stream or sys.stderr
        if progress is False:
            return None
        if progress is None:
            try:
                if not stream.isatty():
                    return None
            except (AttributeError, ValueError):  # no isatty, or closed
                return None
        return cls(stream)

    def show(self, progress: Progress) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._drawn < REDRAW_EVERY and not progress.done:
                return
            self._drawn = now
            self._write(_line(progress))

    def close(self, progress: Optional[Progress] = None) -> None:
        """Draw the last state and end the line."""
        with self._lock:
            if progress is not None:
                self._write(_line(progress))
            if self._width:
                self._stream.write("\n")
                self._stream.flush()
                self._width = 0

    def _write(self, text: str) -> None:
        padding = " " * max(0, self._width - len(text))
        try:
            self._stream.write("\r" + text + padding)
            self._stream.flush()
        except (OSError, ValueError):  # the terminal went away: stop drawing
            return
        self._width = len(text)


def _line(p: Progress) -> str:
    filled = WIDTH if p.total <= 0 else min(WIDTH, WIDTH * p.ready // p.total)
    bar = "#" * filled + "-" * (WIDTH - filled)
    failed = f", {p.failed} failed" if p.failed else ""
    return (
        f"rayfine: {p.label} [{bar}] {p.ready}/{p.total} ready, {p.starting} starting"
        f"{failed}  {p.elapsed:.1f}s"
    )


class Tally:
    """Progress of a known number of starts awaited together (``aload_envs``)."""

    def __init__(
        self, label: str, total: int, callback: Optional[ProgressCallback], bar: Optional[Bar]
    ) -> None:
        self._label, self._total = label, total
        self._callback, self._bar = callback, bar
        self._since = time.monotonic()
        self.ready = self.failed = 0
        self._show()

    async def follow(self, starting: Awaitable[T]) -> T:
        """Await one start, counting how it ended."""
        try:
            result = await starting
        except BaseException:
            self.failed += 1
            self._show()
            raise
        self.ready += 1
        self._show()
        return result

    def progress(self) -> Progress:
        return Progress(
            label=self._label,
            total=self._total,
            ready=self.ready,
            starting=self._total - self.ready - self.failed,
            failed=self.failed,
            elapsed=time.monotonic() - self._since,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close(self.progress())

    def _show(self) -> None:
        progress = self.progress()
        tell(self._callback, progress)
        if self._bar is not None:
            self._bar.show(progress)
