"""The gateway's clients: one token each, with its quota and what it may run.

The tokens file is JSON; it holds SHA-256 digests of the tokens, never the
tokens, so reading it does not let anyone in::

    {
      "defaults": {"max_envs": 8, "starts_per_minute": 30, "images": ["team/*"]},
      "clients": [
        {"name": "alice", "sha256": "5e88...", "max_envs": 32, "images": ["affine:*"]},
        {"name": "ci", "sha256": "9b74...", "build": true, "images": ["ci-*"]}
      ]
    }

Every key of a client (see :class:`Client`) may appear in ``defaults``.
``rayfine token add NAME`` makes a token, prints it once and adds its entry.
The gateway re-reads the file on SIGHUP.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from rayfine_core.errors import ValidationError

TOKEN_PREFIX = "rft_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Client:
    """One client of the gateway and its policy.

    :param name: shown in the audit log and listings (never the token).
    :param sha256: hex SHA-256 of the token.
    :param max_envs: environments it may hold at once (starting ones count).
    :param starts_per_minute: environment starts it may make in any 60 s.
    :param images: ``fnmatch`` patterns of image references it may run
        (``"affine:*"``, ``"team/*"``, ``"*"``); a reference without a tag
        is matched as ``name:latest``.  Empty: none.
    :param build: it may build images (tags must match ``images``).
    :param cap_add: Linux capabilities it may keep (all are dropped otherwise).
    :param networks: networks it may ask for; ``null`` is the runtime's default.
    :param root: it may run the server as root (``user="root"``).
    :param isolation: isolation levels it may ask for (empty: any the runtime offers);
        list only ``"gvisor"`` to force gVisor.
    :param max_memory: the largest ``mem_limit`` (``"8g"``); also the limit of
        environments that ask for none.  None: no cap.
    :param max_cpus: the largest ``cpu_limit``; likewise.
    :param max_pids: the largest ``pids_limit``; likewise.
    :param options: runtime-specific option names it may pass (``runtime_options``).
    :param max_followers: log streams it may hold open at once.
    """

    name: str
    sha256: str
    max_envs: int = 8
    starts_per_minute: int = 60
    images: tuple[str, ...] = ()
    build: bool = False
    cap_add: tuple[str, ...] = ()
    networks: tuple[Optional[str], ...] = (None, "none")
    root: bool = False
    isolation: tuple[str, ...] = ()
    max_memory: Optional[str] = None
    max_cpus: Optional[float] = None
    max_pids: Optional[int] = None
    options: tuple[str, ...] = ()
    max_followers: int = 8

    def quota(self) -> dict[str, Any]:
        """The client's policy as it may see it (no digest)."""
        data = dataclasses.asdict(self)
        data.pop("sha256")
        return data


_FIELDS = {f.name: f for f in dataclasses.fields(Client)}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh token: 256 random bits, with a prefix that secret scanners can spot."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class Tokens:
    """The clients of a tokens file, looked up by token."""

    def __init__(self, clients: Sequence[Client]) -> None:
        self.clients = {c.name: c for c in clients}
        self._by_digest = {c.sha256: c for c in clients}
        self._seen: dict[str, Client] = {}  # tokens already checked: no hashing per request

    def find(self, token: str) -> Optional[Client]:
        """The client holding ``token``, or None.

        The lookup is by digest (the file holds no tokens); a token found once
        is remembered (in memory) so that a call costs one dictionary lookup.
        """
        known = self._seen.get(token)
        if known is not None:
            return known
        seen = digest(token)
        found = self._by_digest.get(seen)
        if found is None or not hmac.compare_digest(found.sha256, seen):
            return None
        if len(self._seen) < 10_000:
            self._seen[token] = found
        return found


def load(path: Path) -> Tokens:
    """Read and check a tokens file.

    :raises ValidationError: the file is missing, unreadable by others only, or malformed
        (the message names the entry and the key).
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValidationError(
            f"No tokens file at {path}: create one with `rayfine token add NAME --file {path}`."
        ) from None
    except (OSError, ValueError) as exc:
        raise ValidationError(f"Cannot read the tokens file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("clients", []), list):
        raise ValidationError(f"{path}: expected {{'defaults': {{...}}, 'clients': [...]}}.")
    defaults = data.get("defaults") or {}
    clients = [_client({**defaults, **entry}, path, i) for i, entry in enumerate(data["clients"])]
    names = [c.name for c in clients]
    for name in names:
        if names.count(name) > 1:
            raise ValidationError(f"{path}: client name {name!r} appears twice.")
    return Tokens(clients)


def _client(entry: Mapping[str, Any], path: Path, index: int) -> Client:
    where = f"{path}: client #{index + 1}"
    if not isinstance(entry, dict):
        raise ValidationError(f"{where} must be an object.")
    unknown = set(entry) - set(_FIELDS)
    if unknown:
        raise ValidationError(
            f"{where} has unknown keys {sorted(unknown)}; known: {sorted(_FIELDS)}."
        )
    values: dict[str, Any] = {}
    for key, raw in entry.items():
        values[key] = _value(key, raw, where)
    if not _NAME.fullmatch(str(values.get("name", ""))):
        raise ValidationError(f"{where}: 'name' must be letters, digits, '_', '.', '@', '-'.")
    if not _DIGEST.fullmatch(str(values.get("sha256", ""))):
        raise ValidationError(f"{where}: 'sha256' must be 64 lowercase hex digits.")
    return Client(**values)


def _value(key: str, raw: Any, where: str) -> Any:
    default = _FIELDS[key].default
    if isinstance(default, tuple):
        if not isinstance(raw, list) or not all(x is None or isinstance(x, str) for x in raw):
            raise ValidationError(f"{where}: {key!r} must be a list of strings.")
        return tuple(raw)
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise ValidationError(f"{where}: {key!r} must be true or false.")
        return raw
    if key in ("max_envs", "starts_per_minute", "max_followers", "max_pids"):
        if raw is None and key == "max_pids":
            return None
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise ValidationError(f"{where}: {key!r} must be a whole number >= 0.")
        return raw
    if key == "max_cpus":
        if raw is not None and (isinstance(raw, bool) or not isinstance(raw, (int, float))):
            raise ValidationError(f"{where}: 'max_cpus' must be a number.")
        return raw
    if raw is not None and not isinstance(raw, str):
        raise ValidationError(f"{where}: {key!r} must be a string.")
    return raw


def add(path: Path, name: str, settings: Mapping[str, Any]) -> str:
    """Add a client to the tokens file (created if missing, mode 0600); return its new token.

    :raises ValidationError: the name is taken or a setting is malformed.
    """
    data: dict[str, Any] = {"defaults": {}, "clients": []}
    if path.exists():
        data = json.loads(path.read_text())
        load(path)  # refuse to add to a file that is already broken
    if any(c.get("name") == name for c in data.get("clients", [])):
        raise ValidationError(f"{path} already has a client named {name!r}; remove it first.")
    token = new_token()
    entry = {"name": name, "sha256": digest(token), **settings}
    _client({**data.get("defaults", {}), **entry}, path, len(data["clients"]))
    data.setdefault("clients", []).append(entry)
    _write(path, data)
    return token


def remove(path: Path, name: str) -> None:
    """Remove a client from the tokens file (its token stops working at the next reload)."""
    data = json.loads(path.read_text())
    kept = [c for c in data.get("clients", []) if c.get("name") != name]
    if len(kept) == len(data.get("clients", [])):
        raise ValidationError(f"{path} has no client named {name!r}.")
    data["clients"] = kept
    _write(path, data)


def _write(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
