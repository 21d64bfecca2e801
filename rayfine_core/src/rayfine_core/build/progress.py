"""Build output for people: a live status line on a terminal, plain lines in a pipe, never raw ANSI.

Engines send their build output with colour codes and carriage returns (pip's
progress bars); a log file or a notebook should get clean lines.  On a
terminal a long, silent step (``RUN pip install``) still shows that time
passes: the status line keeps a spinner and the elapsed time turning.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from typing import Callable, Optional, TextIO

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_STEP = re.compile(r"^(?:STEP|Step) (\d+)/(\d+)\s*:\s*(.*)$")
_SPINNER = "|/-\\"
TICK = 0.1


def clean(line: str) -> str:
    """``line`` without terminal control sequences; of a carriage-returned line, the last state."""
    text = _ANSI.sub("", line)
    if "\r" in text:
        states = [part for part in text.split("\r") if part.strip()]
        text = states[-1] if states else ""
    return "".join(ch for ch in text.rstrip() if ch == "\t" or ch >= " ")


def cleaned(emit: Callable[[str], None]) -> Callable[[str], None]:
    """``emit`` receiving only clean, non-empty lines."""

    def forward(line: str) -> None:
        for part in line.splitlines() or [""]:
            text = clean(part)
            if text.strip():
                emit(text)

    return forward


class BuildOutput:
    """The default destination of build output: ``stream`` (stderr) as a status line or lines.

    Use as a context manager; call it with each output line.  On a terminal
    only ``rayfine:`` notes and the final summary stay on screen (the build's
    own lines are in the error when it fails); elsewhere every line is printed.
    """

    def __init__(self, title: str, stream: Optional[TextIO] = None, tty: Optional[bool] = None):
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self._lock = threading.Lock()
        self._status = ""
        self._step = ""
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._ticker: Optional[threading.Thread] = None

    def __enter__(self) -> BuildOutput:
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, name="rayfine-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self.tty:
                self._write("\r\x1b[K")

    def __call__(self, line: str) -> None:
        for part in line.splitlines() or [""]:
            text = clean(part)
            if text.strip():
                self._line(text)

    def note(self, text: str) -> None:
        """A line that stays on screen in both modes."""
        with self._lock:
            self._write(("\r\x1b[K" if self.tty else "") + text + "\n")
            if self.tty:
                self._draw()

    def _line(self, text: str) -> None:
        if not self.tty:
            with self._lock:
                self._write(text + "\n")
            return
        if text.startswith("rayfine:"):
            self.note(text)
            return
        step = _STEP.match(text)
        with self._lock:
            if step:
                self._step = f"step {step.group(1)}/{step.group(2)}"
                self._status = step.group(3)
            elif not text.startswith(" --->"):
                self._status = text
            self._draw()

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            with self._lock:
                self._draw()

    def _draw(self) -> None:
        elapsed = time.monotonic() - self._started
        spin = _SPINNER[int(elapsed / TICK) % len(_SPINNER)]
        head = f"{spin} {self.title} {elapsed:5.1f}s"
        if self._step:
            head += f" {self._step}"
        width = _width(self.stream) - 1
        text = f"{head}: {self._status}" if self._status else head
        self._write("\r\x1b[K" + text[:width])

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not fail the build
            pass


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return shutil.get_terminal_size().columns
