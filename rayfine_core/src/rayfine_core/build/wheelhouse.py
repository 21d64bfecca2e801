"""Fetch the injected server's pinned wheels on the host, once, without pip.

Containers often cannot reach a package index; the host can.  For each pin of
the server's lock, every wheel that fits one of the Pythons an image may have
(``RAYFINE_IMAGE_PYTHONS``, default 3.9-3.13) on glibc or musl is taken from
a local wheel directory or downloaded from the package index (PEP 691 JSON or
PEP 503 HTML; the sha256 the index publishes, and the lock's ``--hash``
values, are checked), and cached under ``~/.cache/rayfine/wheels/<key>``.
Inside the image, ``install_wheels.py`` picks the one that fits.

It speaks the index protocol itself (a uv-made venv has no pip) and reads the
configuration pip and uv users already have, first match wins:

* index: ``RAYFINE_INDEX_URL`` (space-separated, replaces all others), else
  ``PIP_INDEX_URL``, ``UV_DEFAULT_INDEX``, ``UV_INDEX_URL``, pip.conf
  ``index-url``, PyPI; plus ``PIP_EXTRA_INDEX_URL``, ``UV_INDEX``,
  ``UV_EXTRA_INDEX_URL`` and pip.conf ``extra-index-url``;
* local wheel directories, searched before any index (so a directory holding
  every wheel makes builds fully offline): ``RAYFINE_FIND_LINKS``,
  ``PIP_FIND_LINKS``, ``UV_FIND_LINKS``, pip.conf ``find-links``;
* ``PIP_NO_INDEX``/``UV_NO_INDEX``/``UV_OFFLINE``, pip.conf ``no-index``; CA
  bundle from ``PIP_CERT``/pip.conf ``cert``/``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``;
  proxies from ``HTTPS_PROXY``/``HTTP_PROXY``; credentials from the URL or ``~/.netrc``.
"""

from __future__ import annotations

import base64
import concurrent.futures
import configparser
import contextlib
import hashlib
import http.client
import json
import netrc
import os
import platform
import shutil
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Callable, Dict, FrozenSet, Iterable, Iterator, Optional, TypeVar

from ..errors import ImageBuildError, ValidationError
from ..image import install_wheels as iw

DEFAULT_PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
DEFAULT_INDEX = "https://pypi.org/simple/"
_ACCEPT = (  # PEP 691 JSON if the index has it, else PEP 503 HTML
    "application/vnd.pypi.simple.v1+json,"
    " application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
)
_lock = threading.Lock()
Emit = Optional[Callable[[str], None]]


