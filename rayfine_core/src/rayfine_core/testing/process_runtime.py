"""The ``process`` runtime: a TEST DOUBLE that runs an environment's server as a host process.

It isolates nothing: no container, no namespaces, no resource limits, the
host's Python and packages.  It exists so that Rayfine's core, the CLI and
your own code can be tested in seconds without a container engine, and so
that env authors can debug an env.py with ``runtime="process"`` before
building it for real.  Never run code you do not trust with it.

Images are directories: :meth:`ProcessRuntime.build` lays the Dockerfile out
under the store (``RAYFINE_PROCESS_STORE``, default
``~/.cache/rayfine/process``) without running its ``RUN`` steps (see
:mod:`~rayfine_core.testing.dockerfile`).  A "container" is a process in its
own session, recorded in the store so that other processes see it (``ps``,
orphan reaping, ``attach``).  The image's command runs with ``python3`` as
this interpreter and image paths mapped into its root; ``/run/rayfine`` is
the run directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from .. import errors
from ..runtime import labels as label_keys
from ..runtime.base import Capabilities, Runtime
from ..runtime.reaper import process_start_time
from ..runtime.types import (
    RUN_MOUNT,
    BuildRequest,
    ContainerHandle,
    ContainerRecord,
    ContainerState,
    Endpoint,
    StartRequest,
    check_reference,
)
from .dockerfile import Layout, build


def store() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rayfine" / "process"
    path = Path(os.environ.get("RAYFINE_PROCESS_STORE", default))
    for sub in ("images", "tags", "containers"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


class ProcessRuntime(Runtime):
    """Environments as host processes (a test double; see the module docstring)."""

    name = "process"
    capabilities = Capabilities(
        unix_socket=True,
        network_none=False,
        memory_limit=False,
        cpu_quota=False,
        pids_limit=False,
        oom_flag=False,
        user=False,
        http_apps=False,
        runs_build_steps=False,
        mounts=True,
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- images ---------------------------------------------------------------------------
    def build(self, request: BuildRequest) -> str:
        emit = request.on_output or (lambda line: None)
        text = (request.context_dir / request.dockerfile).read_text()
        with tempfile.TemporaryDirectory(prefix="build-", dir=store()) as tmp:
            layout = build(
                text, request.context_dir, Path(tmp), request.buildargs, self._copy_image, emit
            )
            layout.labels.update(request.labels)
            image_id = _digest(layout)
            target = store() / "images" / image_id
            try:
                target.mkdir()
            except FileExistsError:
                pass  # the same content was built before
            else:
                shutil.move(str(layout.root), str(target / "root"))
                (target / "settings.json").write_text(json.dumps(layout.settings()))
        (store() / "tags" / _tag_file(request.tag)).write_text(image_id)
        emit(f"Successfully built {image_id[:12]} as {request.tag}")
        return image_id

    def _copy_image(self, reference: str, root: Path) -> Optional[Layout]:
        image_id = self._find(reference)
        if image_id is None:
            return None
        folder = store() / "images" / image_id
        shutil.copytree(folder / "root", root, symlinks=True)
        return Layout(root, **json.loads((folder / "settings.json").read_text()))

    def _find(self, reference: str) -> Optional[str]:
        check_reference(reference)
        tag = store() / "tags" / _tag_file(reference)
        if tag.exists():
            return tag.read_text().strip()
        if (store() / "images" / reference).is_dir():
            return reference
        return None

    def _layout(self, image: str) -> tuple[str, Layout]:
        image_id = self._find(image)
        if image_id is None:
            raise errors.ImageNotFoundError(
                f"Image {image!r} is not in the process runtime's store; build it with"
                f" build_image_from_env(ENV_DIR, {image!r}, runtime='process')."
            )
        folder = store() / "images" / image_id
        return image_id, Layout(
            folder / "root", **json.loads((folder / "settings.json").read_text())
        )

    def image_labels(self, image: str) -> dict[str, str]:
        return dict(self._layout(image)[1].labels)

    def image_id(self, image: str) -> str:
        return self._layout(image)[0]

    # -- containers -----------------------------------------------------------------------
    def start(self, request: StartRequest) -> ContainerHandle:
        _, layout = self._layout(request.image)
        if layout.labels.get(label_keys.ENV_TYPE) != "function_based":
            raise errors.StartError(
                "The process runtime runs function-based environments only (http-based apps"
                " bind ports of their own choosing on the host)."
            )
        if request.network is not None:
            raise errors.StartError(
                f"The process runtime has no networks (asked for {request.network!r}); it runs"
                " the server as a plain host process."
            )
        if self._by_name(request.name):
            raise errors.StartError(f"A process named {request.name!r} exists already.")
        env, endpoint = self._environment(request, layout)
        command = [self._map(word, layout, request) for word in (layout.entrypoint + layout.cmd)]
        if command and command[0] in ("python3", "python"):
            command[0] = sys.executable
        container_id = secrets.token_hex(16)
        log = open(_log_path(container_id), "wb")  # noqa: SIM115 - the child writes it; closed below
        try:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=self._map(layout.workdir, layout, request),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise errors.StartError(f"Could not run {command[:2]}: {exc}") from exc
        finally:
            log.close()
        self._record(container_id, request, process.pid)
        with self._lock:
            self._children[container_id] = process
        threading.Thread(target=self._reap_child, args=(container_id, process), daemon=True).start()
        return ContainerHandle(container_id, request.name, endpoint, self.name)

    def _environment(
        self, request: StartRequest, layout: Layout
    ) -> tuple[dict[str, str], Endpoint]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(layout.root)}
        env.update({k: self._map(v, layout, request) for k, v in layout.env.items()})
        env.update({k: self._map(v, layout, request) for k, v in request.env.items()})
        endpoint = request.socket_endpoint()
        if endpoint is None:
            port = request.host_port or _free_port()
            env.update({"RAYFINE_HOST": "127.0.0.1", "RAYFINE_PORT": str(port)})
            endpoint = Endpoint(port=port)
        return env, endpoint

    def _map(self, value: str, layout: Layout, request: StartRequest) -> str:
        """An image path as a host path: ``/run/rayfine`` is the run dir, a mount's target its
        source (a mount is not read-only here: the double has no way to enforce it), the rest
        the image root."""
        mounted = [(RUN_MOUNT, request.run_dir)] if request.run_dir is not None else []
        mounted += sorted(((m.target.rstrip("/"), m.source) for m in request.mounts), reverse=True)
        for target, source in mounted:
            if value == target or value.startswith(target + "/"):
                return str(source) + value[len(target) :]
        if value.startswith("/") and _inside(layout.root, value).exists():
            return str(_inside(layout.root, value))
        return value

    def _record(self, container_id: str, request: StartRequest, pid: int) -> None:
        record = {
            "id": container_id,
            "name": request.name,
            "image": request.image,
            "labels": request.labels,
            "pid": pid,
            "started": process_start_time(pid) or time.time(),
            "created": time.time(),
        }
        _record_path(container_id).write_text(json.dumps(record))

    def _reap_child(self, container_id: str, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        if _record_path(container_id).exists():  # not removed meanwhile
            try:
                _exit_path(container_id).write_text(str(code))
            except OSError:
                pass
        with self._lock:
            self._children.pop(container_id, None)

    def _load(self, container_id: str) -> Optional[dict[str, Any]]:
        path = _record_path(container_id)
        if not path.exists():
            found = self._by_name(container_id)
            path = _record_path(found) if found else path
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return None

    def _by_name(self, name: str) -> Optional[str]:
        for path in (store() / "containers").glob("*.json"):
            try:
                if json.loads(path.read_text()).get("name") == name:
                    return path.stem
            except (OSError, ValueError):
                continue
        return None

    def health(self, container_id: str) -> ContainerState:
        record = self._load(container_id)
        if record is None:
            return ContainerState(running=False, status="removed")
        with self._lock:
            child = self._children.get(record["id"])
        if child is not None:  # our own child: its exit code is ours to collect
            code = child.poll()
            if code is None:
                return ContainerState(running=True, status=_status(record))
            return ContainerState(running=False, exit_code=code, status="exited")
        if _alive(record):
            return ContainerState(running=True, status=_status(record))
        try:
            exit_code: Optional[int] = int(_exit_path(record["id"]).read_text())
        except (OSError, ValueError):
            exit_code = None
        return ContainerState(running=False, exit_code=exit_code, status="exited")

    def pid(self, container_id: str) -> Optional[int]:
        """The host pid of a container's server (tests signal it: SIGKILL a death, SIGSTOP a pause)."""
        record = self._load(container_id)
        return None if record is None else int(record["pid"])

    def logs(self, container_id: str, tail: int = 50) -> str:
        record = self._load(container_id)
        if record is None:
            return ""
        try:
            lines = _log_path(record["id"]).read_text(errors="replace").splitlines(keepends=True)
        except OSError:
            return ""
        return "".join(lines[len(lines) - tail :] if tail > 0 else [])

    def stop(self, container_id: str, timeout: float = 5.0) -> None:
        record = self._load(container_id)
        if record is None:
            return
        if _alive(record):
            _signal(record["pid"], signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(record) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(record):
                _signal(record["pid"], signal.SIGKILL)
        with self._lock:
            child = self._children.get(record["id"])
        if child is not None:
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for path in (_record_path(record["id"]), _log_path(record["id"]), _exit_path(record["id"])):
            path.unlink(missing_ok=True)

    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        found = []
        for path in sorted((store() / "containers").glob("*.json")):
            record = self._load(path.stem)
            if record is None or any(record["labels"].get(k) != v for k, v in labels.items()):
                continue
            state = self.health(record["id"])
            found.append(
                ContainerRecord(
                    id=record["id"],
                    name=record["name"],
                    image=record["image"],
                    status=state.status,
                    labels=record["labels"],
                    runtime=self.name,
                    created=record.get("created"),
                )
            )
        return found

    def version(self) -> str:
        return f"process (Python {sys.version.split()[0]}, no isolation)"


def _alive(record: Mapping[str, Any]) -> bool:
    pid = int(record["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = process_start_time(pid)
    if started is not None and abs(started - float(record["started"])) > 2.0:
        return False  # the pid was reused
    try:  # a zombie (our own child, not yet waited for) counts as exited
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _status(record: Mapping[str, Any]) -> str:
    """``paused`` for a stopped process (SIGSTOP: the double of ``docker pause``), else ``running``."""
    try:
        state = Path(f"/proc/{record['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "running"
    return "paused" if state in ("T", "t") else "running"


def _signal(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)  # its own session: the server and whatever it started
    except (ProcessLookupError, PermissionError):
        pass


def _digest(layout: Layout) -> str:
    h = hashlib.sha256(json.dumps(layout.settings(), sort_keys=True).encode())
    for directory, _, files in sorted(os.walk(layout.root)):
        for name in sorted(files):
            path = Path(directory) / name
            h.update(str(path.relative_to(layout.root)).encode())
            if not path.is_symlink():
                h.update(path.read_bytes())
    return h.hexdigest()


def _tag_file(reference: str) -> str:
    name = reference if ":" in reference.rsplit("/", 1)[-1] else reference + ":latest"
    return name.replace("/", "%2F")


def _inside(root: Path, path: str) -> Path:
    return root / os.path.normpath("/" + path).lstrip("/")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _record_path(container_id: str) -> Path:
    return store() / "containers" / f"{container_id}.json"


def _log_path(container_id: str) -> Path:
    return store() / "containers" / f"{container_id}.log"


def _exit_path(container_id: str) -> Path:
    return store() / "containers" / f"{container_id}.exit"
