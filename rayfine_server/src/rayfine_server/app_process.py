"""The proxied app's process: start it, pass its output through, notice when it exits.

The app runs in its own session (process group), so stopping it reaches
its workers too.  Its output goes on to the container's output line by line,
and the last lines are kept for the error the client sees if it exits.  When
the server is PID 1 of its container it also reaps orphaned grandchildren,
which would otherwise pile up as zombies.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Deque, Optional, Sequence

TAIL_LINES = 30
_LINE_CAP = 400


class AppProcess:
    """One run of the app's command.

    :param command: the app's command line (the image's original CMD/ENTRYPOINT).
    """

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self._process: Optional[subprocess.Popen] = None
        self._tail: Deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._exit_code: Optional[int] = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the command; output is passed through to this process's stdout/stderr.

        :raises OSError: the command cannot be run (not found, not executable).
        """
        self._process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        for source, sink in (
            (self._process.stdout, sys.stdout),
            (self._process.stderr, sys.stderr),
        ):
            assert source is not None
            threading.Thread(
                target=self._pass_through, args=(source, sink), name="app-output", daemon=True
            ).start()

    def _pass_through(self, source: IO[bytes], sink: IO[str]) -> None:
        out = getattr(sink, "buffer", None)
        for line in iter(source.readline, b""):
            with self._lock:
                self._tail.append(line.decode("utf-8", "replace").rstrip()[:_LINE_CAP])
            try:
                if out is not None:
                    out.write(line)
                    out.flush()
                else:
                    sink.write(line.decode("utf-8", "replace"))
            except (OSError, ValueError):
                pass  # our own output is gone; keep draining so the app never blocks

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    def poll(self) -> Optional[int]:
        """The app's exit code once it has exited (128+N for signal N), else ``None``."""
        if self._exit_code is not None or self._process is None:
            return self._exit_code
        if os.getpid() == 1:
            self._reap_orphans()
        if self._exit_code is None:
            status = self._process.poll()
            if status is not None:
                self._exit_code = status if status >= 0 else 128 - status
        return self._exit_code

    def _reap_orphans(self) -> None:
        """As PID 1: collect every exited child, noting the app's own status if it is one."""
        assert self._process is not None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self._process.pid:
                self._exit_code = os.waitstatus_to_exitcode(status)
                if self._exit_code < 0:
                    self._exit_code = 128 - self._exit_code
                self._process.returncode = self._exit_code

    def tail(self) -> str:
        """The app's last lines of output."""
        with self._lock:
            return "\n".join(self._tail)

    async def stop(self, grace: float) -> None:
        """SIGTERM the app's process group; SIGKILL it if it is still there after ``grace`` s."""
        if self._process is None or self.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.poll() is None:
            self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        assert self._process is not None
        try:
            os.killpg(self._process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