def cache_dir() -> Path:
    """Root of Rayfine's on-disk cache (``RAYFINE_CACHE_DIR`` or ``~/.cache/rayfine``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rayfine"
    return Path(os.environ.get("RAYFINE_CACHE_DIR", default))


def http_app_lock() -> str:
    """The pinned wheels http-based apps may install offline (FastAPI, uvicorn and theirs).

    The injected server itself needs none: it is standard library only.
    """
    return resources.files("rayfine_core.image").joinpath("http-app.lock").read_text()


def image_pythons() -> tuple[str, ...]:
    raw = os.environ.get("RAYFINE_IMAGE_PYTHONS", "")
    pythons = tuple(v.strip() for v in raw.split(",") if v.strip()) or DEFAULT_PYTHONS
    for version in pythons:
        major, _, minor = version.partition(".")
        if major != "3" or not minor.isdigit():
            raise ValidationError(
                f"RAYFINE_IMAGE_PYTHONS entry {version!r} is not of the form 3.11."
            )
    return pythons


def wheels_dir() -> Path:
    """Where :func:`ensure_wheels` keeps the wheels for the current lock file and Pythons.

    The directory holds a ``.complete`` marker once every download succeeded.
    """
    key = hashlib.sha256(
        (http_app_lock() + ",".join(image_pythons()) + platform.machine()).encode()
    ).hexdigest()[:16]
    return cache_dir() / "wheels" / key


def ensure_wheels(on_output: Emit = None) -> Path:
    """Return a directory holding every pinned wheel and the lock, fetching what is missing."""
    lock_text = http_app_lock()
    try:
        pins = iw.parse_lock(lock_text)
    except ValueError as exc:
        raise ImageBuildError(
            f"The http apps lock (rayfine_core/image/http-app.lock) is unusable: {exc}"
        ) from None
    target = wheels_dir()
    with _lock, _cache_lock(_mkdir(target.parent) / ".lock"):
        if (target / ".complete").exists():
            return target
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=target.parent))
        try:
            _fill(staging, pins, _sources(), _targets(image_pythons()), on_output)
            (staging / iw.LOCK_NAME).write_text(lock_text)
            (staging / ".complete").write_text("\n".join(image_pythons()))
            shutil.rmtree(target, ignore_errors=True)  # an earlier, interrupted attempt
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


# -- what to fetch ---------------------------------------------------------------------------


_Targets = Dict[str, FrozenSet[iw.Tag]]
_FETCH_ERRORS = (OSError, ValueError, KeyError, TypeError, http.client.HTTPException)


@dataclass(frozen=True)
class Candidate:
    wheel: iw.Wheel
    location: str  # a URL, or a local path
    sha256: Optional[str]  # as published by the index


def _targets(pythons: tuple[str, ...]) -> _Targets:
    """Every tag a CPython of each version accepts on this machine's arch, per libc.

    ``linux_*`` wheels are left out: they fit only the machine that built them.
    """
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    libcs = {"glibc": ((2, 99), None), "musl": (None, (1, 99))}
    targets = {}
    for version in pythons:
        numbers = tuple(int(part) for part in version.split("."))
        abi = f"cp{numbers[0]}{numbers[1]}"
        for libc, (glibc, musl) in libcs.items():
            platforms = iw.linux_platforms([arch], glibc, musl)
            platforms = [p for p in platforms if not p.startswith("linux_")]
            tags = iw.cpython_tags(numbers, [abi], platforms)
            tags += iw.compatible_tags(numbers, abi, platforms)
            targets[f"Python {version} ({libc})"] = frozenset(tags)
    return targets


def _fill(dest: Path, pins: list[iw.Pin], sources: _Sources, targets: _Targets, emit: Emit) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        searches = list(pool.map(lambda pin: _find(pin, sources, targets), pins))
        plan: list[tuple[Candidate, iw.Pin]] = []
        for pin, (found, problems) in zip(pins, searches):
            _check_coverage(pin, found, problems, sources, targets, emit)
            plan += [(candidate, pin) for candidate in found]
        if emit and plan:
            emit(f"rayfine: fetching {len(plan)} pinned wheels for the server (once)")
        progress = _Progress(len(plan), emit)

        def fetch(job: tuple[Candidate, iw.Pin]) -> None:
            path = dest / job[0].wheel.filename
            _fetch(job[0], path, sources, job[1])
            progress.done(path.stat().st_size)

        list(pool.map(fetch, plan))


class _Progress:
    """Counts fetched wheels and says so, so a first build never sits silent for long."""

    def __init__(self, total: int, emit: Emit) -> None:
        self.total, self.emit = total, emit
        self.count, self.size = 0, 0
        self.lock = threading.Lock()

    def done(self, size: int) -> None:
        with self.lock:
            self.count += 1
            self.size += size
            if self.emit:
                self.emit(
                    f"rayfine: fetched {self.count}/{self.total} server wheels"
                    f" ({self.size / 1e6:.1f} MB)"
                )


def _check_coverage(pin, found, problems, sources: _Sources, targets: _Targets, emit: Emit) -> None:
    fits = {label for label, tags in targets.items() if any(c.wheel.tags & tags for c in found)}
    if not found and not pin.optional:
        raise ImageBuildError(
            f"No wheel of {pin.name}=={pin.version} (needed by the Rayfine server) fits any of"
            f" {', '.join(targets)} in {sources.describe()}."
            + "".join(f"\n  {problem}" for problem in problems)
            + "\nCheck PIP_INDEX_URL / proxies, or put the wheels in a directory named by"
            " RAYFINE_FIND_LINKS."
        )
    if emit and len(fits) < len(targets):
        kind = "optional, skipped there" if pin.optional else "images with them will fail"
        gaps = ", ".join(label for label in targets if label not in fits)
        emit(f"rayfine: no wheel of {pin.name}=={pin.version} for {gaps} ({kind})")


def _find(pin: iw.Pin, sources: _Sources, targets: _Targets) -> tuple[list[Candidate], list[str]]:
    """The pin's wheels that fit some target: local directories first, then the indexes in
    order, stopping as soon as every target has one."""
    found: dict[str, Candidate] = {}
    problems: list[str] = []
    for source in [*sources.find_links, *sources.indexes]:
        try:
            listed = (
                _list_index(source, pin.name, sources)
                if source in sources.indexes
                else _list_links(source, sources)
            )
        except _FETCH_ERRORS as exc:  # one source down is not fatal if another has it
            problems.append(f"{_redact(source)}: {type(exc).__name__}: {exc}")
            continue
        for candidate in listed:
            w = candidate.wheel
            pinned = w.name == pin.name and w.version == pin.version.replace("-", "_")
            if pinned and any(w.tags & tags for tags in targets.values()):
                found.setdefault(w.filename, candidate)
        if all(any(c.wheel.tags & tags for c in found.values()) for tags in targets.values()):
            break
    return sorted(found.values(), key=lambda c: c.wheel.filename), problems


# -- where to look -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sources:
    indexes: tuple[str, ...]
    find_links: tuple[str, ...]
    cafile: Optional[str]
    timeout: float
    logins: tuple[tuple[str, str, str], ...] = ()  # (host:port, user, password) from the URLs

    def describe(self) -> str:
        places = [_redact(s) for s in (*self.find_links, *self.indexes)]
        return ", ".join(places) if places else "no index (no-index is set) and no wheel directory"


def _sources() -> _Sources:
    pip = _pip_config()
    env = os.environ.get

    def setting(*names: str, conf: str = "") -> list[str]:
        for name in names:
            if env(name):
                return env(name, "").replace(",", " ").split()
        return pip.get(conf, "").split() if conf else []

    indexes = env("RAYFINE_INDEX_URL", "").split()
    if not indexes:
        primary = setting("PIP_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX_URL", conf="index-url")
        extra = [*env("PIP_EXTRA_INDEX_URL", "").split(), *env("UV_INDEX", "").split()]
        extra += [*env("UV_EXTRA_INDEX_URL", "").split(), *pip.get("extra-index-url", "").split()]
        indexes = (primary or [DEFAULT_INDEX])[:1] + [e.split("=", 1)[-1] for e in extra]
    offline = [env("PIP_NO_INDEX"), env("UV_NO_INDEX"), env("UV_OFFLINE"), pip.get("no-index")]
    if any((value or "").lower() in ("1", "true", "yes", "on") for value in offline):
        indexes = []
    links = setting("RAYFINE_FIND_LINKS", "PIP_FIND_LINKS", "UV_FIND_LINKS", conf="find-links")
    cafile = env("PIP_CERT") or pip.get("cert") or env("REQUESTS_CA_BUNDLE") or None
    timeout = float(env("PIP_DEFAULT_TIMEOUT") or pip.get("timeout") or 60)
    unique = tuple(dict.fromkeys(url if url.endswith("/") else url + "/" for url in indexes))
    logins = tuple(
        (parts.netloc.rpartition("@")[2], parts.username, parts.password or "")
        for parts in map(urllib.parse.urlsplit, (*unique, *links))
        if parts.username is not None
    )  # an index's files usually sit on the same host without credentials in their URLs
    return _Sources(unique, tuple(dict.fromkeys(links)), cafile, timeout, logins)


def _pip_config() -> dict[str, str]:
    """pip's settings for ``pip download`` from its config files (later files win)."""
    named = os.environ.get("PIP_CONFIG_FILE")
    if named == os.devnull:
        return {}
    home = Path.home()
    xdg_dirs = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    user = Path(os.environ.get("XDG_CONFIG_HOME", home / ".config"))
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs if d] + [Path("/etc/pip.conf")]
    files += [home / ".pip" / "pip.conf", user / "pip" / "pip.conf"]
    files += [home / "Library" / "Application Support" / "pip" / "pip.conf"]
    files += [Path(sys.prefix) / "pip.conf"] + ([Path(named)] if named else [])
    values: dict[str, str] = {}
    for file in files:
        parser = configparser.RawConfigParser()
        with contextlib.suppress(OSError, configparser.Error):
            parser.read(file)
        for section in ("global", "download"):
            if parser.has_section(section):
                values.update((k.replace("_", "-"), v) for k, v in parser.items(section))
    return values


# -- reading indexes and wheel directories -------------------------------------------------------


def _list_links(source: str, sources: _Sources) -> list[Candidate]:
    path = _local_path(source)
    if path is not None:
        if not path.is_dir():
            raise OSError(f"{path} is not a directory")
        return _candidates((p.name, str(p), None) for p in path.iterdir())
    return _read_page(source, sources)


def _list_index(index: str, project: str, sources: _Sources) -> list[Candidate]:
    url = urllib.parse.urljoin(index, project + "/")
    path = _local_path(url)
    if path is not None:  # a file:// index: the project's directory holds index.html
        page = path / "index.html"
        if not page.is_file():
            return []
        return _parse_page(page.read_bytes(), "text/html", page.as_uri())
    return _read_page(url, sources)


def _read_page(url: str, sources: _Sources) -> list[Candidate]:
    def read() -> tuple[bytes, str, str]:
        with _open(url, sources, accept=_ACCEPT) as response:
            return response.read(), response.headers.get("content-type", ""), response.url

    try:
        body, kind, final = _retrying(read)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # this index does not have the project
            return []
        raise OSError(f"HTTP {exc.code} {exc.reason}") from None
    return _parse_page(body, kind, final)


T = TypeVar("T")


def _retrying(attempt: Callable[[], T], tries: int = 3) -> T:
    """Retry what a flaky network breaks (not a 4xx answer: that one is final)."""
    for number in range(1, tries + 1):
        try:
            return attempt()
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or number == tries:
                raise
        except _FETCH_ERRORS:
            if number == tries:
                raise
        time.sleep(0.5 * number)
    raise AssertionError("unreachable")


def _parse_page(body: bytes, kind: str, base: str) -> list[Candidate]:
    if "json" in kind:
        files = [f for f in json.loads(body).get("files", []) if isinstance(f, dict)]
        return _candidates(
            (
                str(f.get("filename", "")),
                urllib.parse.urljoin(base, str(f.get("url", ""))),
                (f.get("hashes") or {}).get("sha256"),
            )
            for f in files
        )
    anchors = _Anchors()
    anchors.feed(body.decode("utf-8", errors="replace"))
    out = []
    for href in anchors.hrefs:
        url, _, fragment = urllib.parse.urljoin(anchors.base or base, href).partition("#")
        name = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        algorithm, _, digest = fragment.partition("=")
        out.append((name, url, digest.lower() if algorithm == "sha256" else None))
    return _candidates(out)


def _candidates(links: Iterable[tuple[str, str, Optional[str]]]) -> list[Candidate]:
    out = []
    for filename, location, digest in links:
        wheel = iw.parse_wheel_name(filename)
        if wheel is not None:
            out.append(Candidate(wheel, location, digest))
    return out


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.base: Optional[str] = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)
        elif tag == "base" and href:
            self.base = href


# -- fetching ----------------------------------------------------------------------------------


def _fetch(candidate: Candidate, dest: Path, sources: _Sources, pin: iw.Pin) -> None:
    partial = dest.with_name(dest.name + ".part")

    def download() -> str:
        digest = hashlib.sha256()
        with open(partial, "wb") as out, _read_stream(candidate.location, sources) as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        return digest.hexdigest()

    try:
        got = _retrying(download)
    except _FETCH_ERRORS as exc:
        raise ImageBuildError(
            f"Could not fetch {candidate.wheel.filename} from {_redact(candidate.location)}:"
            f" {type(exc).__name__}: {exc}"
        ) from None
    expected = ({candidate.sha256} if candidate.sha256 else set()) | set(pin.hashes)
    if (candidate.sha256 and got != candidate.sha256) or (pin.hashes and got not in pin.hashes):
        partial.unlink()
        raise ImageBuildError(
            f"{candidate.wheel.filename} from {_redact(candidate.location)} has sha256 {got},"
            f" not {' or '.join(sorted(expected))}: the download is corrupt or was tampered"
            " with. Nothing was cached; retry."
        )
    partial.rename(dest)


@contextlib.contextmanager
def _read_stream(location: str, sources: _Sources) -> Iterator:
    path = _local_path(location)
    if path is not None:
        with open(path, "rb") as file:
            yield file
    else:
        with _open(location, sources) as response:
            yield response


def _open(url: str, sources: _Sources, accept: str = "*/*"):
    """urlopen with the configured CA bundle and timeout; credentials from the URL or
    ~/.netrc go in a header that is not repeated on redirects to other hosts."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}")
    host = parts.netloc.rpartition("@")[2]
    user, password = parts.username, parts.password
    for netloc, login_user, login_password in sources.logins:
        if user is None and netloc == host:
            user, password = login_user, login_password
    if user is None:
        with contextlib.suppress(OSError, netrc.NetrcParseError):
            found = netrc.netrc().authenticators(parts.hostname or "")
            user, password = (found[0], found[2]) if found else (None, None)
    clean = parts._replace(netloc=host).geturl()
    request = urllib.request.Request(clean, headers={"Accept": accept, "User-Agent": "rayfine"})
    if user is not None:
        token = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password or '')}"
        request.add_unredirected_header(
            "Authorization", "Basic " + base64.b64encode(token.encode()).decode()
        )
    context = ssl.create_default_context(cafile=sources.cafile) if sources.cafile else None
    return urllib.request.urlopen(request, timeout=sources.timeout, context=context)


def _local_path(location: str) -> Optional[Path]:
    parts = urllib.parse.urlsplit(location)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    if parts.scheme in ("http", "https"):
        return None
    return Path(location).expanduser()


def _redact(url: str) -> str:
    """``url`` without its credentials, for messages (tokens live there)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


@contextlib.contextmanager
def _cache_lock(path: Path) -> Iterator[None]:
    """Serialise filling the cache between processes (two builds at once)."""
    try:
        import fcntl
    except ImportError:  # Windows: the in-process lock is all there is
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
